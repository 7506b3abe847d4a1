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
    xhr.onload = () => (xhr.status < 300 ? resolve() : reject(new Error(parseError(xhr))));
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

async function follow(id, state) {
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
    state.textContent = image.status;
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
    await put(`/api/v2/images/${created.id}/file`, file, (done) => { bar.value = Math.round(done * 100); });
    bar.value = 100;
    state.textContent = "importing";
    await follow(created.id, state);
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
