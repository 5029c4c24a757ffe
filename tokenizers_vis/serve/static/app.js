// vistok serve: the page's behaviour. All computation is on the server (/api/*); this file
// keeps the controls, asks for the latest settings only (a slider never queues stale work) and
// shows every error the server sends as one line in #error.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, image: null, job: null, viewBusy: false, viewAgain: false, stripKey: "" };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}
function clearError() { $("error").hidden = true; $("error").textContent = ""; }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(url, options = {}) {
  let response, data;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("the server did not answer (is vistok serve still running?)");
  }
  try { data = await response.json(); } catch (err) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok || data.error) throw new Error(data.error || `HTTP ${response.status}`);
  if (data.job && data.state) return runJob(data);
  return data;
}

// Long work: poll the job, show its progress, let Cancel stop it.
async function runJob(job) {
  if (state.job && state.job !== job.job) await cancelJob();
  state.job = job.job;
  $("busy").hidden = false;
  try {
    for (;;) {
      $("busy-bar").value = job.progress;
      $("busy-text").textContent = `${job.kind}: ${job.message} (${job.elapsed_s.toFixed(1)} s)`;
      if (job.state === "done") return job.result;
      if (job.state === "error") throw new Error(job.error);
      if (job.state === "cancelled") return null;
      await sleep(150);
      const r = await fetch(`/api/jobs/${job.job}`);
      job = await r.json();
      if (job.error && !job.state) throw new Error(job.error);
    }
  } finally {
    if (state.job === job.job) { state.job = null; $("busy").hidden = true; }
  }
}

async function cancelJob() {
  const id = state.job;
  if (!id) return;
  state.job = null;
  $("busy").hidden = true;
  try { await fetch(`/api/jobs/${id}/cancel`, { method: "POST" }); } catch (err) { /* gone */ }
}

function model() { return state.info.models.find((m) => m.key === $("model").value); }
function decoder() {
  const m = model();
  return m.decoders.find((d) => d.key === $("decoder").value) || m.decoders[0];
}

function params(extra = {}) {
  const p = new URLSearchParams({
    image: state.image.image, model: $("model").value, decoder: $("decoder").value,
    k: $("k").value, layout: $("layout").value, scale: $("scale").value,
    steps: decoder().generative ? $("steps").value : 0, seed: $("seed").value || 0,
  });
  for (const [key, value] of Object.entries(extra)) p.set(key, value);
  return p;
}

const fmt = (x, digits) => (x === null || x === undefined ? "n/a" : x.toFixed(digits));
function bytesText(b) { return Number.isInteger(b) ? `${b}` : b.toFixed(1); }

function fillCard(id, c, label) {
  const card = $(id);
  card.querySelector("img").src = c.src;
  card.dataset.bytes = c.bytes;
  let text = `${label}\nbytes ${bytesText(c.bytes)} B\nbpp   ${c.bpp.toFixed(3)}`;
  text += `\nPSNR  ${fmt(c.psnr, 2)} dB\nSSIM  ${fmt(c.ssim, 3)}`;
  card.querySelector(".stats").textContent = text;
}

function showView(v) {
  $("layout-text").textContent = v.layout_text;
  const o = v.original;
  $("card-original").querySelector("img").src = o.src;
  $("card-original").querySelector(".stats").textContent =
    `${o.width}x${o.height}\nraw RGB ${o.bytes} B\nbpp   24`;
  fillCard("card-decoded", v.decoded,
    `k = ${v.k} of ${v.max_tokens}, ${v.tiles} tile${v.tiles > 1 ? "s" : ""}\n` +
    `(${v.bits_per_token} bits/token; .vtok file ${v.decoded.vtok_bytes} B)`);
  $("card-decoded").dataset.k = v.k;
  $("card-decoded").querySelector("figcaption").textContent = `Tokens (${v.decoder})`;
  fillCard("card-jpeg", v.jpeg, `quality ${v.jpeg.quality}, closest bytes`);
  fillCard("card-webp", v.webp, `quality ${v.webp.quality}, closest bytes`);
  const lines = v.ids.values.map((tile, t) =>
    `tile ${t}: ` + tile.map((tok) => tok.length === 1 ? tok[0] : `(${tok.join(",")})`).join(" "));
  if (v.ids.of > v.ids.tiles) lines.push(`... ${v.ids.of - v.ids.tiles} more tiles`);
  $("ids").textContent = lines.join("\n");
  const link = $("download");
  link.href = `/api/vtok?${params({ k: v.k })}`;
  link.textContent = `Download .vtok (k = ${v.k}, ${v.decoded.vtok_bytes} B)`;
  link.hidden = false;
}

// The slider asks for the newest k only: one request in flight, the latest settings next.
async function refresh() {
  if (!state.image) return;
  if (state.viewBusy) { state.viewAgain = true; if (state.job) await cancelJob(); return; }
  state.viewBusy = true;
  try {
    do {
      state.viewAgain = false;
      const p = params();
      try {
        const v = await api(`/api/view?${p}`);
        if (v && !state.viewAgain) { showView(v); clearError(); }
      } catch (err) { showError(err.message); }
    } while (state.viewAgain);
  } finally { state.viewBusy = false; }
  refreshStrip();
}

async function refreshStrip() {
  const p = params({ k: 1 });
  const key = p.toString();
  if (key === state.stripKey) return;
  state.stripKey = key;
  try {
    const s = await api(`/api/strip?${p}`);
    if (!s) { if (state.stripKey === key) state.stripKey = ""; return; }  // cancelled
    if (state.stripKey !== key) return;
    $("strip").replaceChildren(...s.strip.map((d) => {
      const f = document.createElement("figure");
      const img = document.createElement("img");
      img.src = d.src; img.alt = `k=${d.k}`;
      const cap = document.createElement("figcaption");
      cap.textContent = `k=${d.k}\n${bytesText(d.bytes)} B\n${fmt(d.psnr, 1)} dB`;
      cap.style.whiteSpace = "pre";
      f.append(img, cap);
      return f;
    }));
  } catch (err) { state.stripKey = ""; showError(err.message); }
}

