// API keys' form and secret, shared by the customer's dashboard (their own keys) and the
// operator console (any account's keys): the form's fields are the same in both pages
// (name, valid through, credit limit, rate limit, scope boxes named "scope").
import { DAY, dayStart, el, n, shownOnce, when } from "./console.js";

export const keyName = (k) => k.name || "(unnamed)";
export const keyLabel = (k) => `${k.prefix}…${k.last4}`;

// revoked, expired or active (`active` the word for an active key)
export function keyState(k, active = "active") {
  if (k.revoked_at) return `revoked ${when(k.revoked_at)}`;
  if (k.expires_at && k.expires_at * 1000 <= Date.now()) return "expired";
  return active;
}

// What the form asks for, as KeyCreateBody: blank fields are left out (no limit, no expiry).
export function keyBody(form) {
  const field = (name) => form.elements.namedItem(name).value.trim();
  const body = { name: field("name") };
  if (field("expires_at")) body.expires_at = dayStart(field("expires_at")) + DAY; // through that day
  for (const name of ["credit_limit", "rate_limit"]) {
    if (field(name) !== "") body[name] = Number(field(name)); // the API judges the number
  }
  const scopes = [...form.querySelectorAll('input[name="scope"]:checked')].map((box) => box.value);
  if (scopes.length) body.scopes = scopes;
  return body;
}

// The new key's secret, once, in `where` (the API's CreatedKeyOut).
export function showSecret(where, { api_key: secret, key }) {
  return shownOnce(where, {
    label: "New API key",
    lead: `Key “${keyName(key)}” created.`,
    note: "Copy it now and keep it somewhere safe: you won't see it again (only its last four characters).",
    value: secret,
    valueId: "new-key",
    copyLabel: "Copy key",
  });
}

// The key table's columns (for console.js's table()): stateOf(k) says a key's state,
// onRevoke(k) is the Revoke button's action, `more` columns go last.
export function keyColumns({ stateOf = keyState, onRevoke, more = [] }) {
  const limit = (v) => (v === null ? "none" : n(v));
  return [
    ["Name", keyName],
    ["Key", (k) => el("code", {}, keyLabel(k))],
    ["Status", stateOf],
    // the action next to the state, not past a scroll on a narrow screen
    ["", (k) => (k.revoked_at ? "" : el("button", {
      type: "button", class: "danger small", "aria-label": `Revoke ${keyName(k)} (${keyLabel(k)})`,
      onclick: () => onRevoke(k),
    }, "Revoke"))],
    ["Scopes", (k) => k.scopes.join(", "), "wrap"],
    ["Spent", (k) => n(k.spent), "num"],
    ["Credit limit", (k) => limit(k.credit_limit), "num"],
    ["Rate limit /min", (k) => limit(k.rate_limit), "num"],
    ["Expires", (k) => (k.expires_at ? when(k.expires_at) : "never")],
    ["Created", (k) => when(k.created_at)],
    ...more,
  ];
}
