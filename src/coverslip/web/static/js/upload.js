// Upload files through the images API with a progress bar each, then follow their import.

import { api, prefix, csrf } from "./common.js";

const drop = document.getElementById("drop");
const input = document.getElementById("files");
const list = document.getElementById("uploads");
const datasetInput = document.getElementById("dataset");

const FORMATS = { tif: "tiff", tiff: "tiff", btf: "tiff", png: "png", jpg: "jpeg", jpeg: "jpeg", npy: "npy" };

function diskFormat(name) {
  const lower = name.toLowerCase();
  if (lower.endsWith(".ome.tif") || lower.endsWith(".ome.tiff")) return "ome-tiff";
  return FORMATS[lower.split(".").pop()] || "tiff";
}

function row(file) {
  const item = document.createElement("li");
  item.innerHTML = `<span class="name"></span><progress max="100" value="0"></progress><span class="state">waiting</span>`;
  item.querySelector(".name").textContent = file.name;
  list.append(item);
  return item;
}

function put(url, file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", prefix + url);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    if (csrf) xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.upload.onprogress = (event) => event.lengthComputable && progress(event.loaded / event.total);
    xhr.onload = () => (xhr.status < 300
      ? resolve(xhr.getResponseHeader("Coverslip-Job"))
      : reject(new Error(parseError(xhr))));
    xhr.onerror = () => reject(new Error("the connection failed"));
    xhr.send(file);
  });
}

function parseError(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    return body.description || body.title || `${xhr.status}`;
  } catch (_) {
    return `${xhr.status} ${xhr.statusText}`;
  }
}

// What the import job says of itself: waiting for a worker, or how far it got.
function describe(task) {
  const job = task && task.coverslip;
  if (!job || job.state === "queued") return "waiting for a worker";
  const { done, total, eta_seconds: eta } = job.progress;
  let text = job.attempts > 1 ? `importing (attempt ${job.attempts})` : "importing";
  if (total) text += ` ${Math.floor((100 * done) / total)}%`;
  if (eta !== null && eta !== undefined) text += `, ${Math.ceil(eta)} s left`;
  return text;
}

async function follow(id, job, state, bar) {
  for (;;) {
    const image = await (await api(`/api/v2/images/${id}`)).json();
    if (image.status === "active") {
      state.innerHTML = `<a href="${prefix}/images/${id}">active — open</a>`;
      return;
    }
    if (image.status === "killed" || image.status === "queued") {
      state.textContent = `failed: ${image.message || image.status}`;
      state.classList.add("error");
      return;
    }
    const task = job ? await (await api(`/api/v2/tasks/${job}`)).json() : null;
    state.textContent = describe(task);
    const progress = task && task.coverslip && task.coverslip.progress;
    if (progress && progress.total) bar.value = Math.floor((100 * progress.done) / progress.total);
    await new Promise((done) => setTimeout(done, 500));
  }
}

async function upload(file) {
  const item = row(file);
  const bar = item.querySelector("progress");
  const state = item.querySelector(".state");
  try {
    const body = { name: file.name, disk_format: diskFormat(file.name), container_format: "bare" };
    if (datasetInput.value.trim()) body.dataset = datasetInput.value.trim();
    const created = await (await api("/api/v2/images", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    state.textContent = "uploading";
    const job = await put(`/api/v2/images/${created.id}/file`, file, (done) => { bar.value = Math.round(done * 100); });
    bar.value = 0;
    state.textContent = "waiting for a worker";
    await follow(created.id, job, state, bar);
  } catch (error) {
    state.textContent = `failed: ${error.message}`;
    state.classList.add("error");
  }
}

function take(files) {
  [...files].forEach(upload);
}

drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); take(event.dataTransfer.files); });
drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") input.click(); });
input.addEventListener("change", () => take(input.files));
