// The customer's dashboard: the balance, the usage of a period (one line per task, totals
// per day and per model, a chart; the raw ledger a tab away), CSV downloads of both, and
// the API keys (create, with the secret shown once; revoke).
import {
  $, ApiError, DAY, api, apiKey, clearErrors, credits, dayKey, dayOf, dayStart, daysAgo, download, el,
  fieldProblem, guarded, header, n, offline, showError, signedIn, svg, table, tabs, toCsv, when,
} from "./console.js";
import { keyBody, keyColumns, keyLabel, keyName, keyState, showSecret } from "./keys.js";
import { TASK_COLUMNS } from "./usage.js";

const PERIOD_DAYS = 30;
// Usage is read a page at a time, the server cutting the period (since/until); a period
// busier than this many pages is shown in part, with a note, rather than keeping the page
// busy for minutes.
const MAX_PAGES = 20;
const TASK_PAGE = 100; // the API's largest pages
const LEDGER_PAGE = 200;

const state = { tasks: [], ledger: null, period: null, usageRun: 0, ledgerRun: 0, keys: [] };

// ---------- dates: the person's own days (local time) ----------

const isoUtc = (seconds) => new Date(seconds * 1000).toISOString();

// Every day from since (inclusive) to until (exclusive), as day keys.
function daysOf(period) {
  const days = [];
  const date = new Date(period.since * 1000);
  while (date.getTime() / 1000 < period.until) {
    days.push(dayKey(date));
    date.setDate(date.getDate() + 1); // calendar days: right across daylight-saving changes
  }
  return days;
}

function defaultPeriod() {
  $("since").value = daysAgo(PERIOD_DAYS - 1);
  $("until").value = daysAgo(0);
}

// The chosen period as unix seconds [since, until), or null after showing what is wrong.
function chosenPeriod(form) {
  const scope = form.closest("section");
  clearErrors(scope);
  for (const name of ["since", "until"]) {
    if (!form.elements.namedItem(name).value) return fieldProblem(scope, name, "Choose a day.");
  }
  const since = dayStart($("since").value);
  const until = dayStart($("until").value) + DAY;
  if (since >= until) return fieldProblem(scope, "until", "The period must end on or after its start.");
  return { since, until };
}

// ---------- paging ----------

// Pages of `path` (its query in `params`) until there are no more or MAX_PAGES were read.
// → {rows, capped}
async function readPages(path, params) {
  const rows = [];
  let cursor = "";
  for (let pages = 0; pages < MAX_PAGES; pages++) {
    const query = new URLSearchParams(params);
    if (cursor) query.set("cursor", cursor);
    const page = await api("GET", `${path}?${query}`);
    rows.push(...page.data);
    cursor = page.next_cursor;
    if (!cursor) return { rows, capped: false };
  }
  return { rows, capped: true };
}

// The tasks of the period, one line each, newest first.
function readTaskUsage(period) {
  return readPages("/api/v1/usage/tasks", { since: period.since, until: period.until, limit: TASK_PAGE });
}

function readLedger(period) {
  return readPages("/api/v1/usage", { since: period.since, until: period.until, limit: LEDGER_PAGE });
}

// ---------- tables ----------


const LEDGER_COLUMNS = [
  ["Time", (e) => when(e.created_at)],
  ["Kind", (e) => e.kind],
  ["Book", (e) => e.book],
  ["Amount", (e) => (e.amount > 0 ? "+" : "") + n(e.amount), "num"],
  ["Task", (e) => (e.task_id ? el("code", {}, e.task_id) : "—")],
  ["Memo", (e) => e.memo || "", "wrap"],
  ["Entry", (e) => e.id, "num"],
];

// ---------- totals ----------

function sums(rows, keyOf) {
  const totals = new Map();
  for (const r of rows) {
    const t = totals.get(keyOf(r)) || { tasks: 0, charged: 0, refunded: 0 };
    t.tasks += 1;
    t.charged += r.charged;
    t.refunded += r.refunded;
    totals.set(keyOf(r), t);
  }
  return totals;
}

