// The Synesthesia playground. Plain JavaScript, no build step, no requests beyond this gateway.
// Every call is POST /<package.Service>/<Method> with protobuf's JSON mapping (see /openapi.json).
"use strict";

const $ = (root, selector) => root.querySelector(selector);
const STAGE_PX = 320;
let openapi = { paths: {}, components: { schemas: {} } };

// -- calling the gateway --------------------------------------------------------------------------

class CallError extends Error {
  constructor(error) {
    super(error.message);
    this.status = error.status || "UNKNOWN";
    this.violations = (error.details || []).flatMap(d => d.fieldViolations || []);
  }
  describe() {
    const lines = [`${this.status}: ${this.message}`];
    for (const v of this.violations) lines.push(`  ${v.field}: ${v.description}`);
    return lines.join("\n");
  }
}

function headers() {
  const token = $(document, "#token").value.trim();
  const out = { "Content-Type": "application/json" };
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

async function failure(response) {
  const text = await response.text();
  try {
    return new CallError(JSON.parse(text).error);
  } catch (_) {
    return new CallError({ status: `HTTP ${response.status}`, message: text });
  }
}

async function call(path, body) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// A server-streaming call: onMessage(message) for each NDJSON line as it arrives.
async function stream(path, body, onMessage) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffered += decoder.decode(value || new Uint8Array(), { stream: !done });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.error) throw new CallError(message.error);
      onMessage(message);
    }
    if (done) break;
  }
}

function requestHasField(path, field) {
  const ref = openapi.paths[path]?.post?.requestBody?.content?.["application/json"]?.schema?.$ref || "";
  const schema = openapi.components.schemas[ref.split("/").pop()];
  return Boolean(schema && schema.properties && field in schema.properties);
}

// The OpenAPI schema of a message or enum by its proto name ("synesthesia.v1.ExplainMethod").
const schemaNamed = name => openapi.components.schemas[name] || {};

// -- files, pictures and maps ---------------------------------------------------------------------

function base64Of(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

async function fileBase64(input) {
  const file = input.files[0];
  return file ? base64Of(await file.arrayBuffer()) : "";
}

const pngSrc = data => `data:image/png;base64,${data}`;

// A grid cell: a PNG (base64) with a caption under it.
function pngFigure(data, alt, text) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = pngSrc(data);
  img.alt = alt;
  const caption = document.createElement("figcaption");
  caption.textContent = text;
  figure.append(img, caption);
  return figure;
}

function tensor(t) {
  const bytes = Uint8Array.from(atob(t.dataF32le || ""), c => c.charCodeAt(0));
  const values = new Float32Array(bytes.buffer);
  return { shape: (t.shape || []).map(Number), values };
}

// Draws a [h, w] map over the stage, scaled smoothly to the picture: warm colours where it is high.
function drawMap(canvas, heatmap, box) {
  canvas.width = canvas.height = STAGE_PX;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, STAGE_PX, STAGE_PX);
  const { shape, values } = tensor(heatmap.values || {});
  if (shape.length === 2 && values.length === shape[0] * shape[1]) {
    const [h, w] = shape;
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const small = document.createElement("canvas");
    small.width = w; small.height = h;
    const pixels = small.getContext("2d").createImageData(w, h);
    values.forEach((v, i) => {
      const t = hi > lo ? (v - lo) / (hi - lo) : 0;
      pixels.data.set([255, Math.round(220 * (1 - t)), 0, Math.round(160 * t)], 4 * i);
    });
    small.getContext("2d").putImageData(pixels, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, STAGE_PX, STAGE_PX);
  }
  if (box && heatmap.imageWidthPx) {
    const sx = STAGE_PX / heatmap.imageWidthPx, sy = STAGE_PX / heatmap.imageHeightPx;
    ctx.strokeStyle = "#00e5ff";
    ctx.lineWidth = 3;
    ctx.strokeRect(box.xMinPx * sx, box.yMinPx * sy, (box.xMaxPx - box.xMinPx) * sx, (box.yMaxPx - box.yMinPx) * sy);
  }
}

// -- panels ---------------------------------------------------------------------------------------

function panelRun(panel, form, work) {
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const error = $(panel, ".error");
    const button = $(form, "button[type=submit]");
    error.hidden = true;
    button.disabled = true;
    panel.dataset.state = "busy";
    try {
      await work(form);
      panel.dataset.state = "done";
    } catch (err) {
      error.textContent = err instanceof CallError ? err.describe() : String(err);
      error.hidden = false;
      panel.dataset.state = "failed";
    } finally {
      button.disabled = false;
    }
  });
}

