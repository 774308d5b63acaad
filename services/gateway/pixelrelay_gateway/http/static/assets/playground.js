// The playground at /: the models this server serves (GET /api/v1/models), the form
// showing what the chosen one takes with the values it allows as you edit, its prices, a
// live estimate, references and a mask, submit and follow the task, the gallery,
// the history, and the request as code to copy.

import {
  $, el, api, apiKey, ApiError, session, signedIn, offline, credits, when, header,
} from "/assets/console.js";
import { MaskPainter } from "/assets/playground-mask.js";
import { curl, python, reapiJson } from "/assets/playground-snippets.js";
import {
  PACKAGED_URL, WIDE_RATIOS_FOR_4K, lacking, makes, priceRow, qualitiesAt, ratiosOf, takes,
} from "/assets/playground-models.js";

const ESTIMATE_DELAY_MS = 300;
const HISTORY_PAGE = 10;

const state = {
  models: [], // as GET /api/v1/models lists them (or the packaged ones, said so)
  shown: null, // the model whose values the form's selects offer now
  chosen: {}, // select id → the value last chosen there by hand
  refs: [], // [{url, width, height}] in the order sent as image_urls
  mask: null, // the MaskPainter
  maskUpload: null, // {url, strokes}: the mask last uploaded, reused while unchanged
  pixels: null, // the estimate's resolved {width, height}, for the openai SDK's size
  quote: null, // the latest estimate ({model, credits, params})
  historyCursor: "",
  following: 0, // which submit is being followed (a newer one stops the older poll)
};

// The chosen model (the first listed until the list has the chosen one).
const chosen = () => state.models.find((m) => m.id === $("model").value) || state.models[0];
const customSize = () => $("size").value === "custom";
const maxReferences = () => chosen()?.capabilities.max_references ?? 16;

// ---- the models: listed by the server, each one's capabilities applied to the form -----

// The select's options, with the value last chosen there if offered (a choice survives a
// model that does not take it), else `fallback` if offered, else the first.
// options: [value, text?][]
function offer(select, options, fallback) {
  const node = $(select);
  const wanted = state.chosen[select] ?? node.value;
  node.replaceChildren(...options.map(([value, text]) => el("option", { value }, text ?? value)));
  const values = options.map(([value]) => value);
  node.value = [wanted, fallback].find((v) => values.includes(v)) ?? values[0] ?? "";
}

// The values each field offers: the chosen model's. Run when another model is chosen or
// the list changes (not on every edit: a select keeps its options while used).
function offerValues() {
  const model = chosen();
  state.shown = model;
  const caps = model.capabilities;
  const sizes = [["auto"], ...ratiosOf(model).map((r) => [r])];
  if (caps.sizes === "any") sizes.push(["custom", "width × height…"]);
  offer("size", sizes, "1:1");
  offer("resolution", caps.resolutions.map((r) => [r]), caps.resolutions[0]);
  offer("n", Array.from({ length: caps.max_n }, (_, i) => [String(i + 1)]), "1");
  offer("quality", caps.qualities.map((q) => [q]), "auto");
  offer("background", caps.backgrounds.map((b) => [b]), "auto");
  offer("moderation", caps.moderations.map((m) => [m]), "auto");
  offer("output_format", caps.formats.map((f) => [f]), "png");
  showPrices(model);
}

function applyRules() {
  const model = chosen();
  if (!model) return;
  if (model !== state.shown) offerValues();
  const notes = [];
  for (const node of document.querySelectorAll("#form [data-field]")) {
    node.hidden = !takes(model, node.dataset.field);
  }
  showField("custom-size", takes(model, "custom_size") && customSize());
  showField("resolution", !customSize());
  notes.push(...limitResolution(model), ...limitFormat(model));
  const format = takes(model, "output_format") ? $("output_format").value : model.capabilities.formats[0];
  showField("compression", takes(model, "output_compression") && format !== "png");
  $("mask-section").hidden = !takes(model, "mask_url") || state.refs.length === 0;
  $("refs-section").hidden = maxReferences() === 0 && state.refs.length === 0;
  $("ref-count").textContent = `${state.refs.length} of ${maxReferences()}`;
  if (state.refs.length > maxReferences()) {
    notes.push(`${model.id} takes ${maxReferences() ? `at most ${maxReferences()}` : "no"} references: remove ` +
      `${state.refs.length - maxReferences()}.`);
  }

  const missing = lacking(model, state.models);
  if (missing || model.capabilities.ratios?.length) {
    notes.unshift(`${makes(model)}${missing ? `; ${missing}` : ""}.`);
  }
  $("rules").textContent = notes.join(" ");
}

function showField(name, visible) {
  for (const node of document.querySelectorAll(`[data-show="${name}"]`)) {
    // a field the model does not take stays hidden whatever else holds
    node.hidden = !visible || (node.dataset.field !== undefined && !takes(chosen(), node.dataset.field));
  }
}

