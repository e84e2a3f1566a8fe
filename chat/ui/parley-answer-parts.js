// AnswerParts: an answer as an ordered list of segments, for StreamingMessage (streaming_message.js).
//
// An answer is a numbered log of content events (chat/engine/events.py; `to_json` is their JSON). This module folds
// them into what the page shows, in order, the same way `events.parts()` does on the server:
//
// * text segments: each its own BlockRenderer (Markdown, sanitized by DOMPurify), streaming as a plain answer does;
// * reasoning: a <details> "Thinking" block, open while the model thinks, folded with "Thought for 12 s" once it ended;
// * tool calls: a group of rows (the calls of one round), each a <details> whose summary has the tool's name, its
//   source, a status chip (in words, not only a colour) and the duration; inside, the arguments (monospace JSON,
//   streaming, pretty-printed once complete), the argument error, and the result as plain text (textContent only:
//   tool output is untrusted), long results folded behind "Show all";
// * an approval card per call that waits for its owner (live answers only): the tool, its source, the full arguments,
//   Approve / Deny / Always allow this tool, and the deadline; it goes once the call runs or ends;
// * notices: a muted line with an info icon.
//
// Model output, tool names, arguments and results are all untrusted: only text segments and reasoning go through the
// Markdown renderer (which sanitizes); everything else is set with textContent.
import { BlockRenderer } from "parley-block-renderer";

/** What each tool call status (events.ToolStatus) says in its chip. */
export const STATUS_LABELS = {
  streaming_arguments: "streaming arguments…",
  awaiting_approval: "waiting for approval",
  running: "running…",
  succeeded: "done",
  failed: "failed",
  denied: "denied",
  cancelled: "cancelled",
  expired: "expired",
  sent_to_client: "run by the client",
};
const SOURCE_LABELS = { builtin: "built-in", client: "client tool", "": "unknown tool" };
const FOLD_CHARS = 1000; // a result longer than this, or with more lines than FOLD_LINES, is folded
const FOLD_LINES = 20;

/** A new element `tag` with `className` and, when given, `text` as its textContent (never HTML). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A Material icon (NiceGUI's font), hidden from assistive technology: the text next to it says the same. */
function icon(name) {
  const node = el("i", "q-icon notranslate material-icons parley-part-icon", name);
  node.setAttribute("aria-hidden", "true");
  return node;
}

/** "0.4 s", "12 s": seconds as the page says them. */
export function formatSeconds(seconds) {
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

/** What a folded reasoning block's summary says. */
export function thoughtFor(seconds) {
  return seconds < 1 ? "Thought for a moment" : `Thought for ${Math.round(seconds)} s`;
}

/** Where a tool comes from, in words. */
export function sourceLabel(source) {
  if (source in SOURCE_LABELS) return SOURCE_LABELS[source];
  return `${source} (MCP server)`;
}

/** The arguments as shown: pretty-printed when they are a parsed object, else the text as it streamed. */
function argumentsText(call) {
  if (call.parsed && typeof call.parsed === "object") return JSON.stringify(call.parsed, null, 2);
  return call.arguments;
}

/** The text after the last newline of `text` (all of it when it has none). */
function lastLine(text) {
  return text.slice(text.lastIndexOf("\n") + 1);
}

function isLong(text) {
  if (text.length > FOLD_CHARS) return true;
  let lines = 1;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) if (++lines > FOLD_LINES) return true;
  return false;
}

export class AnswerParts {
  /**
   * @param {HTMLElement} root the element the segments go into (emptied by load())
   * @param {object} options
   *   decorate(fragment): called with each new Markdown block (the code blocks' copy buttons);
   *   onDecide({call_id, approve, always}): the reader decided on a tool call's approval.
   */
  constructor(root, { decorate, onDecide }) {
    Object.assign(this, { root, decorate, onDecide });
    this.segments = []; // {kind: "text"|"reasoning"|"tool_calls"|"notice", node, ...}
    this.calls = new Map(); // call_id -> the call's state and its row's nodes
    this.live = false;
  }

  /** Show `events` (to_json objects, in log order) from scratch; `live`: the answer is still being generated. */
  load(events, live) {
    this.reset();
    this.live = live;
    for (const event of events) this.apply(event);
  }

