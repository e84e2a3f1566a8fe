// StreamingMessage: a chat message whose Markdown is rendered in the browser (the Vue component of
// streaming_message.py). It wires four modules, each one concern:
//
// * parley-answer-connection.js: a live answer follows its own stream (chat/api/stream.py) from the position this
//   tab has, and reconnects after a lost connection without losing or repeating any character or event;
// * parley-answer-parts.js: the answer as ordered segments (text, reasoning, tool calls, approval cards, notices);
// * parley-block-renderer.js: incremental Markdown rendering of each text segment (only the last block re-rendered
//   while streaming, one full render at the end);
// * parley-clipboard.js: the code blocks' copy buttons, and copyAll() for copy_message.js and shortcuts.js.
//
// They are the element's `dependencies`, imported by the names NiceGUI gives them in the page's import map.
//
// The page's next answer (prop `spare`, chat/ui/next_answer.py) is this element before there is an answer: hidden, it
// opens the page's next-answer socket (chat/api/stream.py) and waits; when the page's Send is stored the server binds
// the socket to the new answer, and the element shows the question and follows the answer at once, before NiceGUI
// has created the answer's own element. That element then takes the connection over as it mounts (park, adopt: no
// new socket, nothing shown twice), and this one waits for the next answer again.
//
// Only a *change* of the `text` prop, or of the `events` prop's length and last position (first mount, a later full
// update), replaces what is shown, so an unrelated update of the element (e.g. a class change) never loses streamed
// text or the reader's open and folded steps.
import { AnswerConnection, codePoints } from "parley-answer-connection";
import { AnswerParts } from "parley-answer-parts";
import { addCopyButtons, copyCodeOnClick, copyText } from "parley-clipboard";
import { loadResource } from "../../static/utils/resources.js";

const STYLESHEETS = ["github.min.css", "github-dark.body-dark.min.css", "parley-message.css"];
const LABELS = {
  queued: "Queued — waiting for the model…",
  loading: "Loading the model…",
  retrying: "The model server is busy — retrying…",
  thinking: "Thinking…",
  awaiting_approval: "Waiting for your approval…",
  running_tools: "Running tools…",
};

const FRAME_MS = 16.7; // one frame of a 60 Hz display
const UPDATE_MS = 33; // the shortest time between two updates of a streaming answer (30 a second)
const UPDATE_MAX_MS = 200; // the longest, when the page is busy
const RENDER_SHARE = 0.25; // the most of the page's time renders may take while an answer streams

const loadedStyles = new Set(); // the STYLESHEETS this page has loaded
const PARK_MS = 2000; // how long the next answer's connection waits for the answer's own element to adopt it

// The next answer's connections whose element was re-armed (arm), by the answer's stream path, until the answer's
// own element takes one over as it mounts (adopt): {connection, buffer, received, steps, end, timer}.
const parked = new Map();

/** True when the page is scrolled to (within 80 px of) its bottom. */
function nearBottom() {
  return window.innerHeight + window.scrollY >= document.scrollingElement.scrollHeight - 80;
}

/** What identifies an `events` prop's content: its length and its last position (cheap, unlike comparing all). */
function eventsKey(events) {
  return events && events.length ? `${events.length}:${events[events.length - 1].seq}` : "";
}

/** The position after the last of `events` (to_json objects). */
function lastSeq(events) {
  return events[events.length - 1].seq;
}

