// The operator console: accounts (search, detail, top-ups and adjustments, keys, ledger),
// the ledger check, channel health and task lookup, with the admin token pasted into this
// tab (sessionStorage only, cleared on sign-out).
import { $, admin, adminToken, clearErrors, credits, el, guarded, when } from "./console.js";

const enc = encodeURIComponent;
let accountsCursor = null;
let accountsSearch = "";
let current = null; // the account shown
let entriesCursor = null;

function who() {
  $("who").replaceChildren(adminToken.get()
    ? el("button", { type: "button", class: "link", onclick: signOut }, "Sign out")
    : el("span", { class: "muted" }, "operator"));
}

function show(signedIn) {
  $("signin").hidden = signedIn;
  $("console").hidden = !signedIn;
  who();
}

function signOut() {
  adminToken.set("");
  current = null;
  $("account").hidden = true;
  show(false);
  $("token").focus();
}

// -- tabs: arrows move between them, as in any tab list --------------------------------
const tabs = () => [...document.querySelectorAll('[role="tab"]')];
function select(tab) {
  for (const t of tabs()) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  tab.focus();
  if (tab.id === "tab-channels") loadChannels();
}
for (const tab of tabs()) {
  tab.addEventListener("click", () => select(tab));
  tab.addEventListener("keydown", (e) => {
    const all = tabs();
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (step) select(all[(all.indexOf(tab) + step + all.length) % all.length]);
  });
}

// -- accounts ------------------------------------------------------------------------
async function loadAccounts(more = false, form = $("account-search")) {
  const params = new URLSearchParams({ search: accountsSearch, limit: "20" });
  if (more && accountsCursor) params.set("cursor", accountsCursor);
  const page = await guarded(() => admin("GET", "/admin/v1/accounts?" + params), form);
  if (!page) return false;
  clearErrors(form);
  const rows = page.data.map((a) => el("tr", {},
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => openAccount(a.id) }, a.name || "(no name)")),
    el("td", {}, a.id),
    el("td", { class: "num" }, a.balance), el("td", { class: "num" }, a.held),
    el("td", {}, when(a.created_at))));
  if (more) $("account-rows").append(...rows); else $("account-rows").replaceChildren(...rows);
  accountsCursor = page.next_cursor;
  $("accounts-more").hidden = !accountsCursor;
  return true;
}

function showAccount(a) {
  current = a;
  $("account-title").textContent = `${a.name || a.id} · ${a.id}${a.deleted_at ? " (deleted)" : ""}`;
  $("account-balance").textContent = credits(a.balance);
  $("account-held").textContent = credits(a.held);
}

async function openAccount(id) {
  const a = await guarded(() => admin("GET", `/admin/v1/accounts/${enc(id)}`));
  if (!a) return;
  showAccount(a);
  $("moved").hidden = true;
  $("account").hidden = false;
  await Promise.all([loadKeys(), loadEntries(false)]);
  $("account-title").focus?.();
}

async function loadKeys() {
  const keys = await guarded(() => admin("GET", `/admin/v1/accounts/${enc(current.id)}/keys`), $("account"));
  if (!keys) return;
  $("key-rows").replaceChildren(...keys.data.map((k) => el("tr", {},
    el("td", {}, k.name || "—"), el("td", {}, `${k.prefix}…${k.last4}`), el("td", {}, when(k.created_at)),
    el("td", {}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : "active"),
    el("td", {}, k.revoked_at ? "" : el("button", { type: "button", class: "danger", "aria-label": `Revoke key ${k.prefix}…${k.last4}`,
      onclick: async () => {
        if (await guarded(() => admin("DELETE", `/admin/v1/keys/${enc(k.id)}`), $("account"))) loadKeys();
      } }, "Revoke")))));
}

async function loadEntries(more) {
  const params = new URLSearchParams({ limit: "20" });
  if (more && entriesCursor) params.set("cursor", entriesCursor);
  const page = await guarded(() => admin("GET", `/admin/v1/accounts/${enc(current.id)}/ledger?` + params), $("account"));
  if (!page) return;
  const rows = page.data.map((e) => el("tr", {},
    el("td", {}, when(e.created_at)), el("td", {}, `${e.kind} (${e.book})`),
    el("td", { class: "num" }, e.amount), el("td", {}, e.task_id || "—"), el("td", {}, e.memo || "")));
  if (more) $("entry-rows").append(...rows); else $("entry-rows").replaceChildren(...rows);
  entriesCursor = page.next_cursor;
  $("entries-more").hidden = !entriesCursor;
}

