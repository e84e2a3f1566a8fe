// ThemeToggle: the header's theme button (chat/ui/theme.py). Light, dark or auto (the system's prefers-color-scheme),
// stored in this browser's localStorage and applied at once with NiceGUI's setDark (Quasar's dark mode); another
// open tab of the same browser follows through the storage event. Nothing is sent to the server.
const CHOICES = [
  { value: "light", label: "Light", icon: "light_mode" },
  { value: "dark", label: "Dark", icon: "dark_mode" },
  { value: "auto", label: "Auto (system)", icon: "brightness_auto" },
];

export default {
  template: `
    <q-btn flat round :icon="current.icon" :aria-label="'Theme: ' + current.label" :title="'Theme: ' + current.label">
      <q-menu anchor="bottom right" self="top right">
        <q-list style="min-width: 190px">
          <q-item v-for="choice in choices" :key="choice.value" clickable v-close-popup :data-theme="choice.value"
            role="menuitemradio" :aria-checked="String(choice.value === value)" @click="choose(choice.value)">
            <q-item-section avatar><q-icon :name="choice.icon" /></q-item-section>
            <q-item-section>{{ choice.label }}</q-item-section>
            <q-item-section side><q-icon v-if="choice.value === value" name="check" /></q-item-section>
          </q-item>
        </q-list>
      </q-menu>
    </q-btn>
  `,
  props: {
    storageKey: { type: String, required: true },
  },
  data() {
    return { value: this.stored(), choices: CHOICES };
  },
  computed: {
    current() {
      return CHOICES.find((choice) => choice.value === this.value);
    },
  },
  mounted() {
    // Quasar's body class rules from now on; <html class="parley-dark"> was for the first paint only
    document.documentElement.classList.remove("parley-dark");
    window.addEventListener("storage", this.onStorage);
  },
  unmounted() {
    window.removeEventListener("storage", this.onStorage);
  },
  methods: {
    stored() {
      try {
        const value = localStorage.getItem(this.storageKey);
        return value === "light" || value === "dark" ? value : "auto";
      } catch (error) {
        return "auto"; // storage disabled: follow the system
      }
    },
    apply() {
      setDark(this.value === "dark" ? true : this.value === "light" ? false : None);
    },
    choose(value) {
      this.value = value;
      try {
        if (value === "auto") localStorage.removeItem(this.storageKey);
        else localStorage.setItem(this.storageKey, value);
      } catch (error) {
        console.warn("could not keep the theme choice", error);
      }
      this.apply();
    },
    onStorage(event) {
      if (event.key !== this.storageKey) return; // another tab chose a theme: follow it
      this.value = this.stored();
      this.apply();
    },
  },
};
