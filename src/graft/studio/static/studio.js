// graft studio: plain JavaScript over the /api routes (graft/studio/app.py). No framework, no CDN.
"use strict";

const state = { data: null, classes: [], gridClass: "", gridPage: 0, pages: 1, run: null, job: null,
  viewed: null, curve: [] };
const key = new URLSearchParams(location.search).get("key") || "";
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (key) headers["X-API-Key"] = key;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = typeof body === "object" ? body.detail : body;
    showError(message);
    throw new Error(message);
  }
  showError("");
  return body;
}

const withKey = (url) => (key ? url + (url.includes("?") ? "&" : "?") + "key=" + encodeURIComponent(key) : url);
const thumb = (path) => withKey("/api/thumb?path=" + encodeURIComponent(path));
const percent = (x) => (x * 100).toFixed(2) + " %";

// ---- tabs
function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== "tab-" + name;
  if (name === "results") loadRuns().catch(() => {});
  if (name !== "try") stopCamera();
}

function stopCamera() {
  const video = $("camera");
  if (video.srcObject) for (const track of video.srcObject.getTracks()) track.stop();
  video.srcObject = null;
  video.hidden = true;
}
for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}

// ---- data
async function openData(path) {
  const summary = await api("/api/open", { method: "POST", json: { path } });
  state.data = summary.path;
  state.classes = summary.classes;
  $("data-path").value = summary.path;
  $("data-name").textContent = summary.name;
  $("data-layout").textContent = `${summary.layout}, ${summary.classes.length} classes`;
  const splits = Object.keys(summary.counts);
  const table = $("counts");
  table.replaceChildren(el("tr", {}, el("th", { text: "class" }), ...splits.map((s) => el("th", { text: s }))));
  for (const name of summary.classes) {
    table.append(el("tr", { "data-class": name }, el("td", { text: name }),
      ...splits.map((s) => el("td", { text: String(summary.counts[s][name] || 0) }))));
  }
  const fixes = summary.fixes || {};
  $("fixes-note").textContent = fixes.relabelled || fixes.dropped
    ? `Your decisions: ${fixes.relabelled || 0} relabelled, ${fixes.dropped || 0} dropped (${summary.fixes_file}).` : "";
  $("skipped-title").textContent = `${summary.skipped.length} files skipped`;
  $("skipped").replaceChildren(...summary.skipped.map((s) => el("li", { text: `${s.path}: ${s.reason}` })));
  $("duplicates-title").textContent = `${summary.duplicates.length} identical images in two splits`;
  $("duplicates").replaceChildren(...summary.duplicates.map((d) => el("li", { text: `${d.kept} = ${d.other}` })));
  $("grid-class").replaceChildren(el("option", { value: "", text: "all" }),
    ...summary.classes.map((c) => el("option", { value: c, text: c })));
  $("relabel-to").replaceChildren(...summary.classes.map((c) => el("option", { value: c, text: c })));
  $("data-summary").hidden = false;
  state.gridPage = 0;
  await loadGrid();
}

async function loadGrid() {
  const query = new URLSearchParams({ data: state.data, label: $("grid-class").value, page: state.gridPage });
  const page = await api("/api/images?" + query);
  state.pages = page.pages;
  $("grid-page").textContent = `page ${page.page + 1} of ${page.pages} (${page.total} images)`;
  $("grid").replaceChildren(...page.images.map((image) => el("figure",
    { onclick: () => view(image.path, `${image.label} (${image.split || "no split"})`, null, image.label) },
    el("img", { src: thumb(image.path), alt: image.label, loading: "lazy" }),
    el("figcaption", { text: image.label }))));
}

$("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  openData($("data-path").value).catch(() => {});
});
$("grid-class").addEventListener("change", () => { state.gridPage = 0; loadGrid().catch(() => {}); });
$("prev").addEventListener("click", () => { if (state.gridPage > 0) { state.gridPage--; loadGrid().catch(() => {}); } });
$("next").addEventListener("click", () => {
  if (state.gridPage + 1 < state.pages) { state.gridPage++; loadGrid().catch(() => {}); }
});

// pick a folder or table: the roots first, then a click goes into a folder (a table is chosen)
async function browse(path) {
  const listing = await api("/api/browse" + (path ? "?path=" + encodeURIComponent(path) : ""));
  const up = listing.path ? [el("button", { type: "button", class: "folder", text: "all opened folders",
    onclick: () => browse("").catch(() => {}) })] : [];
  const name = (entry) => (listing.path ? entry.slice(listing.path.length + 1) : entry);
  $("browse").replaceChildren(...up,
    ...listing.folders.map((entry) => el("button", { type: "button", class: "folder", text: name(entry) + "/",
      onclick: () => { $("data-path").value = entry; browse(entry).catch(() => {}); } })),
    ...listing.tables.map((entry) => el("button", { type: "button", class: "table", text: name(entry),
      onclick: () => { $("data-path").value = entry; } })));
}

