// A signed-in person's password change (a card on the dashboard): a new session comes
// back in the cookie, every other one ends.
import { $, api, clearErrors, el, session, showError } from "./console.js";

const form = $("password-change");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  try {
    await api("POST", "/api/v1/auth/password", Object.fromEntries(new FormData(form)));
    await session(true); // the new session's CSRF token
    form.reset();
    form.querySelector(".form-error").replaceChildren(el("span", { class: "notice good", role: "status" }, "Password changed."));
  } catch (e) {
    showError(e, form);
  }
});

session().then((s) => { $("password-card").hidden = !s; });
