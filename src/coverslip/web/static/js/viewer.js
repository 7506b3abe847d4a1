// The deep-zoom viewer: OpenSeadragon over render_image_region tiles, with channel, Z/T,
// greyscale and projection controls that re-render the view without reloading the page.

import { api, prefix } from "./common.js";
import { addExport } from "./export.js";
import { addRois } from "./rois.js";
import { showMetadata } from "./metadata.js";
import { addReadout, addScaleBar } from "./overlays.js";

const element = document.getElementById("osd");
const imageId = element.dataset.imageId;
const canSave = element.dataset.canSave === "true";
const statusLine = document.getElementById("status");
const zInput = document.getElementById("z");
const tInput = document.getElementById("t");
const greyInput = document.getElementById("greyscale");
const projectionInput = document.getElementById("projection");
const channelBox = document.getElementById("channels");

const state = {
  z: 0, t: 0, model: "color", projection: "normal", projectionRange: null, channels: [], format: "jpeg",
  split: false,
};
let info = null;
let luts = [];
let viewer = null;
let updateRois = () => {};

function say(text) {
  statusLine.textContent = text;
}

function colorOrLut(ch) {
  return ch.lut ? ch.lut : ch.color;
}

// The p= of the view: "normal", or a method with its Z range ("intmax|2:5", 0-based).
function projectionParam() {
  const range = state.projection !== "normal" && state.projectionRange
    ? `|${state.projectionRange[0]}:${state.projectionRange[1]}` : "";
  return state.projection + range;
}

function renderQuery() {
  const c = state.channels
    .map((ch, i) => `${ch.active ? "" : "-"}${i + 1}|${ch.start}:${ch.end}$${colorOrLut(ch)}`)
    .join(",");
  const m = state.model === "greyscale" ? "g" : "c";
  const maps = state.channels.map((ch) => ({
    inverted: { enabled: ch.inverted },
    quantization: { family: ch.family, coefficient: ch.coefficient },
  }));
  return `c=${encodeURIComponent(c)}&m=${m}&p=${encodeURIComponent(projectionParam())}`
    + `&maps=${encodeURIComponent(JSON.stringify(maps))}`;
}

function tileSource() {
  const width = info.size.width;
  const height = info.size.height;
  const levels = info.levels || 1;
  const tile = info.tile_size ? info.tile_size.width : Math.max(width, height);
  const maxLevel = Math.max(0, Math.ceil(Math.log2(Math.max(width, height))));
  const query = renderQuery();
  const { z, t } = state;
  return {
    width,
    height,
    tileSize: tile,
    tileOverlap: 0,
    minLevel: Math.max(0, maxLevel - (levels - 1)),
    maxLevel,
    getTileUrl: (level, x, y) =>
      `${prefix}/webgateway/render_image_region/${imageId}/${z}/${t}/?tile=${maxLevel - level},${x},${y}&${query}&format=${state.format}`,
  };
}

// Split channels: each active channel in its own pane and the merge, rendered whole by the
// server (render_split_channel); the readout and the scale bar do not apply to it.
function splitSource() {
  const query = renderQuery();
  return {
    type: "image",
    url: `${prefix}/webgateway/render_split_channel/${imageId}/${state.z}/${state.t}/?${query}&format=${state.format}`,
  };
}

let pending = null;
function refresh() {
  element.classList.toggle("split-view", state.split);
  for (const c of histograms.keys()) paintHistogram(c);
  channelMarks();
  clearTimeout(pending);
  pending = setTimeout(() => {
    const previous = viewer.world.getItemAt(0);
    viewer.addTiledImage({
      tileSource: state.split ? splitSource() : tileSource(),
      success: (event) => {
        const drop = () => previous && viewer.world.getIndexOfItem(previous) >= 0 && viewer.world.removeItem(previous);
        event.item.addOnceHandler("fully-loaded-change", drop);
        setTimeout(drop, 4000);
      },
    });
    history.replaceState(null, "", `?${renderQuery()}&z=${state.z}&t=${state.t}`);
    changes.record();
  }, 120);
}

