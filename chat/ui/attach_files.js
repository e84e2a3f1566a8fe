// AttachFiles (chat/ui/attachments_tray.py): the composer's paperclip button, and pasting (Ctrl+V of an image or a
// file into the message box) and dropping files anywhere on the page. Each file is uploaded by itself to
// POST /api/attachments (the browser's own login cookie authenticates it), and the server's answer goes to the page
// as an "attached" event (the stored file's description) or a "refused" one ({name, detail}): the server reads the
// file, checks it, and keeps it for the next message. Nothing the user typed is touched.
export default {
  template: `
    <span>
      <q-btn flat round dense icon="attach_file" aria-label="Attach files" title="Attach files (or paste, or drop)"
        @click="$refs.picker.click()" />
      <input ref="picker" type="file" multiple hidden @change="picked" />
    </span>
  `,
  props: { target: String, url: String },
  emits: ["attached", "refused", "uploading"],
  mounted() {
    this.onPaste = (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (files.length) {
        event.preventDefault(); // the file, not its name as text
        this.upload(files);
      }
    };
    this.onDragOver = (event) => {
      if ([...(event.dataTransfer?.types || [])].includes("Files")) {
        event.preventDefault();
        document.body.classList.add("parley-dropping");
      }
    };
    this.onDragLeave = (event) => {
      if (event.relatedTarget === null) document.body.classList.remove("parley-dropping");
    };
    this.onDrop = (event) => {
      document.body.classList.remove("parley-dropping");
      const files = [...(event.dataTransfer?.files || [])];
      if (files.length) {
        event.preventDefault();
        this.upload(files);
      }
    };
    this.box()?.addEventListener("paste", this.onPaste);
    document.addEventListener("dragover", this.onDragOver);
    document.addEventListener("dragleave", this.onDragLeave);
    document.addEventListener("drop", this.onDrop);
  },
  unmounted() {
    this.box()?.removeEventListener("paste", this.onPaste);
    document.removeEventListener("dragover", this.onDragOver);
    document.removeEventListener("dragleave", this.onDragLeave);
    document.removeEventListener("drop", this.onDrop);
  },
  methods: {
    box() {
      return document.getElementById(`c${this.target}`);
    },
    picked(event) {
      this.upload([...event.target.files]);
      event.target.value = ""; // the same file may be picked again
    },
    async upload(files) {
      for (const file of files) {
        const name = file.name || "pasted";
        this.$emit("uploading", { name });
        const form = new FormData();
        form.append("file", file, name);
        try {
          const response = await fetch(this.url, { method: "POST", body: form, credentials: "same-origin" });
          const body = await response.json().catch(() => ({}));
          if (response.ok) this.$emit("attached", body);
          else this.$emit("refused", { name, detail: typeof body.detail === "string" ? body.detail : response.statusText });
        } catch (error) {
          this.$emit("refused", { name, detail: `${name} could not be uploaded (${error.message}).` });
        }
      }
    },
  },
};