// 4k only with the wide ratios (the size table's rule); a quality only where it is sold
// at the resolution chosen (gpt-image-2-official: 4k at high or auto only).
function limitResolution(model) {
  const notes = [];
  const size = $("size").value;
  const fourK = optionOf("resolution", "4k");
  // auto picks one of the ratios the model makes
  const wide = WIDE_RATIOS_FOR_4K.includes(size) ||
    (size === "auto" && ratiosOf(model).some((r) => WIDE_RATIOS_FOR_4K.includes(r)));
  if (fourK) fourK.disabled = !wide;
  const lower = model.capabilities.resolutions.filter((r) => r !== "4k");
  if (!wide && $("resolution").value === "4k" && lower.length) {
    $("resolution").value = lower.at(-1);
    notes.push(`4k needs one of the ratios ${WIDE_RATIOS_FOR_4K.join(", ")}: resolution set to ${lower.at(-1)}.`);
  }
  if (!takes(model, "quality")) return notes;
  // an explicit WIDTHxHEIGHT's tier is the server's to work out: every quality offered
  const resolution = $("resolution").value;
  const sold = customSize() ? model.capabilities.qualities : qualitiesAt(model, resolution);
  for (const option of $("quality").options) option.disabled = !sold.includes(option.value);
  if (!sold.includes($("quality").value) && sold.length) {
    const tiers = sold.filter((q) => q !== "auto");
    $("quality").value = tiers.at(-1) || sold[0];
    const auto = sold.includes("auto") ? " or auto" : "";
    notes.push(`${resolution} on ${model.id} is offered at quality ${tiers.join(" or ")}${auto} only: ` +
      `quality set to ${$("quality").value}.`);
  }
  return notes;
}

// A transparent background needs png or webp.
function limitFormat(model) {
  const transparent = optionOf("background", "transparent");
  const jpeg = optionOf("output_format", "jpeg");
  if (!takes(model, "background") || !takes(model, "output_format")) return [];
  const isTransparent = $("background").value === "transparent";
  if (jpeg) jpeg.disabled = isTransparent;
  if (transparent) transparent.disabled = $("output_format").value === "jpeg";
  if (isTransparent && $("output_format").value === "jpeg") {
    $("output_format").value = "png";
    return ["A transparent background needs png or webp: format set to png."];
  }
  return [];
}

const optionOf = (select, value) => [...$(select).options].find((o) => o.value === value);

// The chosen model's prices, per image: a row per price, the one charged marked.
function showPrices(model) {
  const caps = model.capabilities;
  const byQuality = caps.qualities.length > 0;
  const rows = model.prices.map((row) => el("tr", { "data-price": row.id },
    el("td", {}, row.resolutions?.join(", ") ?? "any"),
    byQuality ? el("td", {}, row.qualities?.join(", ") ?? "any") : null,
    el("td", { class: "num" }, credits(row.credits))));
  $("prices").replaceChildren(
    el("caption", {}, `${model.id}: credits per image`),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Resolution"),
      byQuality ? el("th", { scope: "col" }, "Quality") : null, el("th", { scope: "col", class: "num" }, "Price"))),
    el("tbody", {}, rows));
  $("prices-note").textContent = model.auto_quoted_as
    ? `Quality auto is held at ${model.auto_quoted_as} and charged at the tier made.` : "";
  markPrice();
}

// The row the latest estimate is priced at, marked (while it is the chosen model's).
function markPrice() {
  const model = chosen();
  const quote = state.quote;
  const row = model && quote?.model === model.id && priceRow(model, quote.params.resolution, quote.params.quality);
  for (const tr of $("prices").querySelectorAll("tbody tr")) {
    const on = Boolean(row) && tr.dataset.price === row.id;
    tr.classList.toggle("current", on);
    if (on) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
  }
}

// ---- the request on screen ---------------------------------------------------------------

// reAPI's body for what the form says, with the fields the chosen model takes only; the
// mask's URL only once it is uploaded.
function requestBody(maskUrl) {
  const model = chosen();
  const body = { model: $("model").value };
  const prompt = $("prompt").value;
  if (prompt.trim()) body.prompt = prompt;
  body.size = customSize() ? $("custom_size").value.trim() : $("size").value;
  if (!customSize()) body.resolution = $("resolution").value;
  if (model && takes(model, "n")) body.n = Number($("n").value);
  for (const f of ["quality", "background", "moderation", "output_format"]) {
    if (model && takes(model, f)) body[f] = $(f).value;
  }
  const format = body.output_format ?? model?.capabilities.formats[0];
  const compression = $("output_compression").value;
  if (model && takes(model, "output_compression") && format !== "png" && compression !== "") {
    body.output_compression = Number(compression);
  }
  if (state.refs.length) body.image_urls = state.refs.map((r) => r.url);
  if (maskUrl && masking()) body.mask_url = maskUrl;
  return body;
}