// Undo and redo of rendering changes, and settings copied from one image to paste on another:
// each is a rendering query (c, m, p) shown as the page shows a link's.
const changes = {
  past: [],
  future: [],
  shown: null,
  record() {
    const query = renderQuery();
    if (this.shown !== null && query !== this.shown) this.remember();
    this.shown = query;
    this.buttons();
  },
  // What is shown becomes undoable, before a new change (which ends what could be redone).
  remember() {
    this.past.push(this.shown);
    this.future.length = 0;
  },
  buttons() {
    document.getElementById("undo-change").disabled = !this.past.length;
    document.getElementById("redo-change").disabled = !this.future.length;
  },
  async show(query) {
    clearTimeout(pending); // a redraw still waiting would write the settings shown before
    history.replaceState(null, "", `${location.pathname}?${query}&z=${state.z}&t=${state.t}`);
    const { z, t } = state;
    await load();
    state.z = z;
    state.t = t;
    this.shown = renderQuery();
    this.buttons();
    refresh();
  },
  async step(from, to) {
    if (!from.length) return;
    to.push(this.shown);
    await this.show(from.pop());
  },
};

const COPIED = "coverslip.copied-settings";

function addSettingsHistory() {
  changes.shown = renderQuery();
  changes.buttons();
  document.getElementById("undo-change").addEventListener("click", () => changes.step(changes.past, changes.future));
  document.getElementById("redo-change").addEventListener("click", () => changes.step(changes.future, changes.past));
  document.getElementById("copy-settings").addEventListener("click", () => {
    const copied = { query: renderQuery(), channels: state.channels.length, name: info.meta.imageName };
    localStorage.setItem(COPIED, JSON.stringify(copied));
    say(`Settings copied; Paste settings applies them to another image of ${copied.channels} channel${copied.channels === 1 ? "" : "s"}.`);
  });
  document.getElementById("paste-settings").addEventListener("click", async () => {
    let copied = null;
    try { copied = JSON.parse(localStorage.getItem(COPIED)); } catch (_) { copied = null; }
    if (!copied) { say("No settings copied yet: Copy settings on another image first."); return; }
    if (copied.channels !== state.channels.length) {
      say(`Not pasted: the settings are for ${copied.channels} channels, this image has ${state.channels.length}.`);
      return;
    }
    changes.remember();
    try {
      await changes.show(copied.query);
      say(`Settings of ${copied.name} pasted${canSave ? "; Save keeps them" : ""}.`);
    } catch (error) {
      say(`Not pasted: ${error.message}`);
    }
  });
}

// Each channel's histogram on the shown plane or projection (log counts over the data's
// min..max), with its window drawn over it; fetched again when Z, T or the projection
// changes, redrawn when the window moves.
const histograms = new Map();
// The first view's tiles go first: histograms are asked once they are drawn (or after 1.5 s),
// so that a worker computing a histogram does not hold up the image.
let viewShown;
const firstView = new Promise((resolve) => { viewShown = resolve; });

function drawHistogram(canvas, c) {
  const bins = 128;
  const projected = state.projection !== "normal";
  const p = projected ? `&p=${encodeURIComponent(projectionParam())}` : "";
  const plane = projected ? `${projectionParam()},${state.t}` : `${state.z},${state.t}`;
  histograms.set(c, { canvas, data: null, plane });
  const url = `/webgateway/histogram_json/${imageId}/channel/${c}/?theZ=${state.z}&theT=${state.t}&bins=${bins}${p}`;
  firstView.then(() => api(url))
    .then((r) => r.json())
    .then(({ data }) => {
      const found = histograms.get(c);
      if (found && found.plane === plane) { found.data = data; paintHistogram(c); }
    })
    .catch(() => {});
}

