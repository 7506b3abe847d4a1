// A grid page: thumbnails loaded in batches as they come into view, at the size the slider
// picks, and what signed-in users do with the images they select (move, download, compare,
// delete) through the images API.

import { api, prefix } from "./common.js";

const grid = document.getElementById("grid");
const slider = document.getElementById("thumb-size");
const batch = Number(grid?.dataset.batch || 50);
const SIZE_KEY = "coverslip.thumb-size";
// Thumbnails are asked for at these sides only, so the cache serves every visitor the same.
const SIZES = [64, 96, 128, 160, 192, 224, 256];
let size = Number(grid?.dataset.thumbSize || 96);
const waiting = new Set();
let timer = null;

async function flush() {
  timer = null;
  const ids = [...waiting].slice(0, batch);
  ids.forEach((id) => waiting.delete(id));
  if (!ids.length) return;
  const query = ids.map((id) => `id=${id}`).join("&");
  try {
    const response = await api(`/webgateway/get_thumbnails/${size}/?${query}`);
    const thumbs = await response.json();
    for (const id of ids) {
      const img = grid.querySelector(`img[data-id="${id}"]`);
      if (!img) continue;
      if (thumbs[id]) img.src = thumbs[id];
      else img.closest(".tile").classList.add("unavailable");
    }
  } catch (error) {
    ids.forEach((id) => grid.querySelector(`img[data-id="${id}"]`)?.closest(".tile").classList.add("unavailable"));
  }
  if (waiting.size) schedule();
}

function schedule() {
  if (!timer) timer = setTimeout(flush, 30);
}

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    observer.unobserve(entry.target);
    waiting.add(entry.target.dataset.id);
  }
  schedule();
}, { rootMargin: "400px" });

function resize(side) {
  size = SIZES.includes(side) ? side : size;
  grid.style.setProperty("--thumb", `${size}px`);
  grid.querySelectorAll("img[data-id]").forEach((img) => {
    img.width = size;
    img.height = size;
    observer.observe(img);
  });
}

if (grid) {
  const stored = Number(localStorage.getItem(SIZE_KEY));
  if (slider && SIZES.includes(stored)) slider.value = String(stored);
  resize(slider ? Number(slider.value) : size);
  slider?.addEventListener("change", () => {
    localStorage.setItem(SIZE_KEY, slider.value);
    resize(Number(slider.value));
  });
}

// -- selection and what is done with it ---------------------------------------------------

const selection = document.getElementById("selection");
const PATCH = "application/openstack-images-v2.1-json-patch";

function picked() {
  return [...grid.querySelectorAll(".pick:checked")].map((box) => Number(box.value));
}

function say(text) {
  document.getElementById("selection-status").textContent = text;
}

function updateSelection() {
  const ids = picked();
  document.getElementById("selected-count").textContent = `${ids.length} selected`;
  document.getElementById("selection-actions").hidden = ids.length === 0;
  document.getElementById("compare-selected").hidden = ids.length < 2 || ids.length > 4;
  const all = grid.querySelectorAll(".pick");
  const selectAll = document.getElementById("select-all");
  selectAll.checked = ids.length > 0 && ids.length === all.length;
  selectAll.indeterminate = ids.length > 0 && ids.length < all.length;
  grid.querySelectorAll(".tile").forEach((tile) => {
    tile.classList.toggle("selected", Boolean(tile.querySelector(".pick")?.checked));
  });
}

/** Run ``act`` on each selected image in turn; say how many worked and why others did not. */
async function each(verb, act) {
  const ids = picked();
  const failed = [];
  for (const id of ids) {
    try {
      await act(id);
    } catch (error) {
      const name = grid.querySelector(`.tile[data-id="${id}"] .tile-name`)?.textContent || `image ${id}`;
      failed.push(`${name}: ${error.message}`);
    }
  }
  const done = ids.length - failed.length;
  say(`${verb} ${done} of ${ids.length}.${failed.length ? ` Not ${verb.toLowerCase()}: ${failed.join("; ")}` : ""}`);
  return done;
}

async function fillDatasets() {
  const select = document.getElementById("move-to");
  try {
    const { datasets } = await (await api("/api/v2/datasets")).json();
    for (const dataset of datasets.filter((d) => d.can_add)) {
      const option = document.createElement("option");
      option.value = String(dataset.id);
      option.textContent = dataset.name;
      select.append(option);
    }
  } catch (error) {
    say(`The datasets could not be listed: ${error.message}`);
  }
}

if (selection) {
  grid.addEventListener("change", (event) => {
    if (event.target.classList.contains("pick")) updateSelection();
  });
  document.getElementById("select-all").addEventListener("change", (event) => {
    grid.querySelectorAll(".pick").forEach((box) => { box.checked = event.target.checked; });
    updateSelection();
  });
  fillDatasets();
  document.getElementById("move").addEventListener("click", async () => {
    const target = document.getElementById("move-to").value;
    if (!target) { say("Choose the dataset to move them into."); return; }
    const value = target === "none" ? null : Number(target);
    const body = JSON.stringify([{ op: "replace", path: "/dataset", value }]);
    const moved = await each("Moved", (id) => api(`/api/v2/images/${id}`, {
      method: "PATCH", headers: { "Content-Type": PATCH }, body,
    }));
    if (moved) setTimeout(() => window.location.reload(), 800);
  });
  document.getElementById("download-selected").addEventListener("click", async () => {
    // One original as it is; several in one zip, as OMERO.web's archived_files/?image=….
    const ids = picked();
    const url = ids.length === 1 ? `/webgateway/archived_files/download/${ids[0]}/`
      : `/webgateway/archived_files/download/?${ids.map((id) => `image=${id}`).join("&")}`;
    try {
      await api(url, { method: "HEAD" });  // a refusal is said here, not as a broken file
    } catch (error) {
      say(`Not downloaded: ${error.message}`);
      return;
    }
    const link = document.createElement("a");
    link.href = prefix + url;
    link.download = "";
    document.body.append(link);
    link.click();
    link.remove();
    say(ids.length === 1 ? "Downloading the original." : `Downloading ${ids.length} originals in one zip.`);
  });
  document.getElementById("compare-selected").addEventListener("click", () => {
    window.location.href = `${prefix}/compare?${picked().map((id) => `id=${id}`).join("&")}`;
  });
  const dialog = document.getElementById("confirm-delete");
  document.getElementById("delete-selected").addEventListener("click", () => {
    const count = picked().length;
    document.getElementById("confirm-delete-text").textContent =
      `Delete ${count} image${count === 1 ? "" : "s"} and ${count === 1 ? "its" : "their"} original files? This cannot be undone.`;
    dialog.showModal();
  });
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "delete") return;
    const deleted = await each("Deleted", (id) => api(`/api/v2/images/${id}`, { method: "DELETE" }));
    if (deleted) setTimeout(() => window.location.reload(), 800);
  });
  updateSelection();
}