// Is a mask part of the request: the model takes one and there is a reference to mask.
const masking = () => Boolean(chosen() && takes(chosen(), "mask_url") && state.refs.length);

// The mask's URL for the request: uploaded now if it changed since the last upload.
async function uploadedMask() {
  const painter = state.mask;
  if (!masking() || !painter.painted) return null;
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
    state.quote = quote;
    markPrice();
    refreshSnippet();
  } catch (err) {
    if (asked !== estimateAsked) return;
    $("estimate").textContent = "";
    state.quote = null;
    markPrice();
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
    if (state.refs.length >= maxReferences()) {
      placeError(new ApiError(400, "20002", "invalid_request",
        `${$("model").value} takes at most ${maxReferences()} references`, "image_urls"), "refs");
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
  if (state.refs.length >= maxReferences()) return;
  const probe = new Image();
  probe.addEventListener("load", () => addReference(url, probe.naturalWidth, probe.naturalHeight));
  probe.addEventListener("error", () => placeError(new ApiError(400, "20002", "invalid_request",
    "that URL did not load as an image here", "image_urls"), "refs"));
  probe.src = url;
  $("ref-url").value = "";
}

function addReference(url, width, height) {
  if (state.refs.length >= maxReferences()) return;
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
  const body = requestBody(state.maskUpload?.url || (state.mask?.painted && masking()
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

// The packaged catalog's listing: what the form follows while the served one is unknown
// (nobody signed in yet, or the list could not be read), always said so on the page.
let packagedAsked = null;
function packagedModels() {
  packagedAsked ??= fetch(PACKAGED_URL).then((res) => res.json()).then((list) => list.data)
    .catch(() => { packagedAsked = null; return []; });
  return packagedAsked;
}

// The models this server serves (GET /api/v1/models, as the key or the session); without
// either, or when the list cannot be read, the packaged ones with a note saying so (and,
// for an error, the error and a retry).
let modelsAsked = 0;
async function loadModels() {
  const asked = ++modelsAsked;
  if (!(await signedIn())) {
    const packaged = await packagedModels();
    if (asked === modelsAsked) {
      useModels(packaged, ["The packaged models: this server may serve others. ",
        el("a", { href: "/login" }, "Sign in"), " or paste a key to see the ones it serves."]);
    }
    return;
  }
  try {
    const list = await api("GET", "/api/v1/models");
    if (asked === modelsAsked) useModels(list.data, []);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (asked !== modelsAsked) return;
    const meanwhile = " Meanwhile the form follows the packaged models, which this server may not serve.";
    let note;
    if (err.status === 0) {
      offline(loadModels);
      note = ["The served models could not be read (no connection)." + meanwhile];
    } else if (err.status === 401) {
      note = ["The key was refused, so the served models are unknown." + meanwhile]; // said beside the key
    } else {
      note = [el("span", { class: "field-error", role: "alert" },
        `The served models could not be read: ${err.message} (${err.code}).`), " ",
        el("button", { type: "button", class: "secondary small", onclick: loadModels }, "Retry"), meanwhile];
    }
    const packaged = await packagedModels();
    if (asked === modelsAsked) useModels(packaged, note);
  }
}

// The models the form follows, with what the page says of where they come from.
function useModels(models, note) {
  if (!models.length) { // not even the packaged ones could be read
    note = [el("span", { class: "field-error", role: "alert" }, "The models could not be read."), " ",
      el("button", { type: "button", class: "secondary small", onclick: loadModels }, "Retry")];
  }
  state.models = models;
  $("models-note").replaceChildren(...note);
  $("models-note").hidden = note.length === 0;
  const before = $("model").value;
  $("model").replaceChildren(...models.map((m) => el("option", { value: m.id }, `${m.id}: ${m.description}`)));
  if (models.some((m) => m.id === before)) $("model").value = before;
  const historyModel = $("history-model").value;
  $("history-model").replaceChildren(el("option", { value: "" }, "any"),
    ...models.map((m) => el("option", { value: m.id }, m.id)));
  if (models.some((m) => m.id === historyModel)) $("history-model").value = historyModel;
  state.shown = null; // the values offered follow the (new) list
  applyRules();
  estimateSoon();
  refreshSnippet();
}

// ---- the key ---------------------------------------------------------------------------

function keyChanged() {
  clearFieldErrors("estimate");
  clearFieldErrors("submit");
  header();
  loadModels(); // then the estimate
  showBalance();
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
  if (field.tagName === "SELECT") state.chosen[field.id] = field.value;
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
  header();
  // a signed-in session needs no pasted key
  if (await session()) $("key-row").hidden = true;
  // without a key or session every call could only fail (a 401, counted by the
  // failed-auth throttle)
  await loadModels(); // then the estimate, for the model chosen from them
  if (await signedIn()) {
    showBalance();
    loadHistory(true);
  }
}

start();