function paintHistogram(c) {
  const { canvas, data } = histograms.get(c);
  const ch = state.channels[c];
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (data) {
    const peak = Math.log1p(Math.max(...data, 1));
    g.fillStyle = "#8aa0b8";
    const w = canvas.width / data.length;
    data.forEach((count, i) => {
      const h = (Math.log1p(count) / peak) * canvas.height;
      g.fillRect(i * w, canvas.height - h, Math.max(1, w), h);
    });
  }
  const span = ch.max - ch.min || 1;
  g.fillStyle = "#d9534f";
  for (const value of [ch.start, ch.end]) {
    const x = Math.round(((value - ch.min) / span) * (canvas.width - 1));
    if (x >= 0 && x < canvas.width) g.fillRect(x, 0, 1, canvas.height);
  }
  canvas.dataset.window = `${ch.start}:${ch.end}`;
  canvas.dataset.plane = histograms.get(c).plane;
}

function redrawHistograms() {
  for (const [c, { canvas }] of histograms) drawHistogram(canvas, c);
}

// The lookup tables as strips (luts_png: 10 rows each, in the order of luts/), for swatches.
const lutStrips = new Image();
lutStrips.src = `${prefix}/webgateway/luts_png/`;
lutStrips.addEventListener("load", () => channelMarks());

// Each channel's swatch (its colour, or its table from dark to bright) and, in greyscale,
// which channel is shown: the first active one. Colours and tables do not apply then.
function channelMarks() {
  const grey = state.model === "greyscale";
  const shown = state.channels.findIndex((ch) => ch.active);
  channelBox.querySelectorAll(".channel").forEach((box, c) => {
    const ch = state.channels[c];
    const swatch = box.querySelector(".swatch");
    const g = swatch.getContext("2d");
    const row = luts.indexOf(ch.lut);
    if (ch.lut && row >= 0 && lutStrips.complete && lutStrips.naturalWidth) {
      g.imageSmoothingEnabled = false;
      g.drawImage(lutStrips, 0, row * 10, 256, 10, 0, 0, 256, 10);  // one colour a column
    } else {
      g.fillStyle = `#${ch.color}`;
      g.fillRect(0, 0, swatch.width, swatch.height);
    }
    swatch.dataset.shows = ch.lut || ch.color;
    box.querySelector(".color").disabled = grey;
    box.querySelector(".lut").disabled = grey;
    box.classList.toggle("not-shown", grey && c !== shown);
    box.querySelector(".grey-note").textContent = !grey ? ""
      : c === shown ? "Shown in grey (greyscale shows the first active channel)"
        : ch.active ? "Not shown in greyscale" : "";
  });
}

let imported = null;
// The settings the import gave (fetched once, for the Imported window preset).
function importedSettings() {
  imported = imported || api(`/webgateway/imgData/${imageId}/?getDefaults=true`).then((r) => r.json());
  return imported;
}

