// Sign-up: the platform's rules (GET /api/v1/auth/options), the form, then the account's
// credits and its first API key, shown once.
import { $, api, credits, guarded, header, session, showError, clearErrors } from "./console.js";

const form = $("signup");

async function start() {
  header();
  const options = await guarded(() => api("GET", "/api/v1/auth/options"));
  if (!options) return;
  $("password-rule").textContent = `At least ${options.min_password_length} characters; not a common one.`;
  if (options.signup_mode === "closed") {
    form.hidden = true;
    $("closed").hidden = false;
    $("lead").hidden = true;
  }
  $("invite-field").hidden = options.signup_mode !== "invite";
  form.dataset.verification = options.email_verification ? "1" : "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const data = Object.fromEntries(new FormData(form));
  if (!data.invite_code) delete data.invite_code;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const made = await api("POST", "/api/v1/auth/signup", data);
    await welcome(made);
  } catch (e) {
    showError(e, form);
  } finally {
    button.disabled = false;
  }
});

async function welcome(made) {
  await session(true);
  header();
  form.closest("section").hidden = true;
  $("done").hidden = false;
  $("first-key").textContent = made.first_key.api_key;
  const account = await guarded(() => api("GET", "/api/v1/account"));
  if (account) $("credits").textContent = `Your balance: ${credits(account.balance)}.`;
  $("verify-note").hidden = made.email_verified;
  $("copy-key").focus();
}

$("copy-key").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("first-key").textContent);
    $("copy-key").textContent = "Copied";
  } catch (e) {
    getSelection().selectAllChildren($("first-key")); // copy by hand
  }
});

start();