$("account-search").addEventListener("submit", (e) => {
  e.preventDefault();
  accountsSearch = new FormData(e.target).get("search").trim();
  loadAccounts(false);
});
$("accounts-more").addEventListener("click", () => loadAccounts(true));
$("entries-more").addEventListener("click", () => loadEntries(true));

$("move").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const data = new FormData(form);
  const account = await guarded(() => admin("POST", `/admin/v1/accounts/${enc(current.id)}/${data.get("kind")}`,
    { amount: Number(data.get("amount")), reason: data.get("reason").trim() }), form);
  if (!account) return;
  clearErrors(form);
  showAccount(account);
  $("moved").textContent = `Done: the balance is now ${credits(account.balance)}.`;
  $("moved").hidden = false;
  form.reset();
  loadEntries(false);
});

// -- ledger check --------------------------------------------------------------------
$("ledger-check").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("ledger-result").replaceChildren(el("p", { class: "muted" }, "Checking…"));
  const result = await guarded(() => admin("GET", "/admin/v1/ledger/check"), e.target);
  if (!result) return $("ledger-result").replaceChildren();
  $("ledger-result").replaceChildren(
    el("p", { class: result.ok ? "notice good" : "notice" },
      result.ok ? `Balanced: ${result.entries} entries agree with every balance.`
        : `${result.problems.length} problems in ${result.entries} entries:`),
    result.ok ? "" : el("ul", {}, result.problems.map((p) => el("li", {}, p))));
});

// -- channels ------------------------------------------------------------------------
async function loadChannels() {
  const form = $("channels-refresh");
  const health = await guarded(() => admin("GET", "/admin/v1/channels"), form);
  if (!health) return;
  clearErrors(form);
  $("channels-note").textContent = health.replicas
    ? `${health.replicas} dispatcher(s) reporting; calls of the last ${health.window_seconds / 60} minutes.`
    : "No dispatcher has reported yet.";
  const ms = (v) => (v === null ? "—" : `${v} ms`);
  $("channel-rows").replaceChildren(...health.data.map((c) => el("tr", {},
    el("td", {}, c.name),
    el("td", { class: `breaker-${c.breaker}` }, c.replicas > 1 && c.replicas_not_closed
      ? `${c.breaker} (${c.replicas_not_closed} of ${c.replicas})` : c.breaker),
    el("td", { class: "num" }, c.requests),
    el("td", { class: "num", title: Object.entries(c.errors_by_class).map(([k, v]) => `${k}: ${v}`).join(", ") }, c.errors),
    el("td", { class: "num" }, `${(c.error_rate * 100).toFixed(1)} %`),
    el("td", { class: "num" }, ms(c.p50_ms)), el("td", { class: "num" }, ms(c.p95_ms)))));
}
$("channels-refresh").addEventListener("submit", (e) => { e.preventDefault(); loadChannels(); });

// -- task lookup ---------------------------------------------------------------------
$("task-lookup").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const id = new FormData(form).get("task_id").trim();
  const task = await guarded(() => admin("GET", `/admin/v1/tasks/${enc(id)}`), form);
  if (!task) return;
  clearErrors(form);
  const row = (name, value) => [el("dt", {}, name), el("dd", {}, value ?? "—")];
  $("task").replaceChildren(el("dl", { class: "grid" },
    row("Task", task.id), row("Status", task.status), row("Account", task.account_id), row("Key", task.key_id),
    row("Model", task.model), row("Created", when(task.created_at)),
    row("Credits", `${task.credits.reserved} reserved, ${task.credits.charged} charged`),
    row("Error", task.error ? `${task.error.type} (${task.error.code})` : null),
    row("Attempts", task.attempts.map((a) => `${a.channel}: ${a.outcome} in ${a.latency_ms} ms`).join("; ") || null),
    row("Images", task.output ? task.output.images.length : null)));
  $("task").hidden = false;
});

// -- sign-in: the token is checked by listing accounts (billing judges it) -----------------
$("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  adminToken.set($("token").value.trim());
  if (await loadAccounts(false, e.target)) {
    $("token").value = "";
    clearErrors(e.target);
    show(true);
  } else {
    adminToken.set("");
  }
});

show(Boolean(adminToken.get()));
if (adminToken.get()) loadAccounts(false);