function channelControls() {
  channelBox.replaceChildren();
  histograms.clear();
  state.channels.forEach((ch, c) => {
    const box = document.createElement("div");
    box.className = "channel";
    const step = info.meta.pixelsType.startsWith("float") ? (ch.max - ch.min) / 1000 || 0.001 : 1;
    box.innerHTML = `
      <div class="channel-head">
        <label><input type="checkbox" class="active"> <span class="label"></span></label>
        <input type="color" class="color">
        <select class="lut"><option value="">colour</option></select>
        <canvas class="swatch" width="256" height="10" aria-hidden="true"></canvas>
      </div>
      <p class="grey-note"></p>
      <canvas class="histogram" width="240" height="36" aria-hidden="true"></canvas>
      <div class="mapping">
        <label><input type="checkbox" class="invert"> Invert</label>
        <select class="family"><option value="linear">linear</option><option value="polynomial">polynomial</option>
          <option value="exponential">exponential</option><option value="logarithmic">logarithmic</option></select>
        <input type="number" class="coefficient" min="0.1" max="10" step="0.1">
      </div>
      <label class="range">Start <input type="range" class="start"> <input type="number" class="start-num"></label>
      <label class="range">End <input type="range" class="end"> <input type="number" class="end-num"></label>
      <select class="preset"><option value="">Window…</option><option value="data">Data min–max</option>
        <option value="type">Full range of the pixel type</option><option value="imported">Imported</option></select>`;
    box.querySelector(".label").textContent = ch.label;
    const active = box.querySelector(".active");
    const color = box.querySelector(".color");
    const lut = box.querySelector(".lut");
    const start = box.querySelector(".start");
    const end = box.querySelector(".end");
    active.checked = ch.active;
    active.setAttribute("aria-label", `Show channel ${ch.label}`);
    color.value = `#${ch.color}`;
    color.setAttribute("aria-label", `Colour of channel ${ch.label}`);
    lut.setAttribute("aria-label", `Lookup table of channel ${ch.label}`);
    for (const name of luts) lut.add(new Option(name.replace(/\.lut$/, ""), name));
    lut.value = ch.lut || "";
    // The slider spans the data; a window set past it (typed, or a preset) widens it.
    const show = (key) => {
      const slider = box.querySelector(`.${key}`);
      slider.min = Math.min(ch.min, ch.start);
      slider.max = Math.max(ch.max, ch.end);
      slider.value = ch[key];
      box.querySelector(`.${key}-num`).value = String(Number(ch[key].toPrecision(8)));
    };
    const setWindow = (from, to) => {
      if (!(from < to)) return false;
      ch.start = from;
      ch.end = to;
      show("start");
      show("end");
      refresh();
      return true;
    };
    for (const [input, key] of [[start, "start"], [end, "end"]]) {
      const typed = box.querySelector(`.${key}-num`);
      input.step = step;
      typed.step = "any";
      input.setAttribute("aria-label", `Window ${key} of channel ${ch.label}`);
      typed.setAttribute("aria-label", `Window ${key} value of channel ${ch.label}`);
      show(key);
      input.addEventListener("input", () => {
        ch[key] = Number(input.value);
        typed.value = input.value;
        refresh();
      });
      typed.addEventListener("change", () => {
        const value = Number(typed.value);
        const ok = typed.value !== "" && Number.isFinite(value)
          && setWindow(key === "start" ? value : ch.start, key === "end" ? value : ch.end);
        typed.setCustomValidity(ok ? "" : "the start must stay below the end");
        if (!ok) show(key);
      });
    }
    const preset = box.querySelector(".preset");
    preset.setAttribute("aria-label", `Window preset of channel ${ch.label}`);
    if (info.meta.pixelsType.startsWith("float")) preset.querySelector('option[value="type"]').remove();
    preset.addEventListener("change", async () => {
      const which = preset.value;
      preset.value = "";
      if (which === "data") setWindow(ch.min, ch.max);
      if (which === "type") setWindow(info.pixel_range[0], info.pixel_range[1]);
      if (which === "imported") {
        const given = (await importedSettings()).channels[c].window;
        setWindow(given.start, given.end);
      }
    });
    active.addEventListener("change", () => { ch.active = active.checked; refresh(); });
    // Inversion and the quantization curve (OMERO's maps=): the coefficient is linear's 1.
    const invert = box.querySelector(".invert");
    const family = box.querySelector(".family");
    const coefficient = box.querySelector(".coefficient");
    invert.checked = ch.inverted;
    family.value = ch.family;
    coefficient.value = String(ch.coefficient);
    coefficient.disabled = ch.family === "linear";
    invert.setAttribute("aria-label", `Invert channel ${ch.label}`);
    family.setAttribute("aria-label", `Curve of channel ${ch.label}`);
    coefficient.setAttribute("aria-label", `Curve coefficient of channel ${ch.label}`);
    invert.addEventListener("change", () => { ch.inverted = invert.checked; refresh(); });
    family.addEventListener("change", () => {
      ch.family = family.value;
      coefficient.disabled = ch.family === "linear";
      refresh();
    });
    coefficient.addEventListener("change", () => {
      const value = Number(coefficient.value);
      const ok = Number.isFinite(value) && value > 0 && value <= 10;
      coefficient.setCustomValidity(ok ? "" : "a coefficient above 0, at most 10");
      if (ok) { ch.coefficient = value; refresh(); }
    });
    color.addEventListener("input", () => { ch.color = color.value.slice(1).toUpperCase(); ch.lut = ""; lut.value = ""; refresh(); });
    lut.addEventListener("change", () => { ch.lut = lut.value; refresh(); });
    channelBox.append(box);
    drawHistogram(box.querySelector(".histogram"), c);
  });
  channelMarks();
}

