// The playground's script: a file of its own so the page needs no inline script.
const $ = (id) => document.getElementById(id);
// The key lives in this tab only (sessionStorage), never in localStorage, which outlives the
// session and is readable by any later script of this origin; earlier versions kept it there.
localStorage.removeItem("pixelrelay-key");
$("key").value = sessionStorage.getItem("pixelrelay-key") || "";
const stable = () => $("model").value === "gpt-image-2-official";
$("model").addEventListener("change", () => {
  document.querySelectorAll(".stable-only").forEach((el) => { el.hidden = !stable(); });
});
function body() {
  const b = { model: $("model").value, prompt: $("prompt").value, size: $("size").value,
              resolution: $("resolution").value };
  if (stable()) {
    for (const f of ["quality", "output_format", "background"]) b[f] = $(f).value;
    b.n = Number($("n").value);
  }
  return b;
}
async function call(method, path, payload) {
  sessionStorage.setItem("pixelrelay-key", $("key").value);
  const res = await fetch(path, { method, headers: { "Authorization": "Bearer " + $("key").value,
    "Content-Type": "application/json" }, body: payload ? JSON.stringify(payload) : undefined });
  const json = await res.json();
  if (!res.ok) throw new Error(`${json.error.code} ${json.error.type}: ${json.error.message}`);
  return json;
}
async function showBalance() {
  try { const a = await call("GET", "/api/v1/account"); $("balance").textContent = `balance ${a.balance} credits (${a.held} held)`; }
  catch (e) { $("balance").textContent = ""; }
}
// The price of what is on screen, asked again 300 ms after the last change: the estimate
// follows every edit, and typing costs one request, not one per key.
let pricing;
async function price() {
  if (!$("key").value) { $("estimate").textContent = ""; return; }
  try { const e = await call("POST", "/api/v1/images/estimate", body());
        $("estimate").textContent = `${e.credits} credits ($${(e.credits / 1000).toFixed(3)})`; }
  catch (e) { $("estimate").textContent = e.message; }
}
for (const event of ["input", "change"]) {
  $("form").addEventListener(event, () => { clearTimeout(pricing); pricing = setTimeout(price, 300); });
}
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("images").innerHTML = "";
  try {
    let task = await call("POST", "/api/v1/images/generations", body());
    $("status").textContent = JSON.stringify(task, null, 2);
    while (task.status === "processing") {
      await new Promise((r) => setTimeout(r, 1000));
      task = await call("GET", `/api/v1/tasks/${task.id}`);
      $("status").textContent = JSON.stringify(task, null, 2);
    }
    for (const url of (task.output || { image_urls: [] }).image_urls) {
      const img = document.createElement("img"); img.src = url; img.alt = "generated image";
      $("images").appendChild(img);
    }
  } catch (e) { $("status").textContent = e.message; }
  showBalance();
});
// Without a key the call could only fail (a 401, counted by the failed-auth throttle).
if ($("key").value) { showBalance(); price(); }