// The services' notes on the inputs (a built-in given a picture outside ShapesWorld), one per line.
function showWarnings(panel, warnings) {
  const box = $(panel, ".warnings");
  box.textContent = (warnings || []).join("\n");
  box.hidden = !box.textContent;
}

function withModel(panel, path, request) {
  const select = $(panel, "select.models");
  if (select && select.value && requestHasField(path, "model")) request.model = select.value;
  return request;
}

function setupCaption() {
  const panel = $(document, "#caption");
  const path = "/synesthesia.v1.Gateway/Describe";
  panelRun(panel, $(panel, "form"), async form => {
    const request = withModel(panel, path, {
      image: { data: await fileBase64(form.image) },
      beamSize: Number(form.beam.value) || 0,
      collection: form.collection.value.trim(),
    });
    const reply = await call(path, request);
    showWarnings(panel, reply.caption.warnings);
    const result = $(panel, ".result");
    $(result, ".picture").src = URL.createObjectURL(form.image.files[0]);
    const words = $(result, ".caption-words");
    words.replaceChildren();
    const canvas = $(result, ".overlay");
    const show = (span, word) => {
      words.querySelectorAll(".word").forEach(w => w.classList.remove("picked"));
      span.classList.add("picked");
      drawMap(canvas, word.attention || {});
      panel.dataset.word = word.text;
    };
    reply.caption.words.forEach(word => {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = word.text;
      span.title = `log p ${word.logProbability.toFixed(3)}`;
      span.addEventListener("mouseenter", () => show(span, word));
      span.addEventListener("click", () => show(span, word));
      words.append(span, " ");
    });
    $(result, ".meta").textContent =
      `log p ${reply.caption.logProbability.toFixed(2)}${reply.caption.model ? `, model ${reply.caption.model}` : ""}`;
    $(result, ".neighbours").replaceChildren(...(reply.neighbours || []).map(hit => {
      const li = document.createElement("li");
      li.textContent = `${hit.id} (${hit.score.toFixed(3)})`;
      return li;
    }));
    result.hidden = false;
    const first = words.querySelector(".word");
    if (first) show(first, reply.caption.words[0]);
  });
}

function setupImagine() {
  const panel = $(document, "#imagine");
  const path = "/synesthesia.v1.Gateway/Imagine";
  panelRun(panel, $(panel, "form"), async form => {
    const reply = await call(path, withModel(panel, path, {
      prompt: form.prompt.value, imageCount: Number(form.count.value) || 1, seed: String(form.seed.value || 0),
    }));
    showWarnings(panel, reply.warnings);
    $(panel, ".meta").textContent = `seed ${reply.seed}` +
      (reply.unknownWords.length ? `; unknown words ignored: ${reply.unknownWords.join(", ")}` : "");
    $(panel, ".grid").replaceChildren(...reply.images.map(image => pngFigure(
      image.image.data, image.caption, `${image.caption} (agreement ${image.promptAgreement.toFixed(2)})`)));
  });
}

function setupTranslate() {
  const panel = $(document, "#translate");
  const path = "/synesthesia.v1.Gateway/Translate";
  panelRun(panel, $(panel, "form"), async form => {
    const reply = await call(path, { image: { data: await fileBase64(form.image) }, model: form.model.value });
    showWarnings(panel, reply.warnings);
    $(panel, ".before").src = URL.createObjectURL(form.image.files[0]);
    $(panel, ".after").src = pngSrc(reply.image.data);
    $(panel, ".after-caption").textContent = reply.caption;
    $(panel, ".side-by-side").hidden = false;
  });
}

function setupListen() {
  const panel = $(document, "#listen");
  const path = "/synesthesia.v1.Gateway/Listen";
  panelRun(panel, $(panel, "form"), async form => {
    const reply = await call(path, withModel(panel, path, {
      image: { data: await fileBase64(form.image) }, audio: { encoded: await fileBase64(form.audio) },
    }));
    showWarnings(panel, reply.warnings);
    const result = $(panel, ".result");
    $(result, ".picture").src = URL.createObjectURL(form.image.files[0]);
    drawMap($(result, ".overlay"), reply.heatmap, reply.box);
    $(result, ".summary").textContent = `${reply.summary} (peak ${reply.peakScore.toFixed(2)})`;
    result.hidden = false;
  });
}

