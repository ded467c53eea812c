// "AugMax by hand": mix an image's AugMix chains with sliders and run three models on it in the page
// (onnxruntime-web, WebAssembly, one thread). Inlined by augmax_lib/course/live_models.py; no network: the
// runtime and the ONNX files come from the book's own _static folder, each checked against live/manifest.json.
function augmaxLive(id) {
  "use strict";
  const root = document.getElementById(id);
  if (!root || root.augmaxLive) return;
  const data = JSON.parse(root.querySelector(".augmax-live-data").textContent);
  const [C, H, W] = data.shape, N = C * H * W, K = data.k;
  const f32 = (b64) => { const s = atob(b64), u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return new Float32Array(u.buffer); };
  const u8 = (b64) => { const s = atob(b64), u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return u; };
  const image = f32(data.image), chains = f32(data.chains);
  const el = (tag, attrs, ...kids) => { const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) { if (k === "text") e.textContent = v; else e.setAttribute(k, v); }
    kids.forEach((k) => e.appendChild(k)); return e; };

  // ---- layout
  const status = el("p", {class: "augmax-live-status", text: "Loading the models..."});
  const canvas = el("canvas", {width: W, height: H, class: "augmax-live-canvas", title: "the mixed image"});
  const sliders = {};
  const sliderRow = (name, label, value) => {
    const input = el("input", {type: "range", min: "0", max: "1", step: "0.01", value: String(value),
                               class: "augmax-live-" + name, "aria-label": label});
    const shown = el("span", {class: "augmax-live-value"});
    sliders[name] = {input, shown};
    return el("label", {class: "augmax-live-slider"}, el("span", {text: label}), input, shown);
  };
  const controls = el("div", {class: "augmax-live-controls"}, sliderRow("m", "m (chains' share)", data.start.m));
  for (let i = 0; i < K; i++) controls.appendChild(sliderRow("w" + i, "w" + (i + 1) + " (chain " + (i + 1) + ")", data.start.w[i]));
  const cards = {};
  const predictions = el("div", {class: "augmax-live-models"});
  const buttons = el("div", {class: "augmax-live-buttons"});
  for (const label of data.models) {
    const list = el("ol", {class: "augmax-live-top"});
    cards[label] = list;
    predictions.appendChild(el("div", {class: "augmax-live-model"}, el("strong", {text: label}), list));
    const button = el("button", {type: "button", class: "augmax-live-answer", text: "the attack's answer against " + label});
    button.addEventListener("click", () => { const a = data.answers[label]; setSliders(a.m, a.w); update(); });
    buttons.appendChild(button);
  }
  const mixPanel = el("div", {class: "augmax-live-panel"}, el("div", {}, canvas), controls, predictions);

  const names = Object.keys(data.corruptions);
  const frames = Object.fromEntries(names.map((n) => [n, u8(data.corruptions[n])]));
  const cCanvas = el("canvas", {width: W, height: H, class: "augmax-live-canvas", title: "the corrupted image"});
  const select = el("select", {class: "augmax-live-corruption", "aria-label": "corruption"});
  names.forEach((n) => select.appendChild(el("option", {value: n, text: n.replace(/_/g, " ")})));
  const severity = el("input", {type: "range", min: "1", max: "5", step: "1", value: "3", class: "augmax-live-severity",
                                "aria-label": "severity"});
  const sevShown = el("span", {class: "augmax-live-value"});
  const cCards = {};
  const cPredictions = el("div", {class: "augmax-live-models"});
  for (const label of data.models) {
    const list = el("ol", {class: "augmax-live-top"});
    cCards[label] = list;
    cPredictions.appendChild(el("div", {class: "augmax-live-model"}, el("strong", {text: label}), list));
  }
  const cPanel = el("div", {class: "augmax-live-panel"}, el("div", {}, cCanvas),
    el("div", {class: "augmax-live-controls"}, el("label", {class: "augmax-live-slider"}, el("span", {text: "corruption"}), select),
       el("label", {class: "augmax-live-slider"}, el("span", {text: "severity"}), severity, sevShown)), cPredictions);
  const weight = el("p", {class: "augmax-live-weight"});
  root.append(status, mixPanel, buttons, el("p", {class: "augmax-live-caption", text: "A corruption of the same image, at a chosen severity:"}), cPanel, weight);

  // ---- pixels
  const draw = (cv, pixels, scale) => {
    const ctx = cv.getContext("2d"), img = ctx.createImageData(W, H);
    for (let p = 0; p < H * W; p++) {
      for (let c = 0; c < 3; c++) img.data[4 * p + c] = Math.round(Math.min(1, Math.max(0, pixels[c * H * W + p] * scale)) * 255);
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  };
  const weights = () => { const w = []; for (let i = 0; i < K; i++) w.push(Number(sliders["w" + i].input.value));
    const s = w.reduce((a, b) => a + b, 0); return s > 0 ? w.map((v) => v / s) : w.map(() => 1 / K); };
  const mixed = () => {
    // (1 - m) x + m sum_i w_i chain_i, in float32 as the library's mix does.
    const m = Math.fround(Number(sliders.m.input.value)), w = weights().map(Math.fround), out = new Float32Array(N);
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let i = 0; i < K; i++) s = Math.fround(s + Math.fround(w[i] * chains[i * N + j]));
      out[j] = Math.fround(Math.fround((1 - m) * image[j]) + Math.fround(m * s));
    }
    return out;
  };
  const setSliders = (m, w) => { sliders.m.input.value = String(m); w.forEach((v, i) => { sliders["w" + i].input.value = String(v); }); };
  const showValues = () => { const w = weights(); sliders.m.shown.textContent = Number(sliders.m.input.value).toFixed(2);
    for (let i = 0; i < K; i++) sliders["w" + i].shown.textContent = "-> " + w[i].toFixed(2);
    sevShown.textContent = severity.value; };

  // ---- models
  let ort = null, sessions = {}, busy = Promise.resolve();
  const softmax = (z) => { const m = Math.max(...z), e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0); return e.map((v) => v / s); };
  const predict = async (pixels) => {
    const start = performance.now(), out = {};
    for (const label of data.models) {
      const result = await sessions[label].run({images: new ort.Tensor("float32", pixels, [1, C, H, W])});
      out[label] = softmax(Array.from(result.logits.data));
    }
    return {probs: out, ms: performance.now() - start};
  };
  const show = (lists, probs) => {
    for (const label of data.models) {
      const p = probs[label], order = p.map((v, i) => i).sort((a, b) => p[b] - p[a]).slice(0, 3);
      lists[label].replaceChildren(...order.map((i) => el("li", {text: data.classes[i] + " " + (100 * p[i]).toFixed(1) + "%"})));
      lists[label].dataset.probs = JSON.stringify(p);
    }
  };
  const run = (job) => (busy = busy.then(job, job));  // one prediction at a time, in order
  const update = () => { showValues(); const pixels = mixed(); draw(canvas, pixels, 1);
    return run(async () => { if (!ort) return null; const r = await predict(pixels); show(cards, r.probs); api.last = {...r, pixels}; return api.last; }); };
  const corrupted = () => { const f = frames[select.value], off = (Number(severity.value) - 1) * N, px = new Float32Array(N);
    for (let j = 0; j < N; j++) px[j] = f[off + j] / 255; return px; };
  const updateCorruption = () => { showValues(); const pixels = corrupted(); draw(cCanvas, pixels, 1);
    return run(async () => { if (!ort) return null; const r = await predict(pixels); show(cCards, r.probs); api.lastCorruption = {...r, pixels}; return api.lastCorruption; }); };
  Object.values(sliders).forEach((s) => s.input.addEventListener("input", update));
  select.addEventListener("change", updateCorruption);
  severity.addEventListener("input", updateCorruption);

  const api = {
    last: null, lastCorruption: null,
    setMix: (m, w) => { setSliders(m, w); return update(); },
    setCorruption: (name, s) => { select.value = name; severity.value = String(s); return updateCorruption(); },
    time: async (repeats) => { const pixels = mixed(), ms = [];
      for (let r = 0; r < repeats; r++) ms.push((await run(() => predict(pixels))).ms);
      return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)]; },
  };
  root.augmaxLive = api;
  showValues(); draw(canvas, mixed(), 1); draw(cCanvas, corrupted(), 1);

  const contentRoot = document.documentElement.dataset.content_root;
  const bytesOf = (b64) => u8(b64);
  const sha256 = async (buffer) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", buffer)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const loadScript = (src) => new Promise((resolve, reject) => {
    const s = document.createElement("script"); s.src = src; s.onload = resolve;
    s.onerror = () => reject(new Error("could not load " + src)); document.head.appendChild(s); });
  // Over http(s) the files are fetched as they are. A page opened from disk (file://) may not fetch, so there each
  // file comes as a script holding its bytes in base64 (written beside it by export_for_book).
  const fromDisk = location.protocol === "file:";
  const load = async (base, path) => {
    if (!fromDisk) { const r = await fetch(base + path); if (!r.ok) throw new Error("could not load " + path); return r.arrayBuffer(); }
    await loadScript(base + path + ".js");
    return bytesOf(window.AUGMAX_LIVE_FILES[path.split("/").pop()]).buffer;
  };
  const checked = async (bytes, hash, name) => {
    if (window.crypto && crypto.subtle && (await sha256(bytes)) !== hash) throw new Error(name + ": its sha256 is not the pinned one");
    return bytes;
  };
  // In a notebook (JupyterLab, Colab) the output carries the ONNX files; the runtime comes from the CDN at the
  // version the book vendors, every file checked against its pinned sha256 before it runs.
  const inNotebook = async (embedded) => {
    const rt = embedded.runtime, get = async (name) => {
      const r = await fetch(rt.base + name);
      if (!r.ok) throw new Error("could not load " + rt.base + name);
      return checked(await r.arrayBuffer(), rt.files[name], name);
    };
    if (!window.ort) {
      const code = await get("ort.wasm.min.js");
      await loadScript(URL.createObjectURL(new Blob([code], {type: "text/javascript"})));
    }
    ort = window.ort;
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = {mjs: URL.createObjectURL(new Blob([await get("ort-wasm-simd-threaded.mjs")], {type: "text/javascript"}))};
    ort.env.wasm.wasmBinary = new Uint8Array(await get("ort-wasm-simd-threaded.wasm"));
    let total = 0;
    for (const label of data.models) {
      const entry = embedded.models[label], bytes = await checked(bytesOf(entry.b64).buffer, entry.sha256, entry.file);
      sessions[label] = await ort.InferenceSession.create(new Uint8Array(bytes), {executionProviders: ["wasm"]});
      total += entry.bytes;
    }
    weight.textContent = "The three ONNX files (" + (total / 1e6).toFixed(1) + " MB) are in this output; the runtime " +
      "(onnxruntime-web) came from " + rt.base + ", each file checked against its pinned sha256.";
    weight.dataset.bytes = String(total);
  };
  // The sessions are ready: show both panels' predictions and the time of one prediction.
  const live = async (where) => {
    await update(); await updateCorruption();
    const ms = await api.time(3);
    status.textContent = "Live: the three models run in this " + where + " (one prediction of all three: " + ms.toFixed(0) + " ms).";
    root.dataset.ready = "1";
  };
  let manifest = null;
  api.ready = (async () => {
    if (contentRoot === undefined) {
      if (!data.embedded) throw new Error("in a notebook the models come with the output: run this cell again " +
        "with live_models.by_hand(..., embed_models=True); augmax_lib.course.live_models.kernel_predictions gives " +
        "the same numbers from the kernel");
      await inNotebook(data.embedded);
      return live("output");
    }
    const base = contentRoot + "_static/";
    if (fromDisk) { await loadScript(base + "live/manifest.json.js"); manifest = window.AUGMAX_LIVE_MANIFEST; }
    else manifest = await (await fetch(base + "live/manifest.json")).json();
    if (!window.ort) await loadScript(base + "vendor/ort/ort.wasm.min.js");
    ort = window.ort;
    ort.env.wasm.numThreads = 1;
    if (fromDisk) {
      const glue = new Uint8Array(await load(base, "vendor/ort/ort-wasm-simd-threaded.mjs"));
      ort.env.wasm.wasmPaths = {mjs: URL.createObjectURL(new Blob([glue], {type: "text/javascript"}))};
      ort.env.wasm.wasmBinary = new Uint8Array(await load(base, "vendor/ort/ort-wasm-simd-threaded.wasm"));
    } else {
      ort.env.wasm.wasmPaths = new URL(base + "vendor/ort/", document.baseURI).href;
    }
    for (const label of data.models) {
      const entry = manifest.models[label], bytes = await load(base, "live/" + entry.file);
      if (window.crypto && crypto.subtle && (await sha256(bytes)) !== entry.sha256) {
        throw new Error(entry.file + ": its sha256 is not the manifest's");
      }
      sessions[label] = await ort.InferenceSession.create(new Uint8Array(bytes), {executionProviders: ["wasm"]});
    }
    const key = fromDisk ? "disk_bytes" : "bytes", sum = (o) => Object.values(o).reduce((a, r) => a + r[key], 0);
    const total = sum(manifest.runtime) + sum(manifest.models);
    weight.textContent = "Added to this page for the live models: " + (total / 1e6).toFixed(1) + " MB (the runtime " +
      (sum(manifest.runtime) / 1e6).toFixed(1) + " MB, the three ONNX files " + (sum(manifest.models) / 1e6).toFixed(1) +
      " MB" + (fromDisk ? ", as base64 scripts, since a page opened from disk may not fetch files" : "") + "), loaded once.";
    weight.dataset.bytes = String(total);
    return live("page");
  })().catch((err) => { status.textContent = "The live models are not running here: " + err.message +
    ". The figure below shows the same experiment."; root.dataset.ready = "error"; throw err; });
  api.ready.catch(() => {});
}
