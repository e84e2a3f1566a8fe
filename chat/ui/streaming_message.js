// StreamingMessage: a chat message whose Markdown is rendered in the browser (the Vue component of
// streaming_message.py). It wires three modules, each one concern:
//
// * parley-answer-connection.js: a live answer follows its own stream (chat/api/stream.py) from the characters this
//   tab has, and reconnects after a lost connection without losing or repeating any;
// * parley-block-renderer.js: incremental Markdown rendering (only the last block re-rendered while streaming, one
//   full render at the end);
// * parley-clipboard.js: the code blocks' copy buttons, and copyAll() for copy_message.js and shortcuts.js.
//
// They are the element's `dependencies`, imported by the names NiceGUI gives them in the page's import map.
// Only a *change* of the `text` prop (first mount, a later full update) replaces the buffer, so an unrelated update
// of the element (e.g. a class change) never loses streamed text.
import { AnswerConnection, codePoints } from "parley-answer-connection";
import { BlockRenderer } from "parley-block-renderer";
import { addCopyButtons, copyCodeOnClick, copyText } from "parley-clipboard";
import { loadResource } from "../../static/utils/resources.js";

const STYLESHEETS = ["github.min.css", "github-dark.body-dark.min.css", "parley-message.css"];
const LABELS = {
  queued: "Queued — waiting for the model…",
  loading: "Loading the model…",
  retrying: "The model server is busy — retrying…",
  thinking: "Thinking…",
};

/** True when the page is scrolled to (within 80 px of) its bottom. */
function nearBottom() {
  return window.innerHeight + window.scrollY >= document.scrollingElement.scrollHeight - 80;
}

export default {
  template: `
    <div :class="{ 'parley-streaming': live && hasText }" :aria-busy="live ? 'true' : 'false'">
      <div v-if="live && !hasText" class="parley-thinking" role="status">
        <span class="parley-dots" aria-hidden="true"><span></span><span></span><span></span></span>
        <span class="parley-thinking-label">{{ label }}</span>
      </div>
      <div ref="content" class="parley-md"></div>
    </div>
  `,
  props: {
    text: { type: String, default: "" },
    streaming: { type: Boolean, default: false },
    stream: { type: String, default: "" },
    phase: { type: String, default: "" },
    resourcePath: { type: String, default: "" },
  },
  data() {
    return { hasText: this.text.length > 0, currentPhase: this.phase, live: this.streaming };
  },
  computed: {
    label() {
      return LABELS[this.currentPhase] || LABELS.thinking;
    },
  },
  watch: {
    phase(value) {
      this.currentPhase = value;
    },
    live() {
      this.announce();
    },
  },
  created() {
    // not reactive on purpose: the buffer changes per delta, the template must not
    this.buffer = this.text;
    this.received = codePoints(this.text); // characters of the answer this tab has: where its stream resumes
    this.renderer = new BlockRenderer(addCopyButtons);
    this.connection = null; // an AnswerConnection while the answer is followed
    this.frame = 0;
    this.notBefore = 0;
    this.ready = false;
    this.gone = false;
    this.$watch(
      () => [this.text, this.streaming],
      ([text, streaming], [oldText, oldStreaming]) => {
        if (oldStreaming && !streaming) {
          this.live = false;
          this.connection?.stop(); // no reconnecting; an open stream still delivers its end
        }
        if (text !== oldText || (oldStreaming && !streaming)) this.replace(text);
      },
    );
  },
  async mounted() {
    if (this.live) this.announce();
    this.$el.addEventListener("click", this.onClick);
    await this.$nextTick(); // wait for window.path_prefix to be set
    this.follow(); // the stream's first frames may arrive while the styles load: they go to the buffer
    if (this.resourcePath) {
      const base = window.path_prefix + this.resourcePath;
      await Promise.all(STYLESHEETS.map((name) => loadResource(`${base}/${name}`))).catch((error) =>
        console.warn("could not load message styles", error),
      );
    }
    this.ready = true;
    this.renderNow();
  },
  unmounted() {
    this.gone = true;
    if (this.live) this.announce();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.connection?.close();
    this.$el.removeEventListener("click", this.onClick);
  },
  methods: {
    /** Tell the page that this message started or stopped being live (send_button.js shows Stop meanwhile). */
    announce() {
      this.$nextTick(() => document.dispatchEvent(new CustomEvent("parley-live")));
    },
    /** Follow a live answer's stream from the characters this tab already has, until it ends. */
    follow() {
      if (!this.live || !this.stream || this.gone) return;
      this.connection = new AnswerConnection(new URL(window.path_prefix + this.stream, window.location.href), {
        after: () => this.received,
        onText: (delta) => this.append(delta),
        onControl: (message) => this.control(message),
        onRefused: () => this.end(), // deleted meanwhile: keep what is shown
      });
      this.connection.open();
    },
    /** A control message of the stream: a phase before the first text, or the end of the answer. */
    control(message) {
      if (message.phase) this.currentPhase = message.phase;
      if (message.end) {
        if (message.end.length !== this.received)
          console.warn(`answer ended at ${message.end.length} characters, this tab has ${this.received}`);
        this.end();
      }
    },
    /** The answer is over: one full render of the whole text replaces the streamed one. */
    end() {
      this.live = false;
      this.connection.close();
      this.renderNow();
    },
    /** Append one streamed delta and render it (see scheduleRender). */
    append(delta) {
      if (!this.live || !delta) return; // a delta that raced past the end is already in the final text
      this.buffer += delta;
      this.received += codePoints(delta);
      if (!this.hasText) this.hasText = true;
      this.scheduleRender();
    },
    replace(text) {
      this.buffer = text;
      this.received = codePoints(text);
      this.hasText = text.length > 0;
      this.renderer.unfreeze();
      this.renderNow();
    },
    scheduleRender() {
      if (this.frame) return;
      // Render at once: a render costs a parse of the last block only, and the page is painted at the next frame
      // either way. Only when renders turn slow (a long last block, a busy machine) are they spaced out.
      if (performance.now() >= this.notBefore) return this.renderNow();
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        if (performance.now() < this.notBefore)
          this.scheduleRender(); // slow renders back off
        else this.renderNow();
      });
    },
    renderNow() {
      if (this.frame) {
        cancelAnimationFrame(this.frame);
        this.frame = 0;
      }
      const container = this.$refs.content;
      if (!this.ready || !container) return; // mounted() renders once the styles are there
      const start = performance.now();
      const pinned = this.live && nearBottom(); // follow the answer only if the reader is following it
      if (this.live) this.renderer.renderTail(container, this.buffer);
      else this.renderer.renderAll(container, this.buffer);
      if (pinned) window.scrollTo({ top: document.scrollingElement.scrollHeight });
      const done = performance.now();
      const cost = done - start;
      this.notBefore = cost > 4 ? done + 2 * cost : 0; // slow renders: at most a third of the time
    },
    /** Copy the whole Markdown of the message to the clipboard; resolves to true when it worked. */
    async copyAll() {
      return copyText(this.buffer);
    },
    onClick(event) {
      return copyCodeOnClick(event, this.$el);
    },
  },
};