function setupSearch() {
  const panel = $(document, "#search");
  const indexForm = $(panel, ".index-form");
  const hits = $(panel, ".hits");
  panelRun(panel, indexForm, async form => {
    const items = [];
    for (const file of form.images.files) {
      items.push({ id: file.name, image: { data: base64Of(await file.arrayBuffer()) }, metadata: { file: file.name } });
    }
    const path = "/synesthesia.v1.Embedding/Upsert";
    const reply = await call(path, withModel(panel, path, { collection: form.collection.value, items }));
    $(panel, ".meta").textContent =
      `indexed ${reply.upsertedCount} pictures into ${form.collection.value} (${reply.collectionSize} items)`;
    await listCollections();
  });
  panelRun(panel, $(panel, ".search-form"), async form => {
    const request = { collection: indexForm.collection.value, topK: Number(form.topK.value) || 5 };
    if (form.image.files.length) request.image = { data: await fileBase64(form.image) };
    else request.text = form.text.value;
    const reply = await call("/synesthesia.v1.Embedding/Search", request);
    $(panel, ".meta").textContent = `${reply.hits.length} nearest in ${request.collection}`;
    hits.replaceChildren(...reply.hits.map(hit => {
      const li = document.createElement("li");
      li.textContent = `${hit.id} (${hit.score.toFixed(3)})`;
      return li;
    }));
  });
}

