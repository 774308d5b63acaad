// The operator console: accounts (search, detail, top-ups and adjustments, a password-reset
// link, keys with creating and revoking, the ledger, the usage per task), the ledger check,
// channel health, task lookup and invite codes, with the admin token pasted into this tab
// (sessionStorage only, cleared on sign-out).
import {
  $, DAY, admin, adminToken, clearErrors, credits, dayOf, dayStart, daysAgo, el, fieldProblem,
  guarded, n, shownOnce, table, tabs, when,
} from "./console.js";
import { keyBody, keyColumns, showSecret } from "./keys.js";
import { TASK_COLUMNS } from "./usage.js";

const enc = encodeURIComponent;
let accountsCursor = null;
let accountsSearch = "";
let current = null; // the account shown
let entriesCursor = null;
// the usage shown: whose, the period asked, the next page's cursor, the lines so far
const usage = { account: null, period: null, cursor: "", rows: [], run: 0 };

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
  // what was shown once goes with the operator
  for (const node of ["reset-link", "new-secret", "invite-code"]) $(node).replaceChildren();
  show(false);
  $("token").focus();
}

// -- tabs: the sections, and an account's keys, ledger and usage ----------------------
const selectSection = tabs(document.querySelector('#console > [role="tablist"]'), (tab) => {
  if (tab.id === "tab-channels") loadChannels();
  if (tab.id === "tab-invites") loadInvites();
});
const selectAccountTab = tabs(document.querySelector('#account [role="tablist"]'), (tab) => {
  if (tab.id === "tab-account-usage" && usage.account !== current?.id) loadUsage(false);
});

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
  for (const node of ["reset-link", "new-secret"]) $(node).replaceChildren();
  clearErrors($("account"));
  $("key-form").reset();
  usage.account = null; // read again when its tab shows
  usage.run++; // a page still coming for the account shown before is dropped
  $("usage-rows").replaceChildren();
  $("usage-note").textContent = "";
  $("usage-more").hidden = true;
  $("usage-totals").hidden = true;
  $("account").hidden = false;
  selectAccountTab($("tab-account-keys"));
  await Promise.all([loadKeys(), loadEntries(false)]);
  $("account-title").focus?.();
}

// -- an account's keys: the list with revoking, and creating one (the secret shown once) --
async function loadKeys() {
  const keys = await guarded(() => admin("GET", `/admin/v1/accounts/${enc(current.id)}/keys`), $("account-keys"));
  if (!keys) return;
  table($("key-list"), keyColumns({ onRevoke: revokeKey }), keys.data, null, "No keys.");
}

async function revokeKey(k) {
  if (await guarded(() => admin("DELETE", `/admin/v1/keys/${enc(k.id)}`), $("account-keys"))) loadKeys();
}

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  clearErrors(form);
  const created = await guarded(() => admin("POST", `/admin/v1/accounts/${enc(current.id)}/keys`, keyBody(form)), form);
  button.disabled = false;
  if (!created) return;
  form.reset();
  showSecret($("new-secret"), created);
  loadKeys();
});

// -- a password-reset link: one use, an hour, for the operator to hand over ------------
$("reset").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  $("reset-link").replaceChildren();
  clearErrors(form);
  const link = await guarded(() => admin("POST", `/admin/v1/accounts/${enc(current.id)}/password-reset`), form);
  if (!link) return;
  shownOnce($("reset-link"), {
    label: "Password reset link",
    lead: `A reset link for ${link.email}, valid until ${when(link.expires_at)}.`,
    note: "It works once; hand it to that person only. It is not shown again: ask for another if it is lost.",
    value: link.url,
    valueId: "reset-url",
    copyLabel: "Copy link",
  });
});

