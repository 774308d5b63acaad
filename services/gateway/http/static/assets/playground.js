// The playground at /: every field of both channels with each one's rules applied as you
// edit, a live estimate, references and a mask, submit and follow the task, the gallery,
// the history, and the request as code to copy.

import {
  $, el, api, apiKey, ApiError, session, signedIn, offline, credits, when, header,
} from "/assets/console.js";
import { MaskPainter } from "/assets/playground-mask.js";
import { curl, python, reapiJson } from "/assets/playground-snippets.js";

const BASIC = "gpt-image-2";
const STABLE = "gpt-image-2-official";
const MAX_REFERENCES = 16;
const WIDE_RATIOS_FOR_4K = ["16:9", "9:16", "2:1", "1:2", "21:9", "9:21"];
const ESTIMATE_DELAY_MS = 300;
const HISTORY_PAGE = 10;

const state = {
  refs: [], // [{url, width, height}] in the order sent as image_urls
  mask: null, // the MaskPainter
  maskUpload: null, // {url, strokes}: the mask last uploaded, reused while unchanged
  pixels: null, // the estimate's resolved {width, height}, for the openai SDK's size
  historyCursor: "",
  following: 0, // which submit is being followed (a newer one stops the older poll)
};

const stable = () => $("model").value === STABLE;
const customSize = () => $("size").value === "custom";

// ---- the rules of each channel, applied to the form as it is edited --------------------

function applyRules() {
  const isStable = stable();
  const notes = [];
  for (const node of document.querySelectorAll("#form [data-stable]")) node.hidden = !isStable;
  $("size").querySelector('option[value="custom"]').disabled = !isStable;
  if (!isStable && customSize()) $("size").value = "1:1";

  showField("custom-size", isStable && customSize());
  showField("resolution", !customSize());
  notes.push(...limitResolution(isStable), ...limitFormat(isStable));
  showField("compression", isStable && $("output_format").value !== "png");
  $("mask-section").hidden = !isStable || state.refs.length === 0;

  if (!isStable) {
    notes.unshift(`${BASIC} makes one PNG per task from a ratio; more images, quality, ` +
      `background, format, compression, moderation, a mask and WIDTHxHEIGHT sizes need ${STABLE}.`);
  }
  $("rules").textContent = notes.join(" ");
}

function showField(name, visible) {
  for (const node of document.querySelectorAll(`[data-show="${name}"]`)) {
    // a stable-only field stays hidden on basic whatever else holds
    node.hidden = !visible || (node.hasAttribute("data-stable") && !stable());
  }
}

// 4k only with the wide ratios, and on stable at quality high or auto only.
function limitResolution(isStable) {
  const notes = [];
  const size = $("size").value;
  const fourK = optionOf("resolution", "4k");
  const wide = size === "auto" || WIDE_RATIOS_FOR_4K.includes(size);
  fourK.disabled = !wide;
  if (!wide && $("resolution").value === "4k") {
    $("resolution").value = "2k";
    notes.push(`4k needs one of the ratios ${WIDE_RATIOS_FOR_4K.join(", ")}: resolution set to 2k.`);
  }
  const at4k = isStable && !customSize() && $("resolution").value === "4k";
  for (const q of ["low", "medium"]) optionOf("quality", q).disabled = at4k;
  if (at4k && ["low", "medium"].includes($("quality").value)) {
    $("quality").value = "high";
    notes.push(`4k on ${STABLE} is offered at quality high or auto only: quality set to high.`);
  }
  return notes;
}

// A transparent background needs png or webp.
function limitFormat(isStable) {
  const transparent = isStable && $("background").value === "transparent";
  optionOf("output_format", "jpeg").disabled = transparent;
  optionOf("background", "transparent").disabled = isStable && $("output_format").value === "jpeg";
  if (transparent && $("output_format").value === "jpeg") {
    $("output_format").value = "png";
    return ["A transparent background needs png or webp: format set to png."];
  }
  return [];
}

const optionOf = (select, value) => [...$(select).options].find((o) => o.value === value);

// ---- the request on screen ---------------------------------------------------------------

// reAPI's body for what the form says; the mask's URL only once it is uploaded.
function requestBody(maskUrl) {
  const body = { model: $("model").value };
  const prompt = $("prompt").value;
  if (prompt.trim()) body.prompt = prompt;
  body.size = customSize() ? $("custom_size").value.trim() : $("size").value;
  if (!customSize()) body.resolution = $("resolution").value;
  if (stable()) {
    body.n = Number($("n").value);
    for (const f of ["quality", "background", "moderation", "output_format"]) body[f] = $(f).value;
    const compression = $("output_compression").value;
    if (body.output_format !== "png" && compression !== "") body.output_compression = Number(compression);
  }
  if (state.refs.length) body.image_urls = state.refs.map((r) => r.url);
  if (maskUrl && stable() && state.refs.length) body.mask_url = maskUrl; // stable-only
  return body;
}