function applyInfo(data) {
  info = data;
  state.z = Number(new URLSearchParams(location.search).get("z") ?? data.rdefs.defaultZ);
  state.t = Number(new URLSearchParams(location.search).get("t") ?? data.rdefs.defaultT);
  state.model = data.rdefs.model;
  const [method, range] = String(data.rdefs.projection).split("|");
  state.projection = method;
  state.projectionRange = range ? range.split(":").map(Number) : null;
  state.channels = data.channels.map((ch) => ({
    label: ch.label, active: ch.active, color: ch.color, lut: ch.lut || "",
    inverted: Boolean(ch.inverted), family: ch.family || "linear", coefficient: Number(ch.coefficient ?? 1),
    start: ch.window.start, end: ch.window.end, min: ch.window.min, max: ch.window.max,
  }));
  if (zInput) { zInput.value = state.z; document.getElementById("z-out").value = state.z + 1; }
  if (tInput) { tInput.value = state.t; document.getElementById("t-out").value = state.t + 1; }
  greyInput.checked = state.model === "greyscale";
  if (projectionInput) {
    projectionInput.value = state.projection;
    const [first, last] = state.projectionRange || [0, info.size.z - 1];
    document.getElementById("projection-start").value = first + 1;
    document.getElementById("projection-end").value = last + 1;
    projectionControls();
  }
  channelControls();
}

// Read the image and its settings: the URL's c, m and p over the saved ones, or (imported)
// the settings the import gave.
async function fetchInfo(imported = false) {
  const keep = new URLSearchParams(location.search);
  const wanted = imported ? ["getDefaults=true"]
    : ["c", "m", "p", "maps"].filter((k) => keep.has(k)).map((k) => `${k}=${encodeURIComponent(keep.get(k))}`);
  const query = wanted.join("&");
  return (await api(`/webgateway/imgData/${imageId}/${query ? `?${query}` : ""}`)).json();
}

async function load(imported = false) {
  applyInfo(await fetchInfo(imported));
}

// Step Z or T; false when the image has no such axis (the key then does what it did before).
function stepPlane(input, key, delta) {
  if (!input) return false;
  const next = Math.min(Number(input.max), Math.max(0, state[key] + delta));
  if (next !== state[key]) {
    input.value = next;
    input.dispatchEvent(new Event("input"));
  }
  return true;
}

// Plane keys, and "?" for the list of shortcuts. They are taken in the capture phase, before
// OpenSeadragon's own keys on the image (which pan with the arrows) or the page's scrolling,
// so a key that steps a plane does nothing else.
// Projection over a Z range (1-based in the page, 0-based in the query, as OMERO's p=).
function projectionControls() {
  const off = state.projection === "normal";
  for (const id of ["projection-start", "projection-end"]) document.getElementById(id).disabled = off;
  if (zInput) zInput.disabled = !off;
}

function addProjection() {
  const first = document.getElementById("projection-start");
  const last = document.getElementById("projection-end");
  const apply = () => {
    const a = Math.round(Number(first.value));
    const b = Math.round(Number(last.value));
    const ok = a >= 1 && b <= info.size.z && a <= b;
    last.setCustomValidity(ok ? "" : `from 1 to ${info.size.z}, the first at most the last`);
    if (!ok) return;
    state.projection = projectionInput.value;
    state.projectionRange = a === 1 && b === info.size.z ? null : [a - 1, b - 1];
    projectionControls();
    refresh();
    redrawHistograms();
  };
  projectionInput.addEventListener("change", apply);
  first.addEventListener("change", apply);
  last.addEventListener("change", apply);
}

