// What every console page shares: the API client (a pasted key, or the signed-in session's
// cookie with its CSRF token), errors shown beside their field, a retry when the
// connection drops, the header, and safe DOM building (text never becomes markup).
//
// Secrets live in this tab only: a pasted API key or admin token in sessionStorage, never
// localStorage (which outlives the tab and is readable by any later script of this
// origin); the session cookie is HttpOnly, out of every script's reach.

const KEY = "pixelrelay-key";
const ADMIN_TOKEN = "pixelrelay-admin-token";
localStorage.removeItem(KEY); // earlier playgrounds kept the key there

export const $ = (id) => document.getElementById(id);

// el("a", {href: "/x", class: "y"}, "text", child) → an element; strings become text nodes.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

export class ApiError extends Error {
  // status 0: the request never got an answer (connection lost, gateway down)
  constructor(status, code, type, message, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.type = type;
    this.param = param || "";
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (key) => (key ? sessionStorage.setItem(KEY, key) : sessionStorage.removeItem(KEY)),
};
export const adminToken = {
  get: () => sessionStorage.getItem(ADMIN_TOKEN) || "",
  set: (token) =>
    token ? sessionStorage.setItem(ADMIN_TOKEN, token) : sessionStorage.removeItem(ADMIN_TOKEN),
};

let sessionAsked = null;
// The signed-in session ({account_id, email, email_verified, csrf_token}), or null.
export function session(refresh = false) {
  if (refresh || sessionAsked === null) {
    sessionAsked = fetch("/api/v1/auth/session", { credentials: "same-origin" })
      .then((res) => (res.ok ? res.json() : null))
      .catch(() => null);
  }
  return sessionAsked;
}

async function send(path, init) {
  let res;
  try {
    res = await fetch(path, { credentials: "same-origin", ...init });
  } catch (e) {
    throw new ApiError(0, "network", "connection", "No answer from the server: check the connection and retry.");
  }
  if (init.raw && res.ok) return res;
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!res.ok) {
    const err = (json && json.error) || {};
    throw new ApiError(res.status, err.code || String(res.status), err.type || "error",
      err.message || `the server answered ${res.status}`, err.param);
  }
  return json;
}

function body(payload, headers) {
  if (payload === undefined) return undefined;
  if (payload instanceof FormData) return payload;
  headers["Content-Type"] = "application/json";
  return JSON.stringify(payload);
}

// A call to the public API as the pasted key, else as the signed-in session.
// opts.raw: answer the Response itself (a file download).
export async function api(method, path, payload, opts = {}) {
  const headers = {};
  const key = apiKey.get();
  if (key) headers.Authorization = "Bearer " + key;
  else if (method !== "GET" && method !== "HEAD") {
    const s = await session();
    if (s) headers["X-CSRF-Token"] = s.csrf_token;
  }
  return send(path, { method, headers, body: body(payload, headers), raw: opts.raw });
}

// A call to the operator API (/admin/v1) with the pasted admin token.
export async function admin(method, path, payload) {
  const headers = { Authorization: "Bearer " + adminToken.get() };
  return send(path, { method, headers, body: body(payload, headers) });
}

// Is anyone there to call the API as: a pasted key or a session?
export async function signedIn() {
  return Boolean(apiKey.get()) || Boolean(await session());
}

// The error beside the field it concerns (an input whose name or id is err.param), with
// its code; otherwise in the form's .form-error line (or the page's banner).
export function showError(err, scope = document) {
  clearErrors(scope);
  const where = err.param && scope.querySelector(`[name="${CSS.escape(err.param)}"], #${CSS.escape(err.param)}`);
  const text = err.status === 0 ? err.message : `${err.message} (${err.code})`;
  const line = el("p", { class: "field-error", role: "alert" }, text);
  if (where) {
    where.setAttribute("aria-invalid", "true");
    (where.closest("label") || where).after(line);
    where.focus();
  } else {
    (scope.querySelector(".form-error") || banner()).replaceChildren(line);
  }
  return line;
}

export function clearErrors(scope = document) {
  scope.querySelectorAll(".field-error").forEach((n) => n.remove());
  scope.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
}

function banner() {
  let node = $("banner");
  if (!node) {
    node = el("div", { id: "banner", class: "banner", role: "status" });
    document.querySelector("main")?.prepend(node);
  }
  return node;
}

// When the server cannot be reached: a notice with a retry button, never a blank page.
// Calls that fail while the notice shows join it: one Retry runs them all (a page that
// loads several parts at once loses the connection for all of them together).
let retries = [];
export function offline(retry) {
  const node = banner();
  retries.push(retry);
  if (node.querySelector(".offline")) return;
  const again = () => { const all = retries; retries = []; node.replaceChildren(); all.forEach((r) => r()); };
  node.replaceChildren(el("p", { class: "offline", role: "alert" },
    "The connection to PixelRelay was lost. ",
    el("button", { type: "button", class: "secondary", onclick: again }, "Retry")));
}

// Run fn; a lost connection shows a retry, any other error goes to showError.
export async function guarded(fn, scope = document) {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 0) offline(() => guarded(fn, scope));
    else showError(e, scope);
    return undefined;
  }
}

const number = new Intl.NumberFormat("en-US");
export const n = (value) => number.format(value);
export const credits = (n) => `${number.format(n)} credits ($${(Number(n) / 1000).toFixed(3)})`;
export const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "—");