async function loadEntries(more) {
  const params = new URLSearchParams({ limit: "20" });
  if (more && entriesCursor) params.set("cursor", entriesCursor);
  const page = await guarded(() => admin("GET", `/admin/v1/accounts/${enc(current.id)}/ledger?` + params), $("account-ledger"));
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

// -- an account's usage, one line per task, for a period; "More" reads the next page ----
const USAGE_PAGE = 50;

// The period chosen as {since, until} (unix seconds, 0: open), or null after saying why.
function usagePeriod(form) {
  clearErrors(form);
  const day = (name) => form.elements.namedItem(name).value;
  const period = { since: day("since") ? dayStart(day("since")) : 0, until: day("until") ? dayStart(day("until")) + DAY : 0 };
  if (period.since && period.until && period.since >= period.until) {
    return fieldProblem(form, "until", "The period must end on or after its start.");
  }
  return period;
}

async function loadUsage(more) {
  const form = $("usage-period");
  if (!more) {
    const period = usagePeriod(form);
    if (!period) return;
    Object.assign(usage, { account: current.id, period, cursor: "", rows: [] });
  }
  const run = ++usage.run;
  const params = new URLSearchParams({ limit: String(USAGE_PAGE) });
  for (const name of ["since", "until"]) if (usage.period[name]) params.set(name, String(usage.period[name]));
  if (more) params.set("cursor", usage.cursor);
  $("usage-note").textContent = "Reading usage…";
  $("usage-more").disabled = true;
  const page = await guarded(() => admin("GET", `/admin/v1/accounts/${enc(usage.account)}/usage/tasks?${params}`), form);
  $("usage-more").disabled = false;
  if (run !== usage.run) return; // another account or period was asked meanwhile
  if (!page) { $("usage-note").textContent = ""; return; }
  clearErrors(form);
  usage.rows.push(...page.data);
  usage.cursor = page.next_cursor || "";
  showUsage();
}

function showUsage() {
  const { rows, period } = usage;
  if (!period) return;
  const total = (field) => rows.reduce((sum, r) => sum + r[field], 0);
  const foot = [`Total of ${n(rows.length)} shown`, "", "", "", "", n(total("charged")), n(total("refunded")), "", "", ""];
  table($("usage-rows"), TASK_COLUMNS, rows, rows.length ? foot : null);
  // the totals again above the table: on a phone its last columns are a scroll away
  $("usage-charged").textContent = credits(total("charged"));
  $("usage-refunded").textContent = credits(total("refunded"));
  $("usage-totals").hidden = !rows.length;
  const span = `${period.since ? dayOf(period.since) : "the start"} to ${period.until ? dayOf(period.until - DAY) : "now"}`;
  $("usage-note").textContent = `${n(rows.length)} task${rows.length === 1 ? "" : "s"} from ${span}, newest first` +
    (usage.cursor ? "; older ones of the period are a “More” away." : ".");
  $("usage-more").hidden = !usage.cursor;
}

$("usage-period").addEventListener("submit", (e) => { e.preventDefault(); loadUsage(false); });
$("usage-more").addEventListener("click", () => loadUsage(true));
$("usage-period").elements.namedItem("since").value = daysAgo(29);
$("usage-period").elements.namedItem("until").value = daysAgo(0);

// -- invite codes: issue (the code shown once), list, revoke ---------------------------
function inviteState(i) {
  if (i.used_at) return `used ${when(i.used_at)} by ${i.used_by || "a deleted account"}`;
  if (i.revoked_at) return `revoked ${when(i.revoked_at)}`;
  if (i.expires_at && i.expires_at * 1000 <= Date.now()) return "expired";
  return "unused";
}

const INVITE_COLUMNS = [
  ["Note", (i) => i.note || "—", "wrap"],
  ["Created", (i) => when(i.created_at)],
  ["Expires", (i) => (i.expires_at ? when(i.expires_at) : "never")],
  ["State", (i) => (i.used_at && i.used_by
    ? [`used ${when(i.used_at)} by `, el("button", {
      type: "button", class: "link", onclick: () => showInvitee(i.used_by),
    }, i.used_by)]
    : inviteState(i))],
  ["", (i) => (inviteState(i) !== "unused" ? "" : el("button", {
    type: "button", class: "danger small", "aria-label": `Revoke the invite ${i.note ? `“${i.note}”` : i.id}`,
    onclick: () => revokeInvite(i),
  }, "Revoke"))],
  ["Id", (i) => el("code", {}, i.id)],
];

// The account an invite made: the Accounts section, that account open.
async function showInvitee(accountId) {
  const tab = $("tab-accounts");
  selectSection(tab);
  tab.focus();
  await openAccount(accountId);
}

async function loadInvites() {
  const box = $("invite-list-box");
  const list = await guarded(() => admin("GET", "/admin/v1/invites"), box);
  if (!list) return;
  clearErrors(box);
  table($("invite-list"), INVITE_COLUMNS, list.data, null, "No invite codes yet.");
}

async function revokeInvite(invite) {
  if (await guarded(() => admin("DELETE", `/admin/v1/invites/${enc(invite.id)}`), $("invite-list-box"))) loadInvites();
}

$("invite-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const note = form.elements.namedItem("note").value.trim();
  const through = form.elements.namedItem("expires_at").value;
  const body = { note };
  if (through) body.expires_at = dayStart(through) + DAY; // through that day
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  clearErrors(form);
  const created = await guarded(() => admin("POST", "/admin/v1/invites", body), form);
  button.disabled = false;
  if (!created) return;
  form.reset();
  shownOnce($("invite-code"), {
    label: "New invite code",
    lead: `Invite code${note ? ` for “${note}”` : ""} issued.`,
    note: "Give it to the person signing up; it works once. It won't be shown again: the list keeps only its note.",
    value: created.code,
    valueId: "new-invite-code",
    copyLabel: "Copy code",
  });
  loadInvites();
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