function addShortcuts() {
  const dialog = document.getElementById("shortcuts");
  const help = () => { if (!dialog.open) dialog.showModal(); return true; };
  document.getElementById("show-shortcuts").addEventListener("click", help);
  const keys = {
    PageUp: () => stepPlane(zInput, "z", 1),
    ArrowUp: () => stepPlane(zInput, "z", 1),
    PageDown: () => stepPlane(zInput, "z", -1),
    ArrowDown: () => stepPlane(zInput, "z", -1),
    ArrowRight: () => stepPlane(tInput, "t", 1),
    ArrowLeft: () => stepPlane(tInput, "t", -1),
    "?": help,
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || dialog.open) return;
    if (event.target.closest?.("input, select, textarea, button, summary")) return;
    const action = keys[event.key];
    if (action && action()) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, { capture: true });
}

async function main() {
  try {
    // Both at once; the channel controls need the table names before the image's settings.
    const [tables, data] = await Promise.all([api("/webgateway/luts/"), fetchInfo()]);
    luts = (await tables.json()).luts.map((l) => l.name);
    applyInfo(data);
  } catch (error) {
    say(`Cannot load the image: ${error.message}`);
    return;
  }
  try {
    showMetadata(info);
  } catch (error) {
    say(`Cannot show the metadata: ${error.message}`);
  }
  // ?iiif=1 shows the image through the IIIF Image API (saved settings, no live controls).
  const viaIiif = new URLSearchParams(location.search).get("iiif") === "1";
  viewer = OpenSeadragon({
    element,
    prefixUrl: `${prefix}/static/vendor/openseadragon/images/`,
    tileSources: viaIiif ? `${location.origin}${prefix}/iiif/3/${imageId}/info.json` : tileSource(),
    showNavigator: true,
    maxZoomPixelRatio: 4,
    // OpenSeadragon 6's default WebGL drawer copies every frame back to a 2D canvas; the
    // canvas drawer draws there at once (measured in bench/viewer_first_tiles.py).
    drawer: "canvas",
    crossOriginPolicy: false,
    gestureSettingsMouse: { clickToZoom: false },
  });
  viewer.addOnceHandler("open", () => viewer.world.getItemAt(0).addOnceHandler("fully-loaded-change", viewShown));
  setTimeout(viewShown, 1500);
  addScaleBar(viewer, info.pixel_size && info.pixel_size.x);
  addReadout(viewer, imageId, info.size, () => (state.split ? null : { z: state.z, t: state.t }));
  addRois(viewer, imageId, info.size, () => ({ z: state.z, t: state.t })).then((update) => { updateRois = update; });
  for (const [input, key] of [[zInput, "z"], [tInput, "t"]]) {
    input?.addEventListener("input", () => {
      state[key] = Number(input.value);
      document.getElementById(`${key}-out`).value = state[key] + 1;
      redrawHistograms();
      updateRois();
      refresh();
    });
  }
  greyInput.addEventListener("change", () => { state.model = greyInput.checked ? "greyscale" : "color"; refresh(); });
  if (projectionInput) addProjection();
  addShortcuts();
  addSettingsHistory();
  const baseName = document.querySelector("h1.image-name").textContent.trim().replace(/[^\w.-]+/g, "_");
  addExport(viewer, imageId, baseName, () => ({ query: renderQuery(), z: state.z, t: state.t }), say);
  addViewTools();
  const save = () => api(`/webgateway/saveImgRDef/${imageId}/?${renderQuery()}&z=${state.z + 1}&t=${state.t + 1}`, { method: "POST" });
  document.getElementById("save")?.addEventListener("click", async () => {
    try {
      await save();
      say("Saved.");
    } catch (error) {
      say(`Not saved: ${error.message}`);
    }
  });
  // "Save to all": these settings saved here, then copied to every image of the dataset
  // (OMERO.web's copyImgRDef_json with to_type=dataset); the server says which took them.
  const saveToAll = document.getElementById("save-to-all");
  saveToAll?.addEventListener("click", async () => {
    const { datasetId, datasetName } = saveToAll.dataset;
    if (!confirm(`Save these settings on every image of ${datasetName} you may change?`)) return;
    try {
      await save();
      const body = new URLSearchParams({ to_type: "dataset", toids: datasetId });
      const done = await (await api(`/webgateway/copyImgRDef_json/?fromid=${imageId}`, { method: "POST", body })).json();
      const left = done.False.length;
      say(`Saved on ${done.True.length} images of ${datasetName}` +
        (left ? `; ${left} kept their own (other channels or pixel type, or not yours to change).` : "."));
    } catch (error) {
      say(`Not saved: ${error.message}`);
    }
  });
  // Reset shows the imported settings; nothing on the server changes until Save, and Undo
  // brings back what was shown before.
  const undo = document.getElementById("undo");
  document.getElementById("reset").addEventListener("click", async () => {
    const before = { url: location.search, query: renderQuery(), z: state.z, t: state.t };
    try {
      history.replaceState(null, "", location.pathname);
      await load(true);
      refresh();
      say(canSave ? "Showing the imported settings; Save keeps them." : "Showing the imported settings.");
      undo.hidden = false;
      undo.onclick = async () => {
        undo.hidden = true;
        history.replaceState(null, "", `${location.pathname}?${before.query}`);
        await load();
        history.replaceState(null, "", `${location.pathname}${before.url}`);
        for (const [input, key] of [[zInput, "z"], [tInput, "t"]]) {
          if (input) input.value = state[key] = before[key];
        }
        refresh();
        say("Back as before.");
      };
    } catch (error) {
      say(`Not reset: ${error.message}`);
    }
  });
  document.getElementById("copy-link").addEventListener("click", async () => {
    const link = `${location.origin}${location.pathname}?${renderQuery()}&z=${state.z}&t=${state.t}`;
    try {
      await navigator.clipboard.writeText(link);
      say("Link copied.");
    } catch (_) {
      say(link);
    }
  });
}

