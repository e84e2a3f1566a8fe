// ScrollToBottom (chat/ui/composer.py): a button above the message box, shown while the page is scrolled up from its
// newest message; a click scrolls down. It watches scrolling and the page's height (a streaming answer grows it).
const AWAY_PX = 200;

export default {
  template: `
    <q-btn v-show="away" round dense unelevated icon="arrow_downward" class="parley-scroll-bottom"
      aria-label="Scroll to the newest message" title="Scroll to the newest message" @click="down" />
  `,
  data() {
    return { away: false };
  },
  mounted() {
    this.update = () => {
      const page = document.scrollingElement;
      this.away = page.scrollHeight - (window.innerHeight + window.scrollY) > AWAY_PX;
    };
    window.addEventListener("scroll", this.update, { passive: true });
    window.addEventListener("resize", this.update);
    this.observer = new ResizeObserver(this.update);
    this.observer.observe(document.body);
    this.update();
  },
  unmounted() {
    window.removeEventListener("scroll", this.update);
    window.removeEventListener("resize", this.update);
    this.observer.disconnect();
  },
  methods: {
    down() {
      window.scrollTo({ top: document.scrollingElement.scrollHeight, behavior: "smooth" });
    },
  },
};
