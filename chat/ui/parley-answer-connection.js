// AnswerConnection: the page's connection to one live answer's stream, for StreamingMessage (streaming_message.js).
//
// The protocol is the server's: chat/api/stream.py for the WebSocket, chat/api/rest.py for server-sent events.
// WebSocket text frames carry only the answer's text; binary frames a JSON object: {phase}, {event} (a content
// event that is not text: reasoning, a tool call's steps, a notice; its `seq` is the answer's position after it) or,
// last, {end} once the answer is stored. The page keeps the answer's position (text frames add their code points, an
// event sets it to its seq) and asks for what comes after it (`?after=N`), so after a lost connection it reconnects,
// with backoff, and gets every character and every step exactly once. Close code 4404 (an application code,
// RFC 6455 §7.4.2) means the answer is gone.
//
// For networks and proxies that block WebSockets: after WEBSOCKET_ATTEMPTS attempts that never opened, the answer is
// followed over server-sent events instead (the same URL, GET). EventSource reconnects by itself and sends
// Last-Event-ID, which is the character count (HTML Living Standard, "Server-sent events"), so the resume logic is
// the same; only the first request names the count, as `?after=N`.
//
// The page's next-answer socket (`spare`: chat/api/stream.py) is one of these too: it waits until the server binds it
// to an answer ({bound} control message), and from then on the connection is that answer's (`follow`). While it waits
// it reconnects like any other, but never falls back to server-sent events (the answer's own element does that).

const RECONNECT_MAX_MS = 5000;
const CLOSE_NOT_FOUND = 4404;
const WEBSOCKET_ATTEMPTS = 2;
const decoder = new TextDecoder();
// The server-sent event names of content events that are not text (chat/engine/events.py, `kind`).
const STEP_EVENTS = [
  "reasoning_delta",
  "reasoning_done",
  "tool_call_started",
  "tool_call_delta",
  "tool_call",
  "approval_required",
  "tool_running",
  "tool_result",
  "notice",
];

/** Number of Unicode code points in `text` (the stream counts code points, as Python's len() does). */
export function codePoints(text) {
  let count = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) count--; // the first half of a surrogate pair
  }
  return count;
}

export class AnswerConnection {
  /**
   * @param {URL} url the stream's http(s) URL, without a query
   * @param {object} handlers
   *   after(): the number of characters the page has now (asked at each connection);
   *   onText(delta): the next piece of the answer's text; onEvent(event): a content event that is not text (a
   *   to_json object with its seq); onControl(message): a control message ({phase} or {end: {length, seq}});
   *   onRefused(): the server refused the stream (the answer was deleted meanwhile);
   *   onOpen(): (optional) a WebSocket opened;
   *   spare: true for the page's next-answer socket, until `follow`.
   */
  constructor(url, { after, onText, onEvent, onControl, onRefused, onOpen, spare = false }) {
    Object.assign(this, { url, after, onText, onEvent, onControl, onRefused, onOpen, spare });
    this.socket = null;
    this.source = null; // an EventSource, when WebSockets never opened
    this.socketOpened = false;
    this.retries = 0;
    this.retryTimer = 0;
    this.stopped = false;
  }

  /** The stream's URL asking for the text after the characters the page has. */
  urlAfter() {
    const url = new URL(this.url);
    url.searchParams.set("after", String(this.after()));
    return url;
  }

  /** Open the stream from the characters the page has; reconnects with backoff until stopped. */
  open() {
    if (this.stopped || this.socket || this.source) return;
    if (!this.socketOpened && this.retries >= WEBSOCKET_ATTEMPTS) return this.spare ? null : this.openEventSource();
    const url = this.urlAfter();
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.retries = 0;
      this.socketOpened = true;
      this.onOpen?.();
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.onText(event.data);
      else {
        const message = JSON.parse(decoder.decode(event.data));
        if (message.event) this.onEvent?.(message.event);
        else this.onControl(message);
      }
    };
    socket.onclose = (event) => {
      this.socket = null;
      if (this.stopped) return;
      if (event.code === CLOSE_NOT_FOUND) return this.onRefused();
      const delay = Math.min(RECONNECT_MAX_MS, 250 * 2 ** this.retries++);
      this.retryTimer = setTimeout(() => this.open(), delay);
    };
  }

  /** Follow the answer over server-sent events: text_delta, the steps (STEP_EVENTS), phase and done events. */
  openEventSource() {
    const source = new EventSource(this.urlAfter());
    this.source = source;
    const data = (event) => JSON.parse(event.data);
    source.addEventListener("text_delta", (event) => this.onText(data(event).delta));
    for (const kind of STEP_EVENTS)
      source.addEventListener(kind, (event) => {
        // the API's shape (chat/api/rest.py, content_event): to_json's fields, with `id` for `call_id` and `delta`
        // for a delta's `text`; the seq is the event's id
        const { id, delta, ...fields } = data(event);
        const step = { kind, ...fields, seq: Number(event.lastEventId) };
        if (id !== undefined) step.call_id = id;
        if (delta !== undefined) step.text = delta;
        this.onEvent?.(step);
      });
    source.addEventListener("phase", (event) => this.onControl({ phase: data(event).phase }));
    source.addEventListener("done", (event) => {
      const done = data(event);
      this.onControl({ end: { length: done.length, seq: Number(event.lastEventId) } });
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) this.onRefused(); // refused; otherwise it reconnects by itself
    };
  }

  /** The socket now carries the answer whose stream is at `url`: a lost connection reconnects there. */
  follow(url) {
    this.url = url;
    this.spare = false;
  }

  /** Open no new connection from now on; one that is open is left to deliver the rest (its end, at the latest). */
  stop() {
    this.stopped = true;
  }

  /** Stop, and close the open connection now. */
  close() {
    this.stop();
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close();
    if (this.source) this.source.close();
  }
}