function setImage(desc) {
  state.image = desc;
  state.stripKey = "";
  $("strip").replaceChildren();  // never another image's strip beside this one
  $("image-info").textContent = `${desc.name}: ${desc.width}x${desc.height}`;
  refresh();
}

async function uploadImage(blob, name) {
  try {
    const desc = await api("/api/image", { method: "POST", body: blob,
      headers: { "X-Filename": encodeURIComponent(name || "upload") } });
    clearError();
    setImage(desc);
  } catch (err) { showError(err.message); }
}

async function decodeVtok(file) {
  const p = new URLSearchParams({ model: $("model").value, decoder: $("decoder").value,
    steps: decoder().generative ? $("steps").value : 0, seed: $("seed").value || 0 });
  try {
    const r = await api(`/api/decode-vtok?${p}`, { method: "POST", body: file });
    if (!r) return;
    $("vtok-result").hidden = false;
    $("vtok-img").src = r.decoded.src;
    const h = r.header;
    $("vtok-stats").textContent = `${file.name}: ${r.decoded.vtok_bytes} B\n` +
      `${h.size[0]}x${h.size[1]}, ${h.tiles} tiles, k ${h.lengths.join("/")} of ${h.max_tokens}` +
      `\ndecoder ${r.decoder}`;
    clearError();
  } catch (err) { showError(err.message); $("vtok-result").hidden = true; }
}

function fillDecoders() {
  const m = model();
  $("decoder").replaceChildren(...m.decoders.map((d) => new Option(`${d.kind} (${d.key})`, d.key)));
  $("k").max = m.max_tokens;
  $("k-max").textContent = m.max_tokens;
  if (+$("k").value > m.max_tokens) $("k").value = m.max_tokens;
  $("k-out").textContent = $("k").value;
  fillSampling();
}

function fillSampling() {
  const d = decoder();
  $("sampling").hidden = !d.generative;
  if (d.generative && !$("steps").dataset.touched) {
    $("steps").value = d.default_steps || 25;
    $("steps-out").textContent = $("steps").value;
  }
}

// Generation tab -------------------------------------------------------------------------
async function generate() {
  const p = new URLSearchParams({ class: $("gen-class").value, guidance: $("gen-guidance").value,
    k: $("gen-k").value, n: $("gen-n").value, seed: $("gen-seed").value || 0 });
  try {
    const job = await api(`/api/generate?${p}`, { method: "POST" });
    if (!job) return;
    $("gen-grid").replaceChildren(...job.rows.map((row) => {
      const div = document.createElement("div");
      div.className = "row";
      const label = document.createElement("span");
      label.textContent = row.class;
      div.append(label, ...row.images.map((src) => { const i = new Image(); i.src = src; return i; }));
      return div;
    }));
    clearError();
  } catch (err) { showError(err.message); }
}

function fillGeneration(g) {
  if (!g.available) {
    $("gen-info").textContent = `Unavailable: ${g.reason}`;
    $("gen-run").disabled = true;
    return;
  }
  $("gen-info").textContent = `${g.gpt}: ${g.classes.length} classes, up to ${g.max_tokens} tokens`;
  for (const c of g.classes) $("gen-class").add(new Option(c, c));
  $("gen-k").max = g.max_tokens;
}

function bindOutputs() {
  for (const [input, out] of [["k", "k-out"], ["steps", "steps-out"], ["gen-guidance", "gen-guidance-out"], ["gen-k", "gen-k-out"]]) {
    $(input).addEventListener("input", () => { $(out).textContent = $(input).value; });
  }
}

async function init() {
  bindOutputs();
  try {
    state.info = await api("/api/info");
  } catch (err) { showError(err.message); return; }
  const info = state.info;
  $("model").replaceChildren(...info.models.map((m) => new Option(
    `${m.key} (${m.image_size}px, K=${m.max_tokens}, ${m.decoder})`, m.key)));
  for (const e of info.examples) $("example").add(new Option(`${e.label} (${e.width}x${e.height})`, e.id));
  fillDecoders();
  fillGeneration(info.generation);

  $("k").addEventListener("input", refresh);
  $("model").addEventListener("change", () => { fillDecoders(); refresh(); });
  $("decoder").addEventListener("change", () => { fillSampling(); refresh(); });
  for (const id of ["layout", "scale", "seed"]) $(id).addEventListener("change", refresh);
  $("steps").addEventListener("change", () => { $("steps").dataset.touched = "1"; refresh(); });
  $("upload").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) uploadImage(f, f.name);
  });
  $("vtok-upload").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) decodeVtok(f);
  });
  $("example").addEventListener("change", async (e) => {
    if (!e.target.value) return;
    try { setImage(await api(`/api/example?id=${encodeURIComponent(e.target.value)}`, { method: "POST" })); clearError(); }
    catch (err) { showError(err.message); }
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
    if (item) uploadImage(item.getAsFile(), "pasted image");
  });
  $("cancel").addEventListener("click", cancelJob);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      $("panel-tokens").hidden = tab.dataset.tab !== "tokens";
      $("panel-generate").hidden = tab.dataset.tab !== "generate";
    });
  }
  $("gen-run").addEventListener("click", generate);
  document.body.dataset.ready = "1";
}

init();
