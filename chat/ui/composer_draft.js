// ComposerDraft (chat/ui/composer.py): keeps the message box's unsent text in this browser's localStorage while it is
// typed, and puts it back when the page opens with an empty box. The key is the user's prefix and the conversation of
// the page's address (/c/<id>, or "new" on the start page), read at each keystroke: once the start page's first
// message has made a conversation (the address becomes /c/<id> without a reload), later text is that conversation's.
// An emptied box (a sent message) removes the draft. Setting the box's inputValue sends the text to the server
// exactly as typing does.
function key(prefix) {
  const match = location.pathname.match(/\/c\/(\d+)$/);
  return prefix + (match ? match[1] : "new");
}

function read(key) {
  try {
    return localStorage.getItem(key) || "";
  } catch (error) {
    return ""; // storage disabled: no drafts
  }
}

function write(key, text) {
  try {
    if (text) localStorage.setItem(key, text);
    else localStorage.removeItem(key);
  } catch (error) {
    console.warn("could not keep the draft", error);
  }
}

export default {
  template: "<span hidden></span>",
  props: {
    target: { type: Number, required: true }, // element id of the message box
    prefix: { type: String, required: true }, // "parley-draft:<user>:"
  },
  mounted() {
    this.$nextTick(() => {
      const box = getElement(this.target);
      if (!box) return;
      const draft = read(key(this.prefix));
      if (draft && !box.inputValue) box.inputValue = draft;
      this.unwatch = box.$watch("inputValue", (text) => write(key(this.prefix), text || ""));
    });
  },
  unmounted() {
    if (this.unwatch) this.unwatch();
  },
};
