// The vidgate page: upload or name a video, start a run, follow its events,
// show the report beside the video. Every API call carries the pasted key as
// a Bearer header; nothing secret ever goes into a URL.

const $ = (id) => document.getElementById(id);
const KEY_STORE = "vidgate.key";

const state = { file: null, uploadId: null, runId: null, blobUrls: [] };

function key() {
  return $("key").value.trim();
}

function authHeaders(extra = {}) {
  const k = key();
  return k ? { ...extra, Authorization: `Bearer ${k}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showError(message) {
  const e = $("error");
  e.textContent = message;
  e.hidden = !message;
}

function formatTime(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return (h ? `${h}:${pad(m)}` : `${m}`) + `:${pad(s % 60)}`;
}

function chooseFile(file) {
  state.file = file || null;
  $("file-name").textContent = file ? `${file.name} (${file.size} bytes)` : "";
  if (file) $("url").value = "";
}

function selectedTask() {
  return document.querySelector("input[name=task]:checked").value;
}

function onTaskChange() {
  const task = selectedTask();
  $("question-box").hidden = task !== "ask";
  $("what-box").hidden = task !== "find";
}

// Server-sent events read from a fetch body (EventSource cannot send headers).
async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

function onProgress(p) {
  const step = $("p-step");
  switch (p.kind) {
    case "downloading":
      step.textContent = `Downloading: ${p.bytes} bytes` + (p.total ? ` of ${p.total}` : "");
      break;
    case "probed":
      step.textContent = `Video read: ${formatTime(p.duration_ms)} long`;
      break;
    case "planned":
      step.textContent = `Planned: ${p.calls} calls at most, up to $${p.estimated_usd.toFixed(4)}`;
      break;
    case "sampled":
      $("p-frames").textContent = String(p.frames);
      break;
    case "uploading":
      step.textContent = `Sending the video to ${p.provider}`;
      break;
    case "unit":
      $("p-units").textContent = String(Number($("p-units").textContent) + 1);
      $("p-spent").textContent = `$${p.spent_usd.toFixed(4)}`;
      break;
    case "merging":
      step.textContent = "Merging the observations";
      break;
    case "done":
      $("p-spent").textContent = `$${p.spent_usd.toFixed(4)}`;
      step.textContent = "Done";
      break;
  }
}

async function follow(runId) {
  const response = await api(`/v1/runs/${runId}/events`, { headers: { Accept: "text/event-stream" } });
  for await (const { event, data } of readEvents(response)) {
    if (event === "progress") {
      onProgress(JSON.parse(data));
    } else if (event === "end") {
      const end = JSON.parse(data);
      $("p-status").textContent = end.status;
      return end;
    }
  }
  return null;
}

async function thumbnail(ms) {
  const response = await api(`/v1/videos/${state.uploadId}/thumbnail?t_ms=${ms}&width=320`);
  const url = URL.createObjectURL(await response.blob());
  state.blobUrls.push(url);
  return url;
}

function renderReport(report) {
  const story = $("story");
  story.replaceChildren();
  for (const text of [report.answer, report.story]) {
    if (!text) continue;
    for (const para of String(text).split(/\n{2,}/)) {
      const p = document.createElement("p");
      p.textContent = para;
      story.append(p);
    }
  }
  const cost = report.usage && report.usage.cost_usd;
  $("cost").textContent = cost !== undefined ? `Cost: $${Number(cost).toFixed(4)}` : "";
  const list = $("timeline");
  list.replaceChildren();
  for (const event of report.events || []) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.startMs = String(event.start_ms);
    const time = document.createElement("time");
    time.textContent = formatTime(event.start_ms);
    const text = document.createElement("span");
    text.textContent = event.text;
    const label = document.createElement("span");
    label.append(time, text);
    button.append(label);
    button.addEventListener("click", () => {
      const player = $("player");
      player.currentTime = event.start_ms / 1000;
      player.focus();
    });
    if (state.uploadId) {
      const img = document.createElement("img");
      img.alt = `Frame at ${formatTime(event.start_ms)}`;
      button.prepend(img);
      thumbnail(event.start_ms).then((url) => { img.src = url; }, () => img.remove());
    }
    li.append(button);
    list.append(li);
  }
  $("result").hidden = false;
}

async function download(format) {
  if (!state.runId) return;
  try {
    const response = await api(`/v1/runs/${state.runId}/report.${format}`);
    const url = URL.createObjectURL(await response.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `vidgate-run-${state.runId}.${format}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    showError(`Download failed: ${e.message}`);
  }
}

async function start(event) {
  event.preventDefault();
  showError("");
  for (const url of state.blobUrls.splice(0)) URL.revokeObjectURL(url);
  const url = $("url").value.trim();
  if (!state.file && !url) {
    showError("Choose a video file or give a URL.");
    return;
  }
  const task = selectedTask();
  const body = { task };
  if (task === "ask") body.question = $("question").value;
  if (task === "find") body.what = $("what").value;
  $("start").disabled = true;
  $("result").hidden = true;
  $("progress").hidden = false;
  $("p-status").textContent = "starting";
  $("p-frames").textContent = "0";
  $("p-units").textContent = "0";
  $("p-spent").textContent = "$0.0000";
  $("p-step").textContent = "";
  try {
    const player = $("player");
    if (state.file) {
      $("p-step").textContent = "Uploading";
      const form = new FormData();
      form.append("file", state.file);
      const upload = await (await api("/v1/videos", { method: "POST", body: form })).json();
      state.uploadId = upload.id;
      body.video = upload.id;
      player.src = URL.createObjectURL(state.file);
      state.blobUrls.push(player.src);
    } else {
      state.uploadId = null;
      body.url = url;
      player.src = url;
    }
    const run = await (await api("/v1/runs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    })).json();
    state.runId = run.id;
    $("p-status").textContent = run.status || "queued";
    await follow(run.id);
    const result = await (await api(`/v1/runs/${run.id}`)).json();
    $("p-status").textContent = result.status;
    if (result.report) renderReport(result.report);
    if (result.error) showError(typeof result.error === "string" ? result.error : (result.error.message || JSON.stringify(result.error)));
  } catch (e) {
    showError(e.message);
  } finally {
    $("start").disabled = false;
  }
}

function init() {
  $("key").value = localStorage.getItem(KEY_STORE) || "";
  $("key").addEventListener("input", () => localStorage.setItem(KEY_STORE, key()));
  $("file").addEventListener("change", () => chooseFile($("file").files[0]));
  $("url").addEventListener("input", () => { if ($("url").value) { state.file = null; $("file").value = ""; $("file-name").textContent = ""; } });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) chooseFile(e.dataTransfer.files[0]);
  });
  for (const radio of document.querySelectorAll("input[name=task]")) radio.addEventListener("change", onTaskChange);
  onTaskChange();
  $("start-form").addEventListener("submit", start);
  for (const button of document.querySelectorAll(".downloads button")) {
    button.addEventListener("click", () => download(button.dataset.format));
  }
}

init();
