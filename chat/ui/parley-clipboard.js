// The clipboard of StreamingMessage (streaming_message.js): a copy button on every code block, and copying text (a
// code block's, or the whole message's Markdown for its copyAll(), which copy_message.js and shortcuts.js call).
//
// navigator.clipboard exists only in secure contexts (https, localhost: W3C Clipboard API and events): on plain http
// on a LAN the text is copied with document.execCommand("copy") from a hidden <textarea>, and the reader's selection
// is put back.

const COPIED_MS = 1500; // how long a copy button shows its check mark
const COPY_ICON =
  '<svg class="parley-icon-copy" viewBox="0 0 16 16" aria-hidden="true"><path fill="currentColor" d="M0 6.75C0 ' +
  "5.784.784 5 1.75 5h1.5a.75.75 0 0 1 0 1.5h-1.5a.25.25 0 0 0-.25.25v7.5c0 .138.112.25.25.25h7.5a.25.25 0 0 0 " +
  ".25-.25v-1.5a.75.75 0 0 1 1.5 0v1.5A1.75 1.75 0 0 1 9.25 16h-7.5A1.75 1.75 0 0 1 0 14.25Zm5-5C5 .784 5.784 0 " +
  "6.75 0h7.5C15.216 0 16 .784 16 1.75v7.5A1.75 1.75 0 0 1 14.25 11h-7.5A1.75 1.75 0 0 1 5 9.25Zm1.75-.25a.25.25 " +
  '0 0 0-.25.25v7.5c0 .138.112.25.25.25h7.5a.25.25 0 0 0 .25-.25v-7.5a.25.25 0 0 0-.25-.25Z"/></svg>' +
  '<svg class="parley-icon-check" viewBox="0 0 16 16" aria-hidden="true"><path fill="currentColor" d="M13.78 ' +
  "4.22a.75.75 0 0 1 0 1.06l-7.25 7.25a.75.75 0 0 1-1.06 0L2.22 9.28a.751.751 0 0 1 .018-1.042.751.751 0 0 1 " +
  '1.042-.018L6 10.94l6.72-6.72a.75.75 0 0 1 1.06 0Z"/></svg>';

/** Give every code block (<pre>) in `root` a copy button; clicks on it are handled by copyCodeOnClick. */
export function addCopyButtons(root) {
  for (const pre of root.querySelectorAll("pre")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "parley-copy";
    button.title = "Copy code";
    button.setAttribute("aria-label", "Copy code");
    button.innerHTML = COPY_ICON;
    pre.appendChild(button);
  }
}

/** A click in `root`: when it is on one of its copy buttons, copy that code block's text and show a check mark. */
export async function copyCodeOnClick(event, root) {
  const button = event.target.closest?.(".parley-copy");
  if (!button || !root.contains(button)) return;
  const code = button.parentElement.querySelector("code");
  const ok = await copyText(code ? code.textContent : "");
  if (!ok) return;
  button.classList.add("parley-copied");
  setTimeout(() => button.classList.remove("parley-copied"), COPIED_MS);
}

/** Put `text` on the clipboard; resolves to true when it worked. */
export async function copyText(text) {
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