// ---- the viewer: an image large, its probabilities, and the decision buttons
function view(path, caption, probabilities, label) {
  state.viewed = path;
  const other = state.classes.find((name) => name !== label);
  if (other) $("relabel-to").value = other;
  $("viewer-image").src = withKey("/api/image?path=" + encodeURIComponent(path));
  $("viewer-caption").textContent = `${caption}: ${path}`;
  $("viewer-probabilities").replaceChildren(...Object.entries(probabilities || {})
    .sort((a, b) => b[1] - a[1]).map(([name, p]) => el("li", { text: `${name}: ${percent(p)}` })));
  $("decision").textContent = "";
  $("viewer").hidden = false;
}
async function decide(action) {
  const label = $("relabel-to").value;
  const file = await api("/api/decide", { method: "POST",
    json: { data: state.data, path: state.viewed, action, label } });
  $("decision").textContent = action === "relabel" ? `relabelled as ${label}: the next training applies it (${file.fixes_file})`
    : action === "drop" ? `dropped: the next training leaves it out (${file.fixes_file})` : "decision undone";
}
$("relabel").addEventListener("click", () => decide("relabel").catch(() => {}));
$("drop").addEventListener("click", () => decide("drop").catch(() => {}));
$("keep").addEventListener("click", () => decide("keep").catch(() => {}));
$("close-viewer").addEventListener("click", () => { $("viewer").hidden = true; });

// ---- training and its live progress
function drawCurve() {
  const canvas = $("curve");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const points = state.curve;
  if (!points.length) return;
  const series = [["train_loss", "#d9534f"], ["val_loss", "#f0ad4e"], ["train_accuracy", "#2f6fdb"], ["val_accuracy", "#2e9d5b"]];
  const top = Math.max(1, ...points.flatMap((p) => [p.train_loss || 0, p.val_loss || 0]));
  const x = (i) => 30 + (i * (canvas.width - 60)) / Math.max(1, points.length - 1);
  const y = (v) => canvas.height - 20 - (v / top) * (canvas.height - 40);
  series.forEach(([name, colour], index) => {
    context.strokeStyle = colour;
    context.fillStyle = colour;
    context.beginPath();
    points.forEach((p, i) => { if (p[name] !== undefined) { i ? context.lineTo(x(i), y(p[name])) : context.moveTo(x(i), y(p[name])); } });
    context.stroke();
    context.fillText(name, 40 + index * 120, 14);
  });
}

function follow(jobId, onDone, statusId = "train-status") {
  const source = new EventSource(withKey(`/api/jobs/${jobId}/events`));
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const status = $(statusId);
    if (event.type === "queued") status.textContent = `queued (job ${jobId})`;
    if (event.type === "started") status.textContent = `running: ${event.kind}`;
    if (event.type === "run") status.textContent = `training ${event.run}` + (event.fixes ? " with your decisions" : "");
    if (event.type === "candidate") status.textContent = `scored ${event.name}`;
    if (event.type === "extract" && statusId !== "train-status") status.textContent = `features: ${event.done}/${event.total} images`;
    if (event.type === "extract" && statusId === "train-status") $("extract-rate").textContent = `features: ${event.done}/${event.total} images, ${event.images_per_s} img/s`;
    if (event.type === "epoch_begin") status.textContent = `epoch ${event.epoch}/${event.total} (${event.phase})`;
    if (event.type === "batch") $("extract-rate").textContent = `epoch ${event.epoch}: loss ${event.loss}, ${event.images_per_s} img/s`;
    if (event.type === "epoch") {
      state.curve.push(event);
      drawCurve();
      const val = event.val_accuracy === undefined ? "no validation" : `val acc ${percent(event.val_accuracy)}`;
      $("epochs-log").append(el("li", { class: "epoch", text: `epoch ${event.epoch}/${event.total} ${event.phase}: train loss ${event.train_loss.toFixed(3)}, ${val}` }));
    }
    if (["done", "failed", "cancelled"].includes(event.type)) {
      source.close();
      if (statusId === "train-status") $("cancel").disabled = true;
      status.textContent = event.type === "failed" ? `failed: ${event.error}` : event.type;
      status.dataset.state = event.type;
      refreshQueue();
      if (onDone) onDone(event);
    }
  };
}