// The mask's URL for the request: uploaded now if it changed since the last upload.
async function uploadedMask() {
  const painter = state.mask;
  if (!stable() || !state.refs.length || !painter.painted) return null;
  if (state.maskUpload?.strokes === painter.strokes.length && state.maskUpload.first === state.refs[0].url) {
    return state.maskUpload.url;
  }
  const form = new FormData();
  form.append("file", await painter.toPng(), "mask.png");
  const upload = await api("POST", "/api/v1/uploads", form);
  state.maskUpload = { url: upload.url, strokes: painter.strokes.length, first: state.refs[0].url };
  $("mask-url").textContent = `mask uploaded: ${upload.width}×${upload.height} PNG`;
  return upload.url;
}

function maskChanged() {
  state.maskUpload = null;
  $("mask-url").textContent = state.mask.painted ? "" : "Nothing painted: the whole image may change.";
  refreshSnippet();
}

// ---- errors, beside the field they concern ---------------------------------------------

// The input an error's param names (the API's names, onto this page's fields).
function fieldFor(err) {
  if (err.status === 401) return $("key");
  const param = err.param || "";
  if (param.startsWith("image_urls") || param === "image") return $("ref-files");
  if (param === "mask_url" || param === "mask") return $("brush");
  if (param === "size" && customSize()) return $("custom_size");
  return document.querySelector(`#form [name="${CSS.escape(param)}"]`);
}

function clearFieldErrors(kind) {
  for (const node of document.querySelectorAll(`.field-error[data-kind="${kind}"]`)) {
    const before = node.previousElementSibling;
    const field = before?.matches("[aria-invalid]") ? before : before?.querySelector("[aria-invalid]");
    field?.removeAttribute("aria-invalid");
    node.remove();
  }
}

// Shown in words with its code beside its field (or under the submit button); `kind`
// keeps the estimate's errors apart from the submit's, each cleared by its own next try.
function placeError(err, kind) {
  clearFieldErrors(kind);
  const line = el("p", { class: "field-error", role: "alert", "data-kind": kind },
    `${err.message} (${err.code})`);
  const field = fieldFor(err);
  const visible = field && !field.closest("[hidden]");
  if (visible) {
    field.setAttribute("aria-invalid", "true");
    (field.closest("label") || field).after(line);
  } else {
    $("form-error").append(line);
  }
  return line;
}

// An ApiError goes beside its field; a lost connection shows a retry instead.
function failed(err, kind, retry) {
  if (!(err instanceof ApiError)) throw err;
  if (err.status === 0) offline(retry);
  else placeError(err, kind);
}

// ---- the live estimate -----------------------------------------------------------------

let estimateTimer;
function estimateSoon() {
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(estimate, ESTIMATE_DELAY_MS);
}

let estimateAsked = 0;
async function estimate() {
  const asked = ++estimateAsked; // only the latest answer is shown
  if (!(await signedIn())) {
    $("estimate").textContent = "";
    return;
  }
  try {
    const quote = await api("POST", "/api/v1/images/estimate", requestBody(state.maskUpload?.url));
    if (asked !== estimateAsked) return;
    clearFieldErrors("estimate");
    state.pixels = quote.params;
    $("estimate").textContent = credits(quote.credits);
    refreshSnippet();
  } catch (err) {
    if (asked !== estimateAsked) return;
    $("estimate").textContent = "";
    failed(err, "estimate", estimate);
  }
}

async function showBalance() {
  if (!(await signedIn())) return;
  try {
    const account = await api("GET", "/api/v1/account");
    $("balance").textContent = `balance ${credits(account.balance)}, ${credits(account.held)} held`;
  } catch (err) {
    $("balance").textContent = "";
  }
}

// ---- references ----------------------------------------------------------------------

async function addFiles(files) {
  clearFieldErrors("refs");
  for (const file of files) {
    if (state.refs.length >= MAX_REFERENCES) {
      placeError(new ApiError(400, "20002", "invalid_request",
        `at most ${MAX_REFERENCES} references`, "image_urls"), "refs");
      break;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const upload = await api("POST", "/api/v1/uploads", form);
      addReference(upload.url, upload.width, upload.height);
    } catch (err) {
      failed(err, "refs", () => addFiles(files));
      break;
    }
  }
  $("ref-files").value = "";
}

// A reference by URL: its pixel size (for the mask) read once the browser loads it.
function addUrl(url) {
  clearFieldErrors("refs");
  if (!/^https?:\/\//i.test(url)) {
    placeError(new ApiError(400, "20002", "invalid_request", "an image URL starts with http:// or https://", "image_urls"), "refs");
    return;
  }
  if (state.refs.length >= MAX_REFERENCES) return;
  const probe = new Image();
  probe.addEventListener("load", () => addReference(url, probe.naturalWidth, probe.naturalHeight));
  probe.addEventListener("error", () => placeError(new ApiError(400, "20002", "invalid_request",
    "that URL did not load as an image here", "image_urls"), "refs"));
  probe.src = url;
  $("ref-url").value = "";
}