  /** Show a plain answer's text from scratch: one text segment (there even when empty, as a plain answer's is). */
  loadText(text, live) {
    this.live = live;
    const only = this.segments.length === 1 && this.segments[0].kind === "text" ? this.segments[0] : null;
    if (only) {
      // the same plain answer again (e.g. its final text): blocks whose HTML is unchanged keep their DOM nodes
      Object.assign(only, { buffer: text, line: lastLine(text), dirty: true, ended: false });
      only.renderer.unfreeze();
      return;
    }
    this.reset();
    this.appendText(text);
  }

  reset() {
    for (const call of this.calls.values()) this.removeCard(call);
    this.root.replaceChildren();
    this.segments = [];
    this.calls.clear();
  }

  /** The answer is over: no card waits any more (a call that was waiting ends with its own event). */
  end() {
    this.live = false;
    for (const call of this.calls.values()) this.removeCard(call);
  }

  /** The whole answer's text (its text segments joined), as stored in Message.content. */
  get text() {
    return this.segments
      .filter((s) => s.kind === "text")
      .map((s) => s.buffer)
      .join("");
  }

  /** True when anything is shown. */
  get hasContent() {
    return this.segments.some((s) => s.kind !== "text" || s.buffer);
  }

  /** The kind of the last segment ("" when none). */
  get lastKind() {
    return this.segments.length ? this.segments[this.segments.length - 1].kind : "";
  }

  /** Render the Markdown segments that changed; the last one while `live` only from its unfinished block on. */
  render(live) {
    const last = this.segments[this.segments.length - 1];
    for (const segment of this.segments) {
      if (!segment.renderer || !segment.dirty) continue;
      segment.dirty = false;
      if (live && segment === last && !segment.ended) segment.renderer.renderTail(segment.body, segment.buffer);
      else segment.renderer.renderAll(segment.body, segment.buffer);
    }
  }

  /** Mark every Markdown segment for one full render (the answer ended, or the styles arrived). */
  invalidate() {
    for (const segment of this.segments) if (segment.renderer) segment.dirty = true;
  }

  // -- events ------------------------------------------------------------------------------------------------------

  /**
   * Add the next piece of the answer's text (a text frame, or a text_delta event). While the answer is live and its
   * last text is shown as rendered, words that only lengthen the last paragraph are shown at once, without a render
   * (BlockRenderer.appendPlain). Returns true when the piece is shown; false when a render must show it.
   */
  appendText(text) {
    let segment = this.segments[this.segments.length - 1];
    if (!segment || segment.kind !== "text") {
      segment = this.markdownSegment("text", el("div", "parley-md"));
      segment.body = segment.node;
    }
    const shown = this.live && !segment.dirty && !segment.ended && segment.renderer.appendPlain(segment.line, text);
    segment.buffer += text;
    const newline = text.lastIndexOf("\n");
    segment.line = newline < 0 ? segment.line + text : text.slice(newline + 1);
    if (!shown) segment.dirty = true;
    return shown;
  }

  /** True when a render would change what is shown (a segment's text is not shown as rendered yet). */
  get dirty() {
    return this.segments.some((segment) => segment.dirty);
  }

  /** Apply one content event (a to_json object). Unknown kinds are ignored (a newer server). */
  apply(event) {
    switch (event.kind) {
      case "text_delta":
        return this.appendText(event.text);
      case "reasoning_delta":
        return this.appendReasoning(event.text);
      case "reasoning_done":
        return this.endReasoning(event.seconds);
      case "notice":
        return this.addNotice(event.text);
      case "tool_call_started":
        return this.startCall(event);
    }
    const call = this.calls.get(event.call_id);
    if (!call) return;
    switch (event.kind) {
      case "tool_call_delta":
        call.arguments += event.text;
        return this.showArguments(call);
      case "tool_call":
        Object.assign(call, { arguments: event.arguments, parsed: event.parsed, error: event.error });
        this.showArguments(call);
        if (event.error) {
          call.errorNode.textContent = `The arguments cannot be used: ${event.error}`;
          call.errorNode.hidden = false;
        }
        return;
      case "approval_required":
        this.setStatus(call, "awaiting_approval");
        return this.showCard(call, event);
      case "tool_running":
        this.removeCard(call);
        return this.setStatus(call, "running");
      case "tool_result":
        this.removeCard(call);
        call.result = event.result;
        this.setStatus(call, event.status);
        if (event.duration !== null && event.duration !== undefined)
          call.durationNode.textContent = formatSeconds(event.duration);
        return this.showResult(call, event);
    }
  }