function setupPipeline() {
  const panel = $(document, "#pipeline");
  const rows = $(panel, "tbody");
  panelRun(panel, $(panel, "form"), async form => {
    rows.replaceChildren();
    const inputs = {};
    if (form.scene.files.length) inputs.scene = await fileBase64(form.scene);
    await stream("/synesthesia.v1.Gateway/RunPipeline", { spec: form.spec.value, inputs }, event => {
      const state = event.state.replace("STEP_STATE_", "").toLowerCase();
      const row = document.createElement("tr");
      row.className = `state-${state}`;
      const detail = event.errorCode ? `${event.errorCode}: ${event.errorMessage}` : (event.outputJson || "");
      for (const text of [event.step, state, event.elapsedMs ? event.elapsedMs.toFixed(0) : "",
                          detail.length > 160 ? `${detail.slice(0, 160)}…` : detail]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      rows.append(row);
    });
  });
}

// Gateway.Explain: the request's `target` oneof names the owning service's request message.
const EXPLAIN_TARGETS = {
  caption: "ExplainCaptionRequest", match: "ExplainMatchRequest",
  localization: "ExplainLocalizationRequest", judge: "ExplainJudgeRequest",
};
const METHOD_PREFIX = "EXPLAIN_METHOD_";

// One checkbox per ExplainMethod value the OpenAPI document lists; those the target's `methods`
// comment does not name are greyed out (the services refuse them, naming methods[i]).
function offerExplainMethods(panel) {
  const form = $(panel, "form");
  const target = form.target.value;
  for (const label of panel.querySelectorAll("[data-targets]")) {
    label.hidden = !label.dataset.targets.split(" ").includes(target);
  }
  const methodEnum = schemaNamed("synesthesia.v1.ExplainMethod");
  const notes = Object.fromEntries((methodEnum.description || "").split("\n")
    .map(line => line.match(/^- `(\w+)`: (.*)$/)).filter(Boolean).map(m => [m[1], m[2]]));
  const request = schemaNamed(`synesthesia.v1.${EXPLAIN_TARGETS[target]}`);
  const takes = request.properties?.methods?.description || "";
  const fieldset = $(panel, "fieldset.methods");
  const values = (methodEnum.enum || []).filter(v => !v.endsWith("_UNSPECIFIED"));
  const applies = value => !takes || new RegExp(`\\b${value.slice(METHOD_PREFIX.length)}\\b`).test(takes);
  // Keep the ticks that still apply; none left (first load, or CAM after the judge): a cheap default.
  let checked = [...fieldset.querySelectorAll("input:checked")].map(i => i.value).filter(applies);
  if (!checked.length) checked = fieldset.querySelector("input") ? [values.find(applies)]
    : [`${METHOD_PREFIX}GRAD_CAM`, `${METHOD_PREFIX}OCCLUSION`];
  fieldset.replaceChildren($(fieldset, "legend") || document.createElement("legend"), ...values.map(value => {
    const short = value.slice(METHOD_PREFIX.length);
    const label = document.createElement("label");
    label.className = applies(value) ? "" : "inapplicable";
    label.title = notes[value] || "";
    const box = document.createElement("input");
    Object.assign(box, { type: "checkbox", name: "method", value, checked: checked.includes(value) });
    label.append(box, short.toLowerCase().replaceAll("_", "-"));
    return label;
  }));
}

async function explainRequest(form) {
  const target = form.target.value;
  const request = { image: { data: await fileBase64(form.image) } };
  request.methods = [...form.querySelectorAll("input[name=method]:checked")].map(box => box.value);
  request.options = {
    occlusionWindowPx: Number(form.window.value) || 0, occlusionStridePx: Number(form.stride.value) || 0,
  };
  if (target === "caption") {
    Object.assign(request, { caption: form.caption.value.trim(), wordIndex: Number(form.word.value) || 0 });
  }
  if (target === "match") request.text = form.text.value;
  if (target === "localization") request.audio = { encoded: await fileBase64(form.audio) };
  if (target === "judge") Object.assign(request, { head: form.head.value, className: form.className.value.trim() });
  const model = form.model.value.trim();
  const fields = schemaNamed(`synesthesia.v1.${EXPLAIN_TARGETS[target]}`).properties || {};
  if (model && "model" in fields) request.model = model;
  return { [target]: request };
}

// What was explained, with its score, in the words of each response.
function explainSummary(target, reply) {
  const model = reply.model ? `, model ${reply.model}` : "";
  if (target === "caption") {
    return `word "${reply.word}" of "${reply.caption}" (log p ${(reply.logProbability || 0).toFixed(3)}${model})`;
  }
  if (target === "match") return `similarity ${(reply.similarity || 0).toFixed(3)}${model}`;
  if (target === "localization") return `audio-visual score ${(reply.score || 0).toFixed(3)}${model}`;
  const predictions = (reply.predictions || [])
    .map(p => `${p.head} ${p.className} (${(p.probability || 0).toFixed(2)})`);
  return `${reply.head} class ${reply.className}; the judge says ${predictions.join(", ")}`;
}

function setupExplain() {
  const panel = $(document, "#explain");
  const form = $(panel, "form");
  form.target.addEventListener("change", () => offerExplainMethods(panel));
  panelRun(panel, form, async form => {
    const target = form.target.value;
    const grid = $(panel, ".grid");
    grid.replaceChildren();
    $(panel, ".meta").textContent = "";
    const reply = (await call("/synesthesia.v1.Gateway/Explain", await explainRequest(form)))[target];
    $(panel, ".meta").textContent = explainSummary(target, reply);
    grid.replaceChildren(...(reply.explanations || []).map(explanation => {
      const name = explanation.method.slice(METHOD_PREFIX.length).toLowerCase().replaceAll("_", "-");
      const figure = pngFigure(explanation.overlayPng, `${name} overlay`,
                               `${name} (${(explanation.computeSeconds || 0).toFixed(2)} s)`);
      figure.dataset.method = explanation.method;
      return figure;
    }));
  });
}

// The existing collections, offered by the collection field (ListCollections).
async function listCollections() {
  try {
    const reply = await call("/synesthesia.v1.Embedding/ListCollections", {});
    $(document, "#collections").replaceChildren(
      ...(reply.collections || []).map(c => new Option(`${c.size} items`, c.collection)));
  } catch (_) { /* an older embedding service: the field still takes any name */ }
}

// -- model pickers, tabs, health ------------------------------------------------------------------

async function fillModelPickers() {
  for (const panel of document.querySelectorAll(".panel[data-service]")) {
    const select = $(panel, "select.models");
    const task = panel.dataset.task || "";
    try {
      const reply = await call(`/${panel.dataset.service}/ListModels`, {});
      const models = reply.models.filter(m => !task || (task.startsWith("!") ? m.task !== task.slice(1)
                                                                               : m.task === task));
      select.replaceChildren(...models.map(m => {
        const option = new Option(`${m.name} (${m.task}, ${m.device})`, m.name, false, m.isDefault);
        return option;
      }));
    } catch (err) {
      select.replaceChildren(new Option(err instanceof CallError ? err.status : "unavailable", ""));
      select.title = err instanceof CallError ? err.describe() : String(err);
    }
  }
}

async function checkHealth() {
  const badge = $(document, "#health");
  try {
    const reply = await (await fetch("/healthz")).json();
    badge.textContent = reply.status;
    badge.className = `badge ${reply.status === "SERVING" ? "ok" : "bad"}`;
  } catch (_) {
    badge.textContent = "unreachable";
    badge.className = "badge bad";
  }
}

function setupTabs() {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => {
      document.querySelectorAll("#tabs button, .panel").forEach(e => e.classList.remove("active"));
      button.classList.add("active");
      $(document, `#${button.dataset.panel}`).classList.add("active");
    });
  }
}

async function main() {
  const token = $(document, "#token");
  token.value = sessionStorage.getItem("syn-token") || "";
  token.addEventListener("change", () => { sessionStorage.setItem("syn-token", token.value); fillModelPickers(); });
  setupTabs();
  setupCaption();
  setupImagine();
  setupTranslate();
  setupListen();
  setupSearch();
  setupExplain();
  setupPipeline();
  checkHealth();
  try { openapi = await (await fetch("/openapi.json")).json(); } catch (_) { /* pickers still work */ }
  offerExplainMethods($(document, "#explain"));
  await fillModelPickers();
  await listCollections();
  document.body.dataset.ready = "true";
}

main();