function addReference(url, width, height) {
  if (state.refs.length >= MAX_REFERENCES) return;
  state.refs.push({ url, width, height });
  referencesChanged();
}

function removeReference(index) {
  state.refs.splice(index, 1);
  referencesChanged();
}

function referencesChanged() {
  $("refs").replaceChildren(...state.refs.map((ref, i) => el("li", {},
    el("img", { src: ref.url, alt: `reference ${i + 1}` }),
    el("span", { class: "muted small" }, `${i + 1}. ${ref.width}×${ref.height}`),
    el("button", { type: "button", class: "secondary small", "aria-label": `Remove reference ${i + 1}`,
      onclick: () => removeReference(i) }, "Remove"))));
  $("ref-count").textContent = `${state.refs.length} of ${MAX_REFERENCES}`;
  const first = state.refs[0];
  if (first) state.mask.setImage(first.url, first.width, first.height);
  maskChanged();
  applyRules();
  estimateSoon();
}

function wireDropZone() {
  const zone = $("drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) addFiles([...e.dataTransfer.files]);
    else {
      const url = e.dataTransfer.getData("text/uri-list") || e.dataTransfer.getData("text/plain");
      if (url) addUrl(url.trim());
    }
  });
}

// ---- submit and follow -----------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const settled = (task) => task.status === "completed" || task.status === "failed";

async function submit(event) {
  event?.preventDefault();
  clearFieldErrors("submit");
  $("submit").disabled = true;
  try {
    const body = requestBody(await uploadedMask());
    const task = await api("POST", "/api/v1/images/generations", body);
    $("gallery").replaceChildren();
    follow(task.id, Date.now());
  } catch (err) {
    failed(err, "submit", submit);
  } finally {
    $("submit").disabled = false;
  }
}

// Poll the task until it settles, backing off from 0.5 s to 5 s; elapsed time ticks on.
async function follow(id, since) {
  const mine = ++state.following;
  let task = { id, status: "queued" };
  const tick = setInterval(() => showStatus(task, since), 1000);
  let delay = 500;
  try {
    while (!settled(task) && mine === state.following) {
      await sleep(delay);
      delay = Math.min(delay * 1.5, 5000);
      task = await api("GET", `/api/v1/tasks/${encodeURIComponent(id)}`);
      showStatus(task, since);
    }
    if (mine === state.following) showTask(task, since);
  } catch (err) {
    failed(err, "submit", () => follow(id, since));
  } finally {
    clearInterval(tick);
  }
  showBalance();
  loadHistory(true);
}

// processing with no attempt yet means still waiting for a dispatcher: queued
function phase(task) {
  if (task.status !== "processing") return task.status;
  return task.attempts?.length || task.timings?.queued_ms != null ? "processing" : "queued";
}

function showStatus(task, since) {
  const elapsed = since ? ` · ${((Date.now() - since) / 1000).toFixed(0)} s` : "";
  const status = phase(task);
  const parts = [el("b", { class: `status-${status}` }, status), " ", el("code", { id: "task-id" }, task.id), elapsed];
  if (task.error) parts.push(el("span", { class: "field-error" }, ` ${task.error.message} (${task.error.code})`));
  if (task.credits) parts.push(` · charged `, el("span", { id: "charged" }, credits(task.credits.charged)));
  $("status").replaceChildren(...parts);
}

function showTask(task, since) {
  const total = task.timings?.total_ms;
  showStatus(task, null);
  if (since && total != null) $("status").append(` · ${(total / 1000).toFixed(1)} s`);
  const images = task.output?.images || [];
  const each = images.length ? Math.round(task.credits.charged / images.length) : 0;
  $("gallery").replaceChildren(...images.map((image, i) => el("figure", {},
    el("img", { src: image.url, alt: `image ${i + 1} of task ${task.id}`, width: image.width, height: image.height }),
    el("figcaption", {},
      el("span", {}, `${image.width}×${image.height} · ${image.format} · ${credits(each)}`), " ",
      el("a", { href: image.url, download: `${task.id}-${i + 1}.${image.format}` }, "Download")))));
  if (task.expired_at) $("gallery").append(el("p", { class: "muted" }, `Images deleted ${when(task.expired_at)}.`));
}

// ---- history ---------------------------------------------------------------------------