  // -- segments ----------------------------------------------------------------------------------------------------

  /** Close the last Markdown segment (it gets its final render) and add `node` as a new segment of `kind`. */
  addSegment(kind, node, extra = {}) {
    let last = this.segments[this.segments.length - 1];
    if (last && last.kind === "text" && !last.buffer) {
      last.node.remove(); // the empty text segment of an answer that started plain
      this.segments.pop();
      last = this.segments[this.segments.length - 1];
    }
    if (last && last.renderer && !last.ended) {
      last.ended = true;
      last.dirty = true;
    }
    const segment = { kind, node, ...extra };
    this.segments.push(segment);
    this.root.appendChild(node);
    return segment;
  }

  markdownSegment(kind, node) {
    const renderer = new BlockRenderer(this.decorate);
    return this.addSegment(kind, node, { buffer: "", line: "", dirty: false, ended: false, renderer });
  }

  appendReasoning(text) {
    let segment = this.segments[this.segments.length - 1];
    if (!segment || segment.kind !== "reasoning" || segment.finished) {
      const details = el("details", "parley-reasoning");
      details.open = this.live; // open while it thinks; a stored answer shows it folded
      const summary = el("summary", "parley-reasoning-summary");
      summary.append(icon("psychology"), el("span", "parley-reasoning-label", "Thinking…"));
      const body = el("div", "parley-md parley-reasoning-text");
      details.append(summary, body);
      segment = this.markdownSegment("reasoning", details);
      Object.assign(segment, { body, label: summary.lastChild, finished: false });
    }
    segment.buffer += text;
    segment.dirty = true;
  }

  endReasoning(seconds) {
    const segment = [...this.segments].reverse().find((s) => s.kind === "reasoning");
    if (!segment) return;
    segment.finished = segment.ended = true;
    segment.dirty = true;
    segment.label.textContent = thoughtFor(seconds);
    segment.node.open = false; // folded once the answer text starts
  }

  addNotice(text) {
    const node = el("div", "parley-notice");
    node.setAttribute("role", "note");
    node.append(icon("info"), el("span", "", text));
    this.addSegment("notice", node);
  }

  startCall(event) {
    let group = this.segments[this.segments.length - 1];
    if (!group || group.kind !== "tool_calls" || group.calls.some((c) => c.result !== null)) {
      const node = el("div", "parley-tool-group");
      node.setAttribute("role", "group");
      node.setAttribute("aria-label", "Tool calls");
      group = this.addSegment("tool_calls", node, { calls: [] });
    }
    const call = {
      callId: event.call_id,
      name: event.name,
      source: event.source || "",
      arguments: "",
      parsed: null,
      error: null,
      result: null,
      status: "streaming_arguments",
      card: null,
      timer: 0,
    };
    const row = el("details", "parley-tool-call");
    row.dataset.callId = call.callId;
    const summary = el("summary", "parley-tool-summary");
    call.chip = el("span", "parley-chip");
    call.durationNode = el("span", "parley-tool-duration");
    summary.append(
      icon("build"),
      el("span", "parley-tool-name", call.name),
      el("span", "parley-tool-source", sourceLabel(call.source)),
      call.chip,
      call.durationNode,
    );
    const body = el("div", "parley-tool-body");
    call.argsNode = el("pre", "parley-tool-args");
    call.argsNode.setAttribute("aria-label", "Arguments");
    call.errorNode = el("div", "parley-tool-error");
    call.errorNode.hidden = true;
    call.resultBox = el("div", "parley-tool-result-box");
    call.resultBox.hidden = true;
    body.append(el("div", "parley-tool-label", "Arguments"), call.argsNode, call.errorNode, call.resultBox);
    row.append(summary, body);
    call.row = row;
    this.calls.set(call.callId, call);
    group.calls.push(call);
    group.node.appendChild(row);
    this.setStatus(call, "streaming_arguments");
  }

