// Parley's login form (chat/ui/login_page.py): posts the name and password as JSON to POST /login with fetch, so
// the page stays as it is (what was typed included) when the login is refused; shows the refusal, or goes on to the
// form's data-next (a local path only: never another site).
(() => {
  "use strict";

  // "/path" is fine; "//host", "/\host", "https://…" and anything with a control character are not.
  function localPath(target) {
    if (typeof target !== "string" || !target.startsWith("/") || target.startsWith("//")) return "/";
    if (/[\\\u0000-\u001f\u007f]/.test(target)) return "/";
    return target;
  }

  async function logIn(form) {
    const error = form.querySelector(".parley-login-error");
    const button = form.querySelector("button[type=submit]");
    const data = new FormData(form);
    error.textContent = "";
    button.disabled = true;
    try {
      const response = await fetch("/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ name: String(data.get("name") || ""), password: String(data.get("password") || "") }),
      });
      if (response.ok) {
        location.assign(localPath(form.dataset.next));
        return;
      }
      let detail = `The login failed (HTTP ${response.status}).`;
      try {
        const body = await response.json();
        if (typeof body.detail === "string") detail = body.detail;
        else if (response.status === 422) detail = "Type a name and a password.";
      } catch (_) {
        // not JSON: keep the generic message
      }
      error.textContent = detail;
    } catch (_) {
      error.textContent = "Parley could not be reached. Check the connection and try again.";
    } finally {
      button.disabled = false;
    }
  }

  // The form is built by Vue after this script runs: listen on the document.
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.classList.contains("parley-login-form")) return;
      event.preventDefault();
      logIn(form);
    },
    true,
  );
})();