$("train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!state.data) { showError("open a data folder first (Data)"); return; }
  const options = {};
  const number = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  if (number("epochs") !== undefined) options.epochs = number("epochs");
  if (number("freeze-epochs") !== undefined) options.freeze_epochs = number("freeze-epochs");
  if (number("image-size") !== undefined) options.image_size = number("image-size");
  if (number("crop-pct") !== undefined) options.crop_pct = number("crop-pct");
  state.curve = [];
  drawCurve();
  $("epochs-log").replaceChildren();
  $("extract-rate").textContent = "";
  $("train-status").dataset.state = "running";
  try {
    const job = await api("/api/train", { method: "POST",
      json: { data: state.data, strategy: $("strategy").value, backbone: $("backbone").value, options } });
    state.job = job.job;
    $("cancel").disabled = false;
    refreshQueue();
    follow(job.job, (end) => { if (end.type === "done") { state.run = end.result.run; } });
  } catch (error) { $("train-status").dataset.state = "failed"; }
});
$("cancel").addEventListener("click", () => api(`/api/jobs/${state.job}/cancel`, { method: "POST" }).catch(() => {}));

async function refreshQueue() {
  const jobs = await api("/api/jobs");
  const waiting = jobs.filter((j) => j.status === "queued" || j.status === "running");
  $("queue").textContent = waiting.length ? waiting.map((j) => `${j.kind}: ${j.status}`).join(" | ") : "no jobs running";
}

// ---- the backbone shortlist (graft rank) and the data audit (graft audit)
$("shortlist").addEventListener("click", async () => {
  if (!state.data) { showError("open a data folder first (Data)"); return; }
  const job = await api("/api/rank", { method: "POST", json: { data: state.data } }).catch(() => null);
  if (!job) return;
  follow(job.job, (end) => {
    if (end.type !== "done") return;
    $("shortlist-result").replaceChildren(...end.result.candidates.slice(0, 5).map((c, i) => el("button", {
      type: "button", class: "candidate", text: `${i + 1}. ${c.name}`,
      onclick: () => { $("backbone").value = c.backbone; } })));
  }, "shortlist-status");
});
$("audit").addEventListener("click", async () => {
  const job = await api("/api/audit", { method: "POST", json: { data: state.data } }).catch(() => null);
  if (!job) return;
  follow(job.job, (end) => {
    if (end.type !== "done") return;
    const counts = Object.entries(end.result.summary).map(([name, n]) => `${n} ${name.replaceAll("_", " ")}`);
    $("audit-result").replaceChildren(el("span", { text: counts.join(", ") + ". " }),
      el("a", { href: withKey(end.result.report), target: "_blank", text: "Open the audit report" }));
  }, "audit-status");
});

// ---- results
async function loadLadder() {
  const ladder = await api("/api/ladder?data=" + encodeURIComponent(state.data || ""));
  const table = $("ladder");
  table.replaceChildren();
  $("ladder-note").textContent = ladder.note || "";
  if (!ladder.rows.length) return;
  table.append(el("tr", {}, ...["run", "accuracy [95 % CI]", "macro-F1", "vs best (McNemar p)"].map((h) => el("th", { text: h }))));
  const tests = Object.fromEntries((ladder.mcnemar || []).map((t) => [t.other, t]));
  for (const row of ladder.rows) {
    const ci = row.accuracy_interval ? ` [${percent(row.accuracy_interval[0])}, ${percent(row.accuracy_interval[1])}]` : "";
    const name = `${row.backbone} / ${row.strategy}`;
    const test = tests[name];
    table.append(el("tr", {}, el("td", { text: name + (name === ladder.best ? " (best)" : "") }),
      el("td", { text: percent(row.accuracy) + ci }), el("td", { text: row.macro_f1.toFixed(3) }),
      el("td", { text: test ? String(Number(test.p_value).toPrecision(2)) : "" })));
  }
}

async function loadRuns() {
  const runs = await api("/api/runs");
  state.runs = runs;
  const select = $("run");
  select.replaceChildren(...runs.map((run) => el("option", { value: run.name, text: `${run.name} (${run.status})` })));
  if (state.run && runs.some((r) => r.name === state.run)) select.value = state.run;
  if (runs.length) await loadRun(select.value);
  if (state.data) await loadLadder().catch(() => {});
}