function showTotals(rows) {
  const all = { tasks: rows.length, charged: 0, refunded: 0 };
  for (const r of rows) { all.charged += r.charged; all.refunded += r.refunded; }
  const foot = (label) => [label, n(all.tasks), n(all.charged), n(all.refunded)];
  const figures = (first) => [
    first, ["Tasks", ([, t]) => n(t.tasks), "num"], ["Charged", ([, t]) => n(t.charged), "num"],
    ["Refunded", ([, t]) => n(t.refunded), "num"],
  ];
  const perDay = [...sums(rows, (r) => dayOf(r.created_at))].sort(([a], [b]) => b.localeCompare(a));
  const perModel = [...sums(rows, (r) => r.model)].sort(([a], [b]) => a.localeCompare(b));
  table($("per-day"), figures(["Day", ([day]) => day]), perDay, foot("Total"));
  table($("per-model"), figures(["Model", ([model]) => model]), perModel, foot("Total"));
}

// ---------- the chart: credits charged per day, plain SVG ----------

const CHART = { height: 190, left: 52, right: 8, top: 12, bottom: 26 };

function drawChart(rows, period) {
  const box = $("chart");
  const days = daysOf(period);
  const perDay = sums(rows, (r) => dayOf(r.created_at));
  const values = days.map((day) => (perDay.get(day) || { charged: 0 }).charged);
  const width = Math.max(300, box.clientWidth || 600);
  const plotW = width - CHART.left - CHART.right;
  const plotH = CHART.height - CHART.top - CHART.bottom;
  const top = Math.max(1, ...values);
  const step = plotW / days.length;
  const y = (v) => CHART.top + plotH - (v / top) * plotH;
  const total = values.reduce((a, b) => a + b, 0);
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${CHART.height}`, width, height: CHART.height, role: "img", class: "chart",
    "aria-label": `Credits charged per day, ${days[0]} to ${days[days.length - 1]}: ${n(total)} in all.`,
  },
  gridLine(0, y(0), width), gridLine(top, y(top), width),
  values.map((v, i) => bar(days[i], v, CHART.left + i * step, step, y(v))),
  axisLabels(days, step));
  box.replaceChildren(chart);
}

function gridLine(value, at, width) {
  return svg("g", { class: "grid-line" },
    svg("line", { x1: CHART.left, x2: width - CHART.right, y1: at, y2: at }),
    svg("text", { x: CHART.left - 6, y: at + 4, "text-anchor": "end" }, n(value)));
}

function bar(day, value, x, step, top) {
  if (!value) return null;
  const gap = step > 6 ? step * 0.18 : 0;
  const base = CHART.height - CHART.bottom;
  return svg("rect", { class: "bar", x: x + gap / 2, y: top, width: Math.max(1, step - gap), height: base - top },
    svg("title", {}, `${day}: ${n(value)} credits`));
}

// The first, middle and last day under the bars.
function axisLabels(days, step) {
  const picks = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])];
  const anchor = (i) => (i === 0 ? "start" : i === days.length - 1 ? "end" : "middle");
  const x = (i) => CHART.left + (i === 0 ? 0 : i === days.length - 1 ? (i + 1) * step : (i + 0.5) * step);
  return picks.map((i) => svg("text", { class: "axis", x: x(i), y: CHART.height - 8, "text-anchor": anchor(i) }, days[i]));
}

// ---------- usage and ledger ----------

// Each load reads and shows inside guarded(): a Retry after a lost connection does both.
async function loadUsage() {
  const run = ++state.usageRun;
  const period = state.period;
  $("tasks-note").textContent = "Reading usage…";
  const shown = await guarded(async () => {
    const read = await readTaskUsage(period);
    if (run === state.usageRun) showUsage(read, period); // else a newer period was asked
    return true;
  }, $("usage"));
  if (!shown && run === state.usageRun) $("tasks-note").textContent = "";
}

function showUsage(read, period) {
  state.tasks = read.rows;
  $("tasks-note").textContent = usageNote(read, ["task", "tasks"], period);
  showTotals(read.rows);
  drawChart(read.rows, period);
  table($("tasks"), TASK_COLUMNS, read.rows);
}

// what: [singular, plural]
function usageNote({ rows, capped }, what, period) {
  const span = `${dayOf(period.since)} to ${dayOf(period.until - DAY)}`;
  const count = `${n(rows.length)} ${what[rows.length === 1 ? 0 : 1]} from ${span}.`;
  if (!capped) return count;
  return `${count} Only the newest ${n(MAX_PAGES)} pages were read: older ones of the period ` +
    "are not shown. Choose a shorter period to see them.";
}

async function loadLedger() {
  const run = ++state.ledgerRun;
  const period = state.period;
  $("ledger-note").textContent = "Reading the ledger…";
  const shown = await guarded(async () => {
    const read = await readLedger(period);
    if (run === state.ledgerRun) showLedger(read, period);
    return true;
  }, $("usage"));
  if (!shown && run === state.ledgerRun) $("ledger-note").textContent = "";
}

function showLedger(read, period) {
  state.ledger = read.rows;
  $("ledger-note").textContent = usageNote(read, ["entry", "entries"], period);
  table($("ledger"), LEDGER_COLUMNS, read.rows);
}

const TASK_CSV = [
  ["time_utc", (r) => isoUtc(r.created_at)], ["task_id", (r) => r.task_id], ["model", (r) => r.model],
  ["size", (r) => r.size], ["resolution", (r) => r.resolution], ["n", (r) => r.n],
  ["quality", (r) => r.quality], ["reserved", (r) => r.reserved], ["charged", (r) => r.charged],
  ["refunded", (r) => r.refunded], ["status", (r) => r.status], ["price_id", (r) => r.price_id],
];
const LEDGER_CSV = [
  ["id", (e) => e.id], ["time_utc", (e) => isoUtc(e.created_at)], ["kind", (e) => e.kind],
  ["book", (e) => e.book], ["amount", (e) => e.amount], ["task_id", (e) => e.task_id], ["memo", (e) => e.memo],
];

const periodName = () => `${dayOf(state.period.since)}_${dayOf(state.period.until - DAY)}`;

function downloadTasks() {
  download(`pixelrelay-usage-${periodName()}.csv`, toCsv(state.tasks, TASK_CSV));
}

async function downloadLedger() {
  if (state.ledger === null) await loadLedger();
  if (state.ledger !== null) download(`pixelrelay-ledger-${periodName()}.csv`, toCsv(state.ledger, LEDGER_CSV));
}

function ledgerShown() {
  return $("tab-ledger").getAttribute("aria-selected") === "true";
}

function choosePeriod(event) {
  event.preventDefault();
  const period = chosenPeriod(event.target);
  if (!period) return;
  state.period = period;
  state.ledger = null; // read again when next shown
  loadUsage();
  if (ledgerShown()) loadLedger();
}

// ---------- balance ----------

function loadAccount() {
  return guarded(async () => {
    const account = await api("GET", "/api/v1/account").catch(keyRefused);
    if (!account) return;
    $("balance").textContent = credits(account.balance);
    $("held").textContent = credits(account.held);
  }, $("account"));
}

// A pasted key that stopped working (revoked, expired): forget it and ask for another,
// saying why, rather than an error in every part of the page.
function keyRefused(err) {
  if (!(err instanceof ApiError) || err.status !== 401 || !apiKey.get()) throw err;
  apiKey.set("");
  header();
  askForKey();
  showError(Object.assign(err, { param: "key" }), $("key-paste"));
  return null;
}

// ---------- API keys ----------

function loadKeys() {
  return guarded(async () => {
    state.keys = (await api("GET", "/api/v1/keys")).data;
    table($("key-list"), keyTable(), state.keys, null, "No keys.");
  }, $("key-list-box"));
}

const isThisPagesKey = (k) => {
  const key = apiKey.get();
  return Boolean(key) && key.startsWith(k.prefix) && key.endsWith(k.last4);
};
const keyStatus = (k) => keyState(k, isThisPagesKey(k) ? "active (this page's key)" : "active");
const parentName = (k) => {
  if (!k.parent_id) return "an operator";
  const parent = state.keys.find((p) => p.id === k.parent_id);
  return parent ? keyName(parent) : k.parent_id;
};

const keyTable = () => keyColumns({ stateOf: keyStatus, onRevoke: askRevoke, more: [["Created by", parentName]] });

async function createKey(event) {
  event.preventDefault();
  const form = event.target;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  clearErrors(form);
  const created = await guarded(() => api("POST", "/api/v1/keys", keyBody(form)), form);
  button.disabled = false;
  if (!created) return;
  form.reset();
  showSecret($("new-secret"), created);
  loadKeys();
}

let revoking = null;

// Revoking needs a confirm: a modal dialog saying what goes and offering the cascade.
function askRevoke(key) {
  revoking = key;
  const children = state.keys.filter((k) => k.parent_id === key.id && !k.revoked_at).length;
  const form = $("revoke-form");
  clearErrors(form);
  $("revoke-what").textContent = `The key “${keyName(key)}” (${keyLabel(key)}) stops working at once; ` +
    "this cannot be undone." + (children ? ` It created ${children} active key${children === 1 ? "" : "s"}.` : "");
  $("revoke-self").hidden = !isThisPagesKey(key);
  $("revoke-cascade").checked = false;
  $("revoke").showModal();
}

async function revoke(event) {
  if (event.submitter?.value !== "revoke") return; // Cancel: the dialog just closes
  event.preventDefault();
  const form = event.target;
  const key = revoking;
  const cascade = $("revoke-cascade").checked ? "?cascade=true" : "";
  const done = await guarded(() => api("DELETE", `/api/v1/keys/${encodeURIComponent(key.id)}${cascade}`), form);
  if (!done) return;
  $("revoke").close();
  if (isThisPagesKey(key)) { apiKey.set(""); start(); return; }
  loadKeys();
}

// ---------- who is calling ----------

function askForKey() {
  $("console").hidden = true;
  $("signin").hidden = false;
  $("paste-key").focus();
}

async function useKey(event) {
  event.preventDefault();
  const form = event.target;
  apiKey.set($("paste-key").value.trim());
  clearErrors(form);
  try {
    await api("GET", "/api/v1/account"); // is the key good?
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    apiKey.set("");
    if (e.status === 0) offline(() => form.requestSubmit());
    else showError(Object.assign(e, { param: "key" }), form);
    return;
  }
  form.reset();
  start();
}

let wired = false;

function wire() {
  if (wired) return;
  wired = true;
  $("key-paste").addEventListener("submit", useKey);
  $("period").addEventListener("submit", choosePeriod);
  tabs(document.querySelector('#usage [role="tablist"]'), (tab) => {
    if (tab.id === "tab-ledger" && state.ledger === null) loadLedger();
  });
  $("tasks-csv").addEventListener("click", downloadTasks);
  $("ledger-csv").addEventListener("click", downloadLedger);
  $("key-form").addEventListener("submit", createKey);
  $("revoke-form").addEventListener("submit", revoke);
  let resizing;
  addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => state.period && drawChart(state.tasks, state.period), 150);
  });
  defaultPeriod();
}

async function start() {
  wire();
  header();
  if (!(await signedIn())) { askForKey(); return; }
  $("signin").hidden = true;
  $("console").hidden = false;
  state.period = chosenPeriod($("period"));
  state.ledger = null;
  loadAccount();
  loadUsage();
  loadKeys();
}

start();