  setStatus(call, status) {
    call.status = status;
    call.row.dataset.status = status;
    call.chip.dataset.status = status;
    call.chip.textContent = STATUS_LABELS[status] || status;
  }

  showArguments(call) {
    call.argsNode.textContent = argumentsText(call);
    if (call.card) call.card.args.textContent = argumentsText(call);
  }

  showResult(call, event) {
    const box = call.resultBox;
    box.replaceChildren();
    box.hidden = false;
    const label = event.is_error ? "Error" : "Result";
    box.append(el("div", "parley-tool-label", event.truncated ? `${label} (cut to the size limit)` : label));
    const pre = el("pre", "parley-tool-result", event.result); // plain text: tool output is untrusted
    if (event.is_error) pre.classList.add("parley-tool-result-error");
    box.append(pre);
    if (isLong(event.result)) {
      pre.classList.add("parley-folded");
      const more = el("button", "parley-show-all", "Show all");
      more.type = "button";
      more.setAttribute("aria-expanded", "false");
      more.addEventListener("click", () => {
        const folded = pre.classList.toggle("parley-folded");
        more.textContent = folded ? "Show all" : "Show less";
        more.setAttribute("aria-expanded", folded ? "false" : "true");
      });
      box.append(more);
    }
  }

  // -- approval cards ----------------------------------------------------------------------------------------------

  showCard(call, event) {
    this.removeCard(call);
    if (!this.live) return; // a stored answer has nobody to ask any more
    const card = el("div", "parley-approval");
    card.setAttribute("role", "group");
    card.setAttribute("aria-label", `Approve the tool call ${call.name}?`);
    card.dataset.callId = call.callId;
    const title = el("div", "parley-approval-title");
    title.append(icon("front_hand"), el("span", "", "Run the tool"), el("strong", "parley-tool-name", call.name));
    const source = el("div", "parley-approval-source", `Source: ${sourceLabel(event.source ?? call.source)}`);
    card.append(title, source);
    if (event.changed) card.append(el("div", "parley-approval-changed", "This tool changed since you allowed it."));
    card.args = el("pre", "parley-tool-args parley-approval-args", argumentsText(call));
    card.args.setAttribute("aria-label", "Arguments");
    const deadline = el("div", "parley-approval-deadline");
    const buttons = el("div", "parley-approval-buttons");
    const decide = (approve, always) => {
      for (const button of buttons.children) button.disabled = true;
      this.onDecide({ call_id: call.callId, approve, always });
    };
    for (const [text, kind, approve, always] of [
      ["Approve", "parley-approve", true, false],
      ["Deny", "parley-deny", false, false],
      ["Always allow this tool", "parley-always", true, true],
    ]) {
      const button = el("button", `parley-approval-button ${kind}`, text);
      button.type = "button";
      button.addEventListener("click", () => decide(approve, always));
      buttons.append(button);
    }
    card.buttons = buttons;
    card.append(card.args, deadline, buttons);
    const tick = () => {
      const left = Math.max(0, Math.round(event.deadline - Date.now() / 1000));
      const at = new Date(event.deadline * 1000).toLocaleTimeString();
      const minutes = Math.floor(left / 60);
      const seconds = String(left % 60).padStart(2, "0");
      deadline.textContent = left > 0 ? `Waits until ${at} (${minutes}:${seconds} left)` : `Expired at ${at}`;
    };
    tick();
    call.timer = setInterval(tick, 1000);
    call.card = card;
    call.row.after(card);
  }

  /** Make a card's buttons usable again (the decision was not taken, e.g. it failed). */
  enableCard(callId) {
    const call = this.calls.get(callId);
    if (call && call.card) for (const button of call.card.buttons.children) button.disabled = false;
  }

  removeCard(call) {
    if (call.timer) clearInterval(call.timer);
    call.timer = 0;
    if (call.card) call.card.remove();
    call.card = null;
  }
}