// The header's right side: who is signed in and a sign-out, or the ways in.
export async function header() {
  const who = $("who");
  if (!who) return;
  const s = await session();
  if (s) {
    who.replaceChildren(el("span", { class: "muted" }, s.email), " ",
      el("button", { type: "button", class: "link", onclick: signOut }, "Sign out"));
  } else if (apiKey.get()) {
    who.replaceChildren(el("span", { class: "muted" }, "using a pasted key"), " ",
      el("button", { type: "button", class: "link", onclick: signOut }, "Forget key"));
  } else {
    who.replaceChildren(el("a", { href: "/login" }, "Sign in"), " ", el("a", { href: "/signup", class: "button" }, "Sign up"));
  }
}

export async function signOut() {
  apiKey.set("");
  adminToken.set("");
  if (await session()) {
    try { await api("POST", "/api/v1/auth/logout"); } catch (e) { /* signed out here regardless */ }
  }
  location.assign("/login");
}

// ---- Generic helpers added with the dashboard: SVG building, CSV files, tabs. ----

const SVG_NS = "http://www.w3.org/2000/svg";

// svg("rect", {x: 0, width: 4}, child) → an SVG element, built like el() (no markup parsed).
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== false && value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

// One CSV field (RFC 4180): quoted when it holds a quote, comma or line break, quotes
// doubled. A text starting with = + - @ (or a tab/CR) gets a leading ' so a spreadsheet
// shows it rather than running it as a formula; numbers are written as they are.
export function csvField(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return String(value);
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// columns: [[heading, row => value], ...] → the CSV text (CRLF lines, a header line).
export function toCsv(rows, columns) {
  const lines = [columns.map(([heading]) => csvField(heading)).join(",")];
  for (const row of rows) lines.push(columns.map(([, pick]) => csvField(pick(row))).join(","));
  return lines.join("\r\n") + "\r\n";
}

// Save text as a file: a Blob behind a temporary <a download> (nothing leaves the page).
// The UTF-8 byte order mark makes spreadsheets read non-ASCII text as UTF-8.
export function download(filename, text, type = "text/csv;charset=utf-8") {
  const url = URL.createObjectURL(new Blob(["\ufeff", text], { type }));
  const link = el("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has started by then
}

// Tabs: buttons role="tab" (aria-controls naming their panel) inside a role="tablist".
// Click or arrow keys select; onSelect(tab) runs after the panel is shown.
export function tabs(list, onSelect = () => {}) {
  const all = [...list.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of all) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    onSelect(tab);
  };
  for (const tab of all) tab.addEventListener("click", () => select(tab));
  list.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = all[(all.indexOf(document.activeElement) + step + all.length) % all.length];
    next.focus();
    select(next);
  });
  return select;
}

// ---- Shared by the dashboard and the operator console: days, secrets shown once. ----

export const DAY = 86400;
const pad = (n) => String(n).padStart(2, "0");
// A Date → "2026-12-04", the person's own (local) day.
export const dayKey = (date) => `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
// unix seconds → the day key of that moment, local time
export const dayOf = (seconds) => dayKey(new Date(seconds * 1000));

// "2026-12-04" → unix seconds of that day's local midnight
export function dayStart(value) {
  const [y, m, d] = value.split("-").map(Number);
  return Math.floor(new Date(y, m - 1, d).getTime() / 1000);
}

// A day `days` before today (0: today) as a day key, for a date input's default.
export const daysAgo = (days) => {
  const today = new Date();
  return dayKey(new Date(today.getFullYear(), today.getMonth(), today.getDate() - days));
};

// A check made here rather than by the API, shown like the API's errors (without a code).
export function fieldProblem(scope, name, message) {
  showError({ status: 0, message, param: name }, scope);
  return null;
}

// Copy text to the clipboard, saying so in `said`; if the browser refuses, select `node`
// so Ctrl+C copies it.
export async function copy(text, node, said) {
  try {
    await navigator.clipboard.writeText(text);
    said.textContent = "Copied.";
  } catch (e) {
    getSelection().selectAllChildren(node);
    said.textContent = "The browser did not let the page copy: it is selected, copy it by hand.";
  }
}

// A secret the API shows once (a key, an invite code, a reset link): a notice with the
// value, a copy button and a hide button; focus goes to the copy button.
// → the notice element, already put into `where`.
export function shownOnce(where, { label, lead, value, valueId, copyLabel = "Copy", note }) {
  const said = el("span", { class: "muted", role: "status" });
  const code = el("code", { class: "secret", id: valueId }, value);
  const box = el("div", { class: "notice good stack", role: "region", "aria-label": label },
    el("p", {}, el("strong", {}, lead), " ", note),
    code,
    el("div", { class: "row" },
      el("button", { type: "button", onclick: () => copy(value, code, said) }, copyLabel),
      el("button", { type: "button", class: "secondary", onclick: () => box.remove() }, "I have stored it: hide"),
      said));
  where.replaceChildren(box);
  box.querySelector("button").focus();
  return box;
}

// columns: [[heading, row => cell, "num"?], ...]; a cell is text or a node. foot: one
// cell per column (a total line); empty: what an empty table says.
export function table(node, columns, rows, foot = null, empty = "Nothing in this period.") {
  const head = el("tr", {}, columns.map(([h, , kind]) => el("th", { scope: "col", class: kind }, h)));
  const body = rows.map((row) => el("tr", {}, columns.map(([, pick, kind]) => el("td", { class: kind }, pick(row)))));
  if (!rows.length) body.push(el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, empty)));
  node.replaceChildren(el("thead", {}, head), el("tbody", {}, body));
  if (foot) node.append(el("tfoot", {}, el("tr", {}, foot.map((cell, i) => el("td", { class: columns[i][2] }, cell)))));
}
