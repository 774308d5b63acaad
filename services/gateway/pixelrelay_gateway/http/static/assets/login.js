// Sign-in, and the two mailed links that land here: ?verify=… (confirm the email) and
// ?reset=… (choose a new password).
import { $, api, guarded, header, session, showError, clearErrors, el } from "./console.js";

const params = new URLSearchParams(location.search);

function next() {
  const wanted = params.get("next") || "";
  // a path on this site only: never a link out (an open redirect)
  return /^\/(?!\/)/.test(wanted) ? wanted : "/dashboard";
}

function say(text, good = true) {
  $("banner").replaceChildren(el("p", { class: good ? "notice good" : "notice", role: "status" }, text));
}

async function submitting(form, call) {
  clearErrors(form);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    return await call(Object.fromEntries(new FormData(form)));
  } catch (e) {
    showError(e, form);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const signed = await submitting(event.target, (body) => api("POST", "/api/v1/auth/login", body));
  if (signed) location.assign(next());
});

$("reset-ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const asked = await submitting(event.target, (body) => api("POST", "/api/v1/auth/password-reset", body));
  if (asked !== undefined) say("If an account has this email, a reset link is on its way (valid 1 hour).");
});

$("reset").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = (data) => ({ token: params.get("reset"), new_password: data.new_password });
  const signed = await submitting(event.target, (data) => api("POST", "/api/v1/auth/password-reset/confirm", body(data)));
  if (signed) location.assign("/dashboard");
});

async function start() {
  header();
  const options = await guarded(() => api("GET", "/api/v1/auth/options"));
  if (options) {
    $("reset-ask").hidden = !options.password_reset_by_email;
    $("reset-by-operator").hidden = options.password_reset_by_email;
  }
  if (params.get("reset")) {
    $("sign-in").hidden = true;
    $("new-password").hidden = false;
  } else if (params.get("verify")) {
    const verified = await guarded(() => api("POST", "/api/v1/auth/verify-email", { token: params.get("verify") }), $("login"));
    if (verified) say(`Email confirmed: ${verified.email}. Your sign-up credits are in your account.`);
  } else if (await session()) {
    say("You are signed in.");
  }
}

start();
