// Load the thumbnails of a dataset page in batches, as they come into view.

import { api } from "./common.js";

const grid = document.getElementById("grid");
const size = Number(grid?.dataset.thumbSize || 96);
const batch = Number(grid?.dataset.batch || 50);
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

if (grid) {
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      waiting.add(entry.target.dataset.id);
    }
    schedule();
  }, { rootMargin: "400px" });
  grid.querySelectorAll("img[data-id]").forEach((img) => observer.observe(img));
}
