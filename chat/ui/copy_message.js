// CopyMessage: the Copy button under an answer. It copies the answer's Markdown from the browser's own buffer
// (the StreamingMessage it names), so copying needs no server round trip and the button carries no listener.
export default {
  template: `
    <q-btn flat dense round size="sm" :icon="copied ? 'check' : 'content_copy'" title="Copy" aria-label="Copy"
      @click="copy" />
  `,
  props: {
    message: { type: Number, required: true },
  },
  data() {
    return { copied: false };
  },
  methods: {
    async copy() {
      const message = getElement(this.message);
      if (!message || !(await message.copyAll())) return;
      this.copied = true;
      setTimeout(() => (this.copied = false), 1500);
    },
  },
};