async function loadRun(name) {
  state.run = name;
  const entry = (state.runs || []).find((r) => r.name === name);
  $("resume").hidden = !entry || entry.status !== "running";
  if (entry && entry.status !== "complete") {
    $("result").hidden = true;
    $("run-note").textContent = "This run was interrupted: resume it, or train again.";
    return;
  }
  $("run-note").textContent = "";
  const result = await api("/api/runs/" + encodeURIComponent(name));
  const interval = (result.intervals || {}).accuracy;
  $("metrics").textContent = `${result.strategy} on ${result.backbone}: accuracy ${percent(result.accuracy)}`
    + (interval ? ` [${percent(interval[0])}, ${percent(interval[1])}]` : "")
    + `, macro-F1 ${result.macro_f1.toFixed(3)} on ${result.n} ${result.split} images`;
  const fixes = result.fixes || {};
  $("applied").textContent = fixes.relabelled || fixes.dropped
    ? `Trained with your decisions: ${fixes.relabelled || 0} relabelled, ${fixes.dropped || 0} dropped.` : "";
  const table = $("confusion");
  table.replaceChildren(el("tr", {}, el("th", { text: "true \\ predicted" }), ...result.classes.map((c) => el("th", { text: c }))));
  result.confusion_matrix.forEach((row, i) => table.append(el("tr", {}, el("td", { text: result.classes[i] }),
    ...row.map((n) => el("td", { text: String(n) })))));
  const mistakes = result.mistakes;
  $("mistakes-note").textContent = mistakes.length ? "" : `No mistakes on the ${result.n} ${result.split} images.`;
  $("mistakes").replaceChildren(...mistakes.map((m) => el("figure",
    { class: "mistake", onclick: () => view(m.path, `true ${m.true}, predicted ${m.predicted}`, m.probabilities, m.true) },
    el("img", { src: thumb(m.path), alt: m.true }),
    el("figcaption", { text: `${m.true} → ${m.predicted} (${percent(m.probabilities[m.predicted])})` }))));
  $("report").hidden = true;
  $("result").hidden = false;
}
$("resume").addEventListener("click", async () => {
  const job = await api("/api/resume", { method: "POST", json: { run: state.run } }).catch(() => null);
  if (!job) return;
  showTab("train");
  $("cancel").disabled = false;
  state.job = job.job;
  follow(job.job, () => loadRuns().catch(() => {}));
});
$("run").addEventListener("change", () => loadRun($("run").value).catch(() => {}));
$("refresh-runs").addEventListener("click", () => loadRuns().catch(() => {}));
$("show-report").addEventListener("click", () => {
  const frame = $("report");
  frame.src = withKey(`/api/runs/${encodeURIComponent(state.run)}/report`);
  frame.hidden = false;
});

// ---- try it
async function tryFiles(files) {
  if (!state.run) { showError("train or pick a run first (Results)"); return; }
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name || "camera.png");
    const answer = await api(`/api/runs/${encodeURIComponent(state.run)}/predict`, { method: "POST", body: form });
    const top = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1])
      .map(([name, p]) => `${name} ${percent(p)}`).join(", ");
    $("try-result").prepend(el("li", { class: "prediction", text: `${answer.file}: ${answer.label} (${top})` }));
  }
}
$("try-file").addEventListener("change", (event) => tryFiles(event.target.files).catch(() => {}));
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  tryFiles(event.dataTransfer.files).catch(() => {});
});
$("webcam").addEventListener("click", async () => {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { showError("this browser gives no camera here"); return; }
  const video = $("camera");
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (error) { showError("no camera: " + error.message); return; }
  video.hidden = false;
  const canvas = document.createElement("canvas");
  const tick = async () => {
    if (video.hidden || !video.videoWidth) return;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    await tryFiles([new File([blob], "camera.jpg")]).catch(() => {});
    setTimeout(tick, 1000);
  };
  video.onloadeddata = tick;
});

// ---- export
$("export").addEventListener("click", async () => {
  if (!state.run) { showError("train or pick a run first (Results)"); return; }
  $("export-result").textContent = "exporting...";
  const job = await api(`/api/runs/${encodeURIComponent(state.run)}/export`, { method: "POST",
    json: { format: $("export-format").value, int8: $("int8").checked } }).catch(() => null);
  if (!job) return;
  follow(job.job, (end) => {
    const box = $("export-result");
    if (end.type !== "done") { box.textContent = end.type + (end.error ? ": " + end.error : ""); return; }
    const r = end.result;
    box.textContent = `${r.path}\nchecked on ${r.checked} images: agreement ${percent(r.agreement)}, largest probability difference ${r.max_difference.toExponential(2)}`
      + (Object.keys(r.accuracy || {}).length ? `\naccuracy ${JSON.stringify(r.accuracy)}` : "")
      + `\n\npredict with:  ${r.predict}\nserve with:    ${r.serve}`;
    box.dataset.state = "done";
  });
});

// ---- start
browse("").catch(() => {});
refreshQueue().catch(() => {});
if (window.GRAFT_START_DATA) openData(window.GRAFT_START_DATA).catch(() => {});