// Rotation, mirror, smoothing, lossless tiles and playing through T (or Z) as a movie.
function addViewTools() {
  const turn = (degrees) => viewer.viewport.setRotation((viewer.viewport.getRotation() + degrees + 360) % 360);
  document.getElementById("rotate-left").addEventListener("click", () => turn(-90));
  document.getElementById("rotate-right").addEventListener("click", () => turn(90));
  const flip = document.getElementById("flip");
  flip.addEventListener("click", () => {
    viewer.viewport.toggleFlip();
    flip.setAttribute("aria-pressed", String(viewer.viewport.getFlip()));
  });
  const nearest = document.getElementById("nearest");
  nearest.addEventListener("change", () => viewer.drawer.setImageSmoothingEnabled(!nearest.checked));
  const split = document.getElementById("split");
  split.addEventListener("change", () => { state.split = split.checked; refresh(); });
  const png = document.getElementById("png");
  png.addEventListener("change", () => { state.format = png.checked ? "png" : "jpeg"; refresh(); });
  const play = document.getElementById("play");
  if (!play) return;
  const [input, key] = tInput ? [tInput, "t"] : [zInput, "z"];
  const fps = document.getElementById("fps");
  let timer = null;
  const stop = () => { clearInterval(timer); timer = null; play.setAttribute("aria-pressed", "false"); };
  play.addEventListener("click", () => {
    if (timer) { stop(); return; }
    const rate = Math.min(30, Math.max(1, Number(fps.value) || 5));
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(() => {
      input.value = (state[key] + 1) % (Number(input.max) + 1);
      input.dispatchEvent(new Event("input"));
    }, 1000 / rate);
  });
}

window.addEventListener("load", main);
