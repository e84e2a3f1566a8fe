// Shortcuts: the chat pages' keyboard shortcuts (chat/ui/shortcuts.py holds the list and the dialog). What needs no
// server happens here: new chat, the search palette (a click on the drawer's Search button), focus the message box,
// copy the last answer, previous/next conversation. The rest is an event for the page ("stop", "regenerate",
// "help"). Ctrl is ⌘ on a Mac.
const MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

/** "Ctrl+Shift+O" -> { ctrl: true, alt: false, shift: true, key: "O" } */
function parse(combination) {
  const parts = combination === "+" ? ["+"] : combination.split("+");
  const key = parts.pop();
  return { ctrl: parts.includes("Ctrl"), alt: parts.includes("Alt"), shift: parts.includes("Shift"), key };
}

/** True when `event` is the combination. Letters are matched by their key position (Alt+R types "®" on a Mac); a
 * lone symbol such as "?" by the character typed, whatever Shift it took. */
function matches(event, combo) {
  const ctrl = MAC ? event.metaKey : event.ctrlKey;
  if (ctrl !== combo.ctrl || event.altKey !== combo.alt) return false;
  if (/^[A-Za-z]$/.test(combo.key)) return event.shiftKey === combo.shift && event.code === `Key${combo.key.toUpperCase()}`;
  if (combo.key.length === 1 && !/[A-Za-z0-9]/.test(combo.key)) return event.key === combo.key;
  return event.shiftKey === combo.shift && event.key === combo.key;
}

/** True when the user is typing: a plain key must go to the text field then. */
function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function toast(message) {
  Quasar.Notify.create({ message, timeout: 1500, position: "bottom" });
}

export default {
  template: "<span hidden></span>",
  props: {
    shortcuts: { type: Array, required: true }, // [{ action, keys: ["Ctrl+Shift+O", …] }]
    pageActions: { type: Array, required: true }, // actions the page carries out
    composer: { type: Number, required: true }, // element id of the message box
  },
  created() {
    this.bindings = this.shortcuts.flatMap(({ action, keys }) => keys.map((key) => ({ action, combo: parse(key) })));
  },
  mounted() {
    window.addEventListener("keydown", this.onKeydown, true); // capture: before a dialog closes itself on Esc
  },
  unmounted() {
    window.removeEventListener("keydown", this.onKeydown, true);
  },
  methods: {
    onKeydown(event) {
      if (event.repeat || event.isComposing) return;
      const binding = this.bindings.find(({ combo }) => matches(event, combo));
      if (!binding) return;
      const plain = !binding.combo.ctrl && !binding.combo.alt;
      if (plain && binding.combo.key !== "Escape" && typing(event.target)) return; // "?" typed into the message box
      if (!this.run(binding.action)) return;
      event.preventDefault();
      event.stopPropagation();
    },
    /** Do `action`; false when it does not apply now (the key then does what it would do anyway). */
    run(action) {
      const overlay = document.querySelector(".q-dialog, .q-menu");
      if (action === "stop") {
        if (overlay || !document.querySelector('.parley-message-body[aria-busy="true"]')) return false;
      } else if (overlay && action !== "help") {
        return false;
      }
      if (this.pageActions.includes(action)) {
        this.$emit(action);
        return true;
      }
      return this[action.replace(/-(\w)/g, (_, letter) => letter.toUpperCase())]();
    },
    newChat() {
      location.assign(`${window.path_prefix}/`);
      return true;
    },
    search() {
      const button = document.querySelector(".parley-search-button"); // chat/ui/search_palette.py
      if (!button) return false;
      button.click();
      return true;
    },
    focusComposer() {
      const box = getElement(this.composer)?.$refs.qRef; // NiceGUI's textarea wraps Quasar's QInput
      if (!box) return false;
      box.focus();
      return true;
    },
    copyLast() {
      const bodies = document.querySelectorAll(".parley-message-body:not(.hidden)");
      const last = bodies.length ? getElement(bodies[bodies.length - 1]) : null;
      if (!last) {
        toast("There is no answer to copy yet.");
        return true;
      }
      last.copyAll().then((ok) => toast(ok ? "Copied the last answer." : "The browser did not allow copying."));
      return true;
    },
    previousConversation() {
      return this.openConversation(-1);
    },
    nextConversation() {
      return this.openConversation(1);
    },
    /** Open the conversation `step` rows below (1) or above (-1) this one in the drawer's list. */
    openConversation(step) {
      const links = Array.from(document.querySelectorAll("a.parley-conversation-link"));
      if (!links.length) return false;
      const here = links.findIndex((link) => new URL(link.href).pathname === location.pathname);
      const next = here === -1 ? (step > 0 ? 0 : links.length - 1) : here + step;
      if (next < 0 || next >= links.length) return true; // the first or last already: nothing to do, but handled
      location.assign(links[next].href);
      return true;
    },
  },
};