export default {
  template: `
    <div v-show="!spare || bound" :class="{ 'parley-streaming': live && hasText, 'parley-bound': bound }"
         :aria-busy="live ? 'true' : 'false'" :data-waiting="waitingSocket ? 'true' : null">
      <div v-if="question" class="parley-next-question"><div>{{ question }}</div></div>
      <div ref="content" class="parley-parts"></div>
      <div v-if="live && (!hasText || waiting)" class="parley-thinking" role="status">
        <span class="parley-dots" aria-hidden="true"><span></span><span></span><span></span></span>
        <span class="parley-thinking-label">{{ label }}</span>
      </div>
    </div>
  `,
  props: {
    text: { type: String, default: "" },
    events: { type: Array, default: null },
    streaming: { type: Boolean, default: false },
    stream: { type: String, default: "" },
    phase: { type: String, default: "" },
    resourcePath: { type: String, default: "" },
    spare: { type: String, default: "" },
  },
  emits: ["decide"],
  data() {
    const hasEvents = !!(this.events && this.events.length);
    return {
      hasText: hasEvents || this.text.length > 0, // anything shown (text or steps)
      currentPhase: this.phase,
      live: this.streaming,
      tailIsStep: false, // the last segment is not text: a phase after it is shown under it
      bound: false, // (the next answer) the server bound this element's socket to an answer
      question: "", // (the next answer, bound) what the user asked
      waitingSocket: false, // (the next answer) its socket is open and waits to be bound
    };
  },
  computed: {
    label() {
      return LABELS[this.currentPhase] || LABELS.thinking;
    },
    waiting() {
      return this.tailIsStep && this.currentPhase !== "streaming";
    },
  },
  watch: {
    phase(value) {
      this.currentPhase = value;
    },
    live() {
      this.announce();
    },
    spare() {
      this.arm(); // the answer it carried has its own element now: wait for the next one
    },
  },
  created() {
    // not reactive on purpose: the parts change per delta, the template must not
    this.parts = null; // an AnswerParts once mounted
    this.buffer = this.text; // the answer's text (its Markdown) so far: what copyAll copies
    this.received = 0; // the answer's position this tab has: where its stream resumes
    this.pending = null; // what to show before the parts exist: [events] or text
    this.connection = null; // an AnswerConnection while the answer is followed
    this.boundStream = ""; // (the next answer, bound) the stream path of the answer it shows
    this.stepped = false; // a content event that is not text was applied (the answer has steps)
    this.frame = 0; // a requested animation frame (onFrame)
    this.notBefore = 0; // no render before this time (performance.now() ms): the render budget
    this.renderedAt = -Infinity; // when the last update ended
    this.grew = false; // the page changed since it was last followed down (keepInView)
    this.pendingText = ""; // streamed text not handed to the parts yet (at most one update interval's)
    this.interval = UPDATE_MS; // ms between two updates of the page: adapts to how long frames take (onFrame)
    this.lastFrame = 0; // when the previous animation frame ran (performance.now() ms), 0: none in a row
    this.pinned = true; // the reader follows the answer (at the bottom of the page when it grows)
    this.scrolledTo = 0; // window.scrollY at the last scroll event
    this.onScroll = this.onScroll.bind(this);
    this.onFrame = this.onFrame.bind(this);
    this.ready = false;
    this.gone = false;
    this.$watch(
      () => [this.text, eventsKey(this.events), this.streaming],
      ([text, key, streaming], [oldText, oldKey, oldStreaming]) => {
        if (oldStreaming && !streaming) {
          this.live = false;
          this.connection?.stop(); // no reconnecting; an open stream still delivers its end
        }
        if (text !== oldText || key !== oldKey || (oldStreaming && !streaming)) this.replace();
      },
    );
  },
  async mounted() {
    if (this.live) this.announce();
    this.$el.addEventListener("click", this.onClick);
    this.scrolledTo = window.scrollY; // pinned stays true: reading the layout here would force one mid-update
    window.addEventListener("scroll", this.onScroll, { passive: true });
    this.parts = new AnswerParts(this.$refs.content, {
      decorate: addCopyButtons,
      onDecide: (decision) => this.$emit("decide", decision),
    });
    this.replace(false);
    // the stream's first frames may arrive while the styles load: they go to the parts' buffers
    if (window.path_prefix === undefined) await this.$nextTick(); // the page's first render sets it
    this.follow();
    if (this.resourcePath && STYLESHEETS.every((name) => loadedStyles.has(name))) {
      this.ready = true; // another message loaded them: show the text now, not after a round of promises
      this.renderNow();
      return;
    }
    if (this.resourcePath) {
      const base = window.path_prefix + this.resourcePath;
      await Promise.all(STYLESHEETS.map((name) => loadResource(`${base}/${name}`))).then(
        () => STYLESHEETS.forEach((name) => loadedStyles.add(name)),
        (error) => console.warn("could not load message styles", error),
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
    this.parts?.reset();
    this.$el.removeEventListener("click", this.onClick);
    window.removeEventListener("scroll", this.onScroll);
  },
  methods: {
    /** Tell the page that this message started or stopped being live (send_button.js shows Stop meanwhile). */
    announce() {
      this.$nextTick(() => document.dispatchEvent(new CustomEvent("parley-live")));
    },
    /** Follow a live answer's stream from the position this tab already has, until it ends. */
    follow() {
      if (this.spare && !this.live) return this.arm();
      if (!this.live || !this.stream || this.gone) return;
      if (!this.adopt()) this.connect(this.stream);
    },
    /**
     * Take over the connection the page's next answer parked for this answer (see park): no new socket, and what it
     * showed stays shown. Only for a plain answer that the connection has at least as far as the props (both count
     * from the answer's start); otherwise the parked connection is closed and this element opens its own.
     */
    adopt() {
      const entry = parked.get(this.stream);
      if (!entry) return false;
      parked.delete(this.stream);
      clearTimeout(entry.timer);
      const props = this.events && this.events.length ? null : this.received;
      if (props === null || entry.steps || entry.received < props) {
        entry.connection.close();
        return false;
      }
      if (entry.received > props) {
        this.parts.loadText(entry.buffer, true);
        this.buffer = entry.buffer;
        this.received = entry.received;
        this.hasText = this.parts.hasContent;
        this.renderNow(false);
      }
      this.connection = this.rebind(entry.connection);
      if (entry.end) entry.end.refused ? this.end() : this.control(entry.end);
      return true;
    },
    /** Point `connection`'s handlers at this element; returns it. */
    rebind(connection) {
      Object.assign(connection, {
        after: () => this.received,
        onText: (delta) => this.append(delta),
        onEvent: (event) => this.applyEvent(event),
        onControl: (message) => this.control(message),
        onRefused: () => (this.live ? this.end() : null), // deleted meanwhile: keep what is shown
        onOpen: null,
      });
      return connection;
    },
    /**
     * (The next answer, re-armed while bound) Keep the connection, with what it brings meanwhile, for the answer's own
     * element, which mounts in the same update (adopt); closed after PARK_MS when none does.
     */
    park() {
      const path = this.boundStream;
      const connection = this.connection;
      const entry = { connection, buffer: this.buffer, received: this.received, steps: this.stepped, end: null };
      Object.assign(connection, {
        after: () => entry.received,
        onText: (delta) => {
          entry.buffer += delta;
          entry.received += codePoints(delta);
        },
        onEvent: () => (entry.steps = true), // the own element's stream shows steps (not adopted)
        onControl: (message) => {
          if (message.end) entry.end = message;
        },
        onRefused: () => (entry.end = entry.end || { refused: true }),
        onOpen: null,
      });
      parked.get(path)?.connection.close();
      entry.timer = setTimeout(() => {
        if (parked.get(path) === entry) parked.delete(path);
        connection.close();
      }, PARK_MS);
      parked.set(path, entry);
      this.connection = null;
    },
    /** Open an AnswerConnection to `path` (a stream's, or the next-answer socket's: `spare`). */
    connect(path, spare = false) {
      const url = new URL(window.path_prefix + path, window.location.href);
      this.connection = this.rebind(new AnswerConnection(url, { spare }));
      this.connection.onOpen = () => (this.waitingSocket = spare && !this.bound);
      this.connection.open();
    },
    /** (The next answer) Show nothing and wait on the page's next-answer socket for the server to bind it. */
    arm() {
      if (this.bound && this.connection && !this.connection.stopped) this.park();
      this.connection?.close();
      this.connection = null;
      this.boundStream = "";
      this.stepped = false;
      this.bound = false;
      this.waitingSocket = false;
      this.question = "";
      this.live = false;
      this.currentPhase = this.phase;
      this.pendingText = "";
      this.parts?.loadText("", false);
      this.buffer = "";
      this.received = 0;
      this.hasText = false;
      this.tailIsStep = false;
      if (this.parts) this.renderNow(false);
      if (this.spare && !this.gone && window.path_prefix !== undefined) this.connect(this.spare, true);
    },
    /** A control message of the stream: bound to an answer (the next answer's socket), a phase, or the end. */
    control(message) {
      if (message.bound) {
        this.question = message.bound.question;
        this.bound = this.live = true;
        this.waitingSocket = false;
        this.currentPhase = "thinking";
        this.boundStream = message.bound.stream;
        this.connection.follow(new URL(window.path_prefix + message.bound.stream, window.location.href));
        return;
      }
      if (message.phase) this.currentPhase = message.phase;
      if (message.end) {
        const end = message.end.seq ?? message.end.length;
        if (end !== this.received) console.warn(`answer ended at position ${end}, this tab has ${this.received}`);
        this.end();
      }
    },
    /** The answer is over: one full render of every text segment replaces the streamed one. */
    end() {
      this.flushText();
      this.live = false;
      this.connection?.close();
      this.parts.end();
      this.parts.invalidate();
      this.renderNow();
    },
    /** Append one streamed text delta and show it (see scheduleRender). */
    append(delta) {
      if (!this.live || !delta) return; // a delta that raced past the end is already in the final text
      this.pendingText += delta; // shown at the next update (scheduleRender)
      this.buffer += delta;
      this.received += codePoints(delta);
      this.changed();
    },
    /** Apply one streamed content event that is not text ({event} frames); its seq is the position after it. */
    applyEvent(event) {
      if (!this.live || typeof event.seq !== "number" || event.seq <= this.received) return; // already shown
      this.flushText(); // the text before the event comes first
      this.stepped = true;
      this.parts.apply(event);
      if (event.kind === "text_delta") this.buffer += event.text;
      this.received = event.seq;
      this.changed();
    },
    changed() {
      if (!this.hasText) this.hasText = true;
      const tailIsStep = this.parts.lastKind !== "text";
      if (tailIsStep !== this.tailIsStep) this.tailIsStep = tailIsStep;
      this.scheduleRender();
    },
    /** Show the props' content from scratch (the stored events, else the text). */
    replace(render = true) {
      if (!this.parts) return;
      this.pendingText = ""; // the props' content supersedes it
      if (this.events && this.events.length) {
        this.parts.load(this.events, this.live);
        this.received = lastSeq(this.events);
      } else {
        this.parts.loadText(this.text, this.live);
        this.received = codePoints(this.text);
      }
      this.buffer = this.parts.text;
      this.hasText = this.parts.hasContent;
      this.tailIsStep = this.parts.hasContent && this.parts.lastKind !== "text";
      if (render) this.renderNow();
    },
    /** A decision on a tool call was not taken (the server said why): its card's buttons work again. */
    decisionFailed(callId) {
      this.parts?.enableCard(callId);
    },
    /** Hand the streamed text that waits to the parts (plain words are shown at once; the rest marks a render). */
    flushText() {
      if (!this.pendingText) return;
      const text = this.pendingText;
      this.pendingText = "";
      this.parts.appendText(text);
    },
    /**
     * Show what changed at most once per update interval: at once when the last update is older than that and the
     * render budget allows (a first token, or one after a pause, is in the page without waiting), else at the first
     * animation frame when it is due. Renders take at most RENDER_SHARE of the time: after one that took c ms the
     * next waits c × (1 − share) / share ms.
     */
    scheduleRender() {
      if (!this.frame && this.due(performance.now())) this.update();
      if (!this.frame && (this.pendingText || this.parts?.dirty || this.live)) this.frame = requestAnimationFrame(this.onFrame);
    },
    /** True when an update may run at `now` (ms). */
    due(now) {
      return now - this.renderedAt >= this.interval && now >= this.notBefore;
    },
    /** Show the waiting text and render what it needs. */
    update() {
      this.grew = true; // the page may be longer: follow it down at the next frame
      this.flushText();
      if (this.parts?.dirty) this.renderNow(false);
      else this.renderedAt = performance.now();
    },
    /**
     * An animation frame while the answer changes: update when due, follow the answer down (one layout a frame).
     * Frames that come late (the page is busy: other tabs, a slow machine) lengthen the update interval, up to
     * UPDATE_MAX_MS; frames on time shorten it back to UPDATE_MS.
     */
    onFrame(now) {
      this.frame = 0;
      if (this.lastFrame) {
        const late = now - this.lastFrame > 2 * FRAME_MS; // a frame was skipped: the page cannot keep up
        this.interval = late ? Math.min(UPDATE_MAX_MS, this.interval * 1.25) : Math.max(UPDATE_MS, this.interval * 0.8);
      }
      const waiting = this.pendingText || this.parts?.dirty;
      if (waiting && this.due(performance.now())) this.update();
      this.keepInView();
      if (this.pendingText || this.parts?.dirty) {
        this.lastFrame = now;
        this.frame = requestAnimationFrame(this.onFrame);
      } else this.lastFrame = 0;
    },
    /** Render what changed now (the final render included); `scroll`: also follow the answer down now. */
    renderNow(scroll = true) {
      if (!this.ready || !this.parts) return; // mounted() renders once the styles are there
      const start = performance.now();
      this.parts.render(this.live);
      this.grew = true;
      const done = performance.now();
      this.renderedAt = done;
      const cost = done - start;
      this.notBefore = cost > 2 ? done + (cost * (1 - RENDER_SHARE)) / RENDER_SHARE : 0;
      if (scroll) this.keepInView();
    },
    /** Keep the newest text in view while the reader follows the answer (pinned: see onScroll). One layout a frame. */
    keepInView() {
      if (!this.grew) return;
      this.grew = false;
      if (this.live && this.pinned) window.scrollTo({ top: document.scrollingElement.scrollHeight });
    },
    /** The reader scrolled: scrolling up away from the bottom stops following the answer, reaching it resumes. */
    onScroll() {
      const y = window.scrollY;
      if (y < this.scrolledTo - 2) this.pinned = nearBottom();
      else if (!this.pinned && nearBottom()) this.pinned = true;
      this.scrolledTo = y;
    },
    /** Copy the whole Markdown of the message (its text) to the clipboard; resolves to true when it worked. */
    async copyAll() {
      return copyText(this.buffer);
    },
    onClick(event) {
      return copyCodeOnClick(event, this.$el);
    },
  },
};
