// SendButton (chat/ui/composer.py): the message box's one button, Send or Stop. It shows Stop while an answer on the
// page is live (a StreamingMessage with aria-busy="true", which announces each change with a "parley-live" event), Send
// otherwise: switching costs no message from the server. A click goes to the server, which sends or stops as the
// conversation is.
export default {
  template: `
    <q-btn round unelevated :color="busy ? 'negative' : 'primary'" :icon="busy ? 'stop' : 'send'"
      :aria-label="busy ? 'Stop' : 'Send'" :title="busy ? 'Stop the answer' : 'Send'" @click="$emit('click')" />
  `,
  emits: ["click"], // declared: a component event, not also a native listener on the button
  data() {
    return { busy: false };
  },
  mounted() {
    this.update = () => {
      this.busy = document.querySelector('.parley-message-body[aria-busy="true"]') !== null;
    };
    document.addEventListener("parley-live", this.update);
    this.update();
  },
  unmounted() {
    document.removeEventListener("parley-live", this.update);
  },
};
