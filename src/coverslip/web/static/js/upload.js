// Upload files through the images API with a progress bar each, then follow their import.

import { api, prefix, csrf } from "./common.js";

const drop = document.getElementById("drop");
const input = document.getElementById("files");
const list = document.getElementById("uploads");
const datasetChoice = document.getElementById("dataset");
const newDatasetBox = document.getElementById("new-dataset-box");
const newDatasetName = document.getElementById("new-dataset");
let created = null; // the new dataset, made once for every file dropped with it chosen

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

// The datasets the user may add images to, as choices.
async function loadDatasets() {
  const { datasets } = await (await api("/api/v2/datasets")).json();
  const last = datasetChoice.querySelector('option[value="new"]');
  for (const dataset of datasets.filter((d) => d.can_add)) {
    const option = document.createElement("option");
    option.value = String(dataset.id);
    option.textContent = dataset.name;
    datasetChoice.insertBefore(option, last);
  }
}

datasetChoice.addEventListener("change", () => {
  newDatasetBox.hidden = datasetChoice.value !== "new";
  if (!newDatasetBox.hidden) newDatasetName.focus();
});
newDatasetName.addEventListener("input", () => { created = null; });

// Return the id of the dataset the uploads go into (null for none), making a new one once.
function chosenDataset() {
  if (datasetChoice.value === "") return Promise.resolve(null);
  if (datasetChoice.value !== "new") return Promise.resolve(Number(datasetChoice.value));
  const name = newDatasetName.value.trim();
  if (!name) return Promise.reject(new Error("give the new dataset a name first"));
  created = created || api("/api/v2/datasets", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }),
  }).then((answer) => answer.json()).then((dataset) => {
    const option = document.createElement("option");
    option.value = String(dataset.id);
    option.textContent = dataset.name;
    datasetChoice.insertBefore(option, datasetChoice.querySelector('option[value="new"]'));
    return dataset.id;
  });
  created.catch(() => { created = null; });
  return created;
}

function put(url, file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    // The CLI refuses bytes imported before; so does the upload page.
    xhr.open("PUT", `${prefix}${url}?duplicates=refuse`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Content-Disposition", `attachment; filename*=UTF-8''${encodeURIComponent(file.name)}`);
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
      throw new Error(image.message || `the import ended ${image.status}`);
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
  let image = null;
  try {
    const body = { name: file.name, disk_format: diskFormat(file.name), container_format: "bare" };
    const dataset = await chosenDataset();
    if (dataset !== null) body.dataset = dataset;
    image = await (await api("/api/v2/images", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    state.textContent = "uploading";
    const job = await put(`/api/v2/images/${image.id}/file`, file, (done) => { bar.value = Math.round(done * 100); });
    bar.value = 0;
    state.textContent = "waiting for a worker";
    await follow(image.id, job, state, bar);
  } catch (error) {
    state.textContent = `failed: ${error.message}`;
    state.classList.add("error");
    // As a failed CLI import, a failed upload leaves no image behind.
    if (image) api(`/api/v2/images/${image.id}`, { method: "DELETE" }).catch(() => {});
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
loadDatasets().catch((error) => {
  datasetChoice.title = `the datasets could not be read: ${error.message}`;
});
