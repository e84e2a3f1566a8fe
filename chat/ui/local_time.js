// LocalTime (chat/ui/local_time.py): a UTC moment in the reader's own time zone and language. The time of day when it is
// today, else the date and time; the full date and time as the tooltip.
export default {
  template: `<time :datetime="datetime" :title="full" class="parley-time">{{ short }}</time>`,
  props: {
    datetime: { type: String, required: true },
  },
  computed: {
    moment() {
      return new Date(this.datetime);
    },
    short() {
      const today = this.moment.toDateString() === new Date().toDateString();
      const time = { hour: "2-digit", minute: "2-digit" };
      return this.moment.toLocaleString(undefined, today ? time : { day: "numeric", month: "short", ...time });
    },
    full() {
      return this.moment.toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" });
    },
  },
};