async function loadHistory(reset) {
  if (!(await signedIn())) return;
  if (reset) state.historyCursor = "";
  const query = new URLSearchParams({ limit: HISTORY_PAGE, status: $("history-status").value });
  if (state.historyCursor) query.set("cursor", state.historyCursor);
  try {
    const page = await api("GET", `/api/v1/tasks?${query}`);
    // the API filters by status; the model is filtered here
    const model = $("history-model").value;
    const rows = page.data.filter((t) => !model || t.model === model).map(historyRow);
    if (reset) $("history").replaceChildren(...rows);
    else $("history").append(...rows);
    if (reset && !rows.length) $("history").append(el("li", { class: "muted" }, "No tasks on this page."));
    state.historyCursor = page.next_cursor || "";
    $("history-more").hidden = !page.next_cursor;
  } catch (err) {
    if (err.status === 401) return; // the estimate already says so beside the key
    failed(err, "history", () => loadHistory(reset));
  }
}

function historyRow(task) {
  const images = task.output?.images?.length || 0;
  return el("li", {},
    el("button", { type: "button", class: "link", onclick: () => { state.following++; showTask(task); $("result-heading").scrollIntoView(); } },
      `${when(task.created_at)} · ${task.model} · `,
      el("span", { class: `status-${task.status}` }, task.status),
      ` · ${images} image${images === 1 ? "" : "s"} · ${credits(task.credits.charged)} · `,
      el("code", {}, task.id)));
}

// ---- copy as code ----------------------------------------------------------------------

let snippetKind = null;
function snippetText(kind) {
  const body = requestBody(state.maskUpload?.url || (state.mask?.painted && stable() && state.refs.length
    ? "MASK_URL (upload mask.png first: POST /api/v1/uploads)" : null));
  if (kind === "curl") return curl(location.origin, body);
  if (kind === "python") return python(location.origin, body, state.pixels);
  return reapiJson(body);
}

function refreshSnippet() {
  if (snippetKind) $("snippet").textContent = snippetText(snippetKind);
}

async function copySnippet(kind) {
  snippetKind = kind;
  $("snippet").hidden = false;
  refreshSnippet();
  try {
    await navigator.clipboard.writeText($("snippet").textContent);
    $("copied").textContent = "Copied.";
  } catch (err) {
    $("copied").textContent = "Shown below: select it to copy.";
  }
}

// ---- what the server serves ------------------------------------------------------------

// The models the server lists (GET /v1/models; reAPI has no list of its own): any other
// is disabled. Asked with a pasted key only: /v1 is the SDK's, authenticated by key.
async function markServedModels() {
  if (!apiKey.get()) return;
  try {
    const served = new Set((await api("GET", "/v1/models")).data.map((m) => m.id));
    for (const option of $("model").options) option.disabled = !served.has(option.value);
  } catch (err) {
    // the page's own list stays; the estimate shows what is wrong with the key
  }
}

// ---- the key ---------------------------------------------------------------------------

function keyChanged() {
  clearFieldErrors("estimate");
  clearFieldErrors("submit");
  header();
  markServedModels();
  showBalance();
  estimateSoon();
  loadHistory(true);
}

// Every edit (a select fires "input" too): the rules, then the estimate and the snippet.
let keyTimer;
function formEdited(event) {
  const field = event.target;
  if (field.id === "key") {
    apiKey.set(field.value.trim()); // at once: an upload may follow before the refresh
    clearTimeout(keyTimer);
    keyTimer = setTimeout(keyChanged, ESTIMATE_DELAY_MS);
    return;
  }
  if (field.type === "file" || field.id === "ref-url" || field.id === "brush") return;
  applyRules();
  estimateSoon();
  refreshSnippet();
}

async function start() {
  $("key").value = apiKey.get();
  state.mask = new MaskPainter($("mask-stage"), $("brush"), maskChanged);
  $("form").addEventListener("input", formEdited);
  $("form").addEventListener("submit", submit);
  $("ref-files").addEventListener("change", () => addFiles([...$("ref-files").files]));
  $("ref-add").addEventListener("click", () => addUrl($("ref-url").value.trim()));
  $("ref-url").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addUrl($("ref-url").value.trim()); } });
  $("mask-undo").addEventListener("click", () => state.mask.undo());
  $("mask-clear").addEventListener("click", () => state.mask.clear());
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", () => copySnippet(button.dataset.copy));
  }
  $("history-status").addEventListener("change", () => loadHistory(true));
  $("history-model").addEventListener("change", () => loadHistory(true));
  $("history-refresh").addEventListener("click", () => loadHistory(true));
  $("history-more").addEventListener("click", () => loadHistory(false));
  wireDropZone();
  applyRules();
  header();
  // a signed-in session needs no pasted key
  if (await session()) $("key-row").hidden = true;
  // without a key or session every call could only fail (a 401, counted by the
  // failed-auth throttle)
  if (await signedIn()) {
    markServedModels();
    showBalance();
    estimate();
    loadHistory(true);
  }
}

start();
