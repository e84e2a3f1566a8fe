// MessageWindow (chat/ui/message_window.py): a long conversation's page holds only a window of its messages
// (chat_view.py builds and removes them a batch at a time). Here, in the browser:
// - ask for the batch before the built messages when the reader scrolls near their top ("earlier"), the batch after
//   them near their bottom ("later"), and the newest ones when the scroll-to-bottom button is clicked while they are
//   not built ("newest");
// - keep what the reader sees in place when messages are added, removed or grow above it: the first message that
//   starts in view is the anchor, and when its offset in the page changes, the page is scrolled by as much before the
//   next paint
//   (the browser's own scroll anchoring is off while this runs, so the two do not both correct).
// A live answer that grows below the anchor moves nothing, and streaming_message.js's following of it stays as is.
const MARGIN = 1.5; // viewports: how near an edge of the built messages the reader is when the next batch is asked
const RETRY_MS = 3000; // ask again when a request got no answer in this time
const MESSAGES = ":scope > .parley-message, :scope > .parley-compare";

export default {
  template: `<span style="display: none"></span>`,
  props: {
    column: { type: String, default: "" },
    hasEarlier: { type: Boolean, default: false },
    hasLater: { type: Boolean, default: false },
    version: { type: Number, default: 0 },
  },
  emits: ["earlier", "later", "newest"],
  mounted() {
    this.asked = 0; // when the last batch was asked for (0: nothing asked)
    this.scrolled = false; // the reader (or the page) scrolled: before that, no batch is asked for
    this.anchor = null;
    this.anchorOffset = 0;
    this.anchoring = [document.documentElement, document.body].map((element) => [element, element.style.overflowAnchor]);
    for (const [element] of this.anchoring) element.style.overflowAnchor = "none";
    this.ownScroll = null; // where this module's last correction scrolled to: its scroll event keeps the anchor
    this.onScroll = () => {
      this.scrolled = true;
      if (window.scrollY !== this.ownScroll) this.record();
      this.ownScroll = null;
      this.check();
    };
    this.onClick = (event) => {
      const button = event.target instanceof Element ? event.target.closest(".parley-scroll-bottom") : null;
      if (button && this.hasLater) {
        event.stopPropagation(); // the newest are not built: scrolling down would only reach the window's end
        event.preventDefault();
        this.ask("newest");
      }
    };
    window.addEventListener("scroll", this.onScroll, { passive: true });
    window.addEventListener("resize", this.onScroll);
    document.addEventListener("click", this.onClick, true);
    this.keepBound = () => this.keep();
    this.resizes = new ResizeObserver(this.keepBound);
    this.mutations = new MutationObserver(this.keepBound);
    this.observe();
  },
  unmounted() {
    window.removeEventListener("scroll", this.onScroll);
    window.removeEventListener("resize", this.onScroll);
    document.removeEventListener("click", this.onClick, true);
    this.resizes.disconnect();
    this.mutations.disconnect();
    for (const [element, value] of this.anchoring) element.style.overflowAnchor = value;
  },
  watch: {
    version() {
      this.asked = 0; // served: the next request may go
      this.$nextTick(() =>
        requestAnimationFrame(() => {
          this.observe();
          this.keep();
          if (this.scrolled) this.check();
        }),
      );
    },
  },
  methods: {
    observe() {
      const column = document.getElementById(this.column);
      if (!column || column === this.observed) return;
      this.resizes.disconnect();
      this.mutations.disconnect();
      this.resizes.observe(column);
      this.mutations.observe(column, { childList: true });
      this.observed = column;
      this.record();
    },
    messages() {
      return this.observed ? this.observed.querySelectorAll(MESSAGES) : [];
    },
    /** Remember the first message that starts in view (else the one in view) and where it is in the page: one that
     * starts above the view may still grow (its Markdown rendered later) and push the rest down. */
    record() {
      this.anchor = null;
      for (const element of this.messages()) {
        const box = element.getBoundingClientRect();
        if (box.bottom <= 0) continue;
        if (!this.anchor) {
          this.anchor = element;
          this.anchorOffset = box.top + window.scrollY;
        }
        if (box.top >= 0) {
          if (box.top < window.innerHeight) {
            this.anchor = element;
            this.anchorOffset = box.top + window.scrollY;
          }
          return;
        }
      }
    },
    /** The anchor moved in the page (messages added, removed or grown above it): scroll by as much. */
    keep() {
      if (!this.anchor || !this.anchor.isConnected) {
        this.record();
        return;
      }
      const offset = this.anchor.getBoundingClientRect().top + window.scrollY;
      const moved = offset - this.anchorOffset;
      this.anchorOffset = offset;
      if (Math.abs(moved) >= 1) {
        window.scrollBy(0, moved);
        this.ownScroll = window.scrollY;
      }
    },
    check() {
      if (this.asked && performance.now() - this.asked < RETRY_MS) return;
      const messages = this.messages();
      if (!messages.length) return;
      const margin = MARGIN * window.innerHeight;
      if (this.hasEarlier && messages[0].getBoundingClientRect().top > -margin) this.ask("earlier");
      else if (this.hasLater && messages[messages.length - 1].getBoundingClientRect().bottom < window.innerHeight + margin)
        this.ask("later");
    },
    ask(what) {
      this.asked = performance.now();
      this.$emit(what);
    },
  },
};
