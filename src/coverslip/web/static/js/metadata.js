// The viewer's information panel: what the image's file said (objective, acquisition, wavelengths,
// its place in the file or plate, the vendor's own key-values), each shown only when present.
//
// SECURITY: every string here came from a file someone uploaded; it reaches the page through
// textContent and attributes only, never innerHTML.

import { api, prefix } from "./common.js";

// PERF: the vendor's table can hold thousands of rows; draw this many, then more on request.
const PAGE_ROWS = 500;
// Sibling images whose names are looked up for their links; past this they are numbered.
const NAMED_SIBLINGS = 24;

const IMMERSIONS = [
  [/\boil\b/i, "Oil"],
  [/\bwater\b|\bW\b/, "Water"],
  [/\bglyc(?:erol|erin|erine)?\b/i, "Glycerol"],
  [/\bsilicon(?:e)?\b|\bsil\b/i, "Silicone oil"],
  [/\bair\b|\bdry\b/i, "Air"],
];

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function present(value) {
  return value !== undefined && value !== null && value !== "";
}

function number(value, digits = 6) {
  return String(Number(Number(value).toPrecision(digits)));
}

/** Return the lens name, magnification, NA and immersion an objective's name spells out. */
export function parseObjective(objective) {
  if (objective && typeof objective === "object") {
    return {
      name: objective.name ?? objective.lens ?? null,
      magnification: objective.nominalMagnification ?? objective.magnification ?? null,
      na: objective.lensNA ?? objective.na ?? null,
      immersion: objective.immersion ?? null,
    };
  }
  const name = String(objective);
  const magnification = name.match(/(\d+(?:\.\d+)?)\s*[x×]/i);
  const na = name.match(/[x×]\s*\/\s*(\d+(?:\.\d+)?)/i) || name.match(/\bN\.?A\.?\s*[=:]?\s*(\d+(?:\.\d+)?)/);
  const immersion = IMMERSIONS.find(([pattern]) => pattern.test(name));
  return {
    name,
    magnification: magnification ? magnification[1] : null,
    na: na ? na[1] : null,
    immersion: immersion ? immersion[1] : null,
  };
}

/** Return an ISO 8601 date and time as "YYYY-MM-DD hh:mm:ss" plus its zone, as the file gave it. */
export function formatDate(iso) {
  const found = String(iso).match(/^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d(?::\d\d)?)(?:[.,]\d+)?(Z|[+-]\d\d:?\d\d)?$/);
  if (!found) return String(iso);
  const zone = found[3] === "Z" ? " UTC" : found[3] ? ` UTC${found[3]}` : "";
  return `${found[1]} ${found[2]}${zone}`;
}

/** Return a well's name ("B3") from its 0-based row and column and the plate's labels. */
export function wellName(row, column, rowLabels, columnLabels) {
  const r = rowLabels?.[row] ?? (row < 26 ? String.fromCharCode(65 + row) : `R${row + 1}`);
  const c = columnLabels?.[column] ?? String(column + 1);
  return `${r}${c}`;
}

class Facts {
  constructor(list) {
    this.list = list;
  }

  add(term, value, field) {
    if (!present(value)) return null;
    const dd = el("dd", value instanceof Node ? undefined : value, { "data-field": field });
    if (value instanceof Node) dd.append(value);
    this.list.append(el("dt", term, { "data-for": field }), dd);
    return dd;
  }

  clear() {
    this.list.querySelectorAll("[data-field], [data-for]").forEach((node) => node.remove());
  }
}

function showAcquisition(data, meta) {
  const section = document.getElementById("acquisition");
  const facts = new Facts(document.getElementById("acquisition-list"));
  facts.clear();
  if (present(meta.objective)) {
    const lens = parseObjective(meta.objective);
    facts.add("Objective", lens.name, "objective");
    if (present(lens.magnification)) facts.add("Magnification", `${number(lens.magnification)}×`, "magnification");
    if (present(lens.na)) facts.add("NA", number(lens.na), "na");
    facts.add("Immersion", lens.immersion, "immersion");
  }
  if (present(meta.acquisitionDate)) {
    const time = el("time", formatDate(meta.acquisitionDate), { datetime: String(meta.acquisitionDate) });
    facts.add("Acquired", time, "acquired");
  }
  if (present(meta.timeIncrement)) facts.add("Time increment", `${number(meta.timeIncrement)} s`, "time-increment");
  const waves = document.getElementById("wavelengths");
  const body = waves.tBodies[0];
  body.replaceChildren();
  const channels = data.channels.filter((ch) => present(ch.excitationWave) || present(ch.emissionWave));
  for (const ch of channels) {
    const row = el("tr");
    row.append(
      el("th", ch.label, { scope: "row" }),
      el("td", present(ch.excitationWave) ? number(ch.excitationWave) : "–"),
      el("td", present(ch.emissionWave) ? number(ch.emissionWave) : "–"),
    );
    body.append(row);
  }
  waves.hidden = channels.length === 0;
  section.hidden = facts.list.children.length === 0 && waves.hidden;
}

async function siblingName(id) {
  try {
    return (await (await api(`/api/v2/images/${id}`)).json()).name;
  } catch (_) {
    return null;
  }
}

async function showFileset(imageId, meta, facts, fileName) {
  const kind = present(meta.kind) && meta.kind !== "image" ? meta.kind : null;
  if (present(meta.series)) facts.add("Series", meta.series, "series");
  if (kind) facts.add("Kind", kind, "kind");
  if (!present(meta.filesetId)) return;
  let ids;
  try {
    ids = (await (await api(`/api/v2/images/${imageId}`)).json()).fileset_images || [];
  } catch (_) {
    return;
  }
  const index = ids.indexOf(String(imageId));
  if (ids.length < 2 || index < 0) return;
  facts.add("In file", `Image ${index + 1} of ${ids.length} in ${fileName}`, "position");
  const nav = el("ol", undefined, { class: "siblings", "aria-label": `Images in ${fileName}` });
  const links = ids.map((id, i) => {
    const item = el("li");
    const link = el("a", `${i + 1}`, { href: `${prefix}/images/${id}`, "data-image-id": id });
    if (i === index) link.setAttribute("aria-current", "page");
    item.append(link);
    nav.append(item);
    return link;
  });
  facts.add("Images", nav, "siblings");
  const named = ids.slice(0, NAMED_SIBLINGS);
  const names = await Promise.all(named.map(siblingName));
  names.forEach((name, i) => {
    if (present(name)) {
      links[i].textContent = `${i + 1}. ${name}`;
      links[i].title = name;
    }
  });
}

async function showPlate(meta, facts) {
  if (!present(meta.plateId)) return;
  // NOTE: the grid of field 0 is the plate's own URL; other fields add theirs.
  const fieldPart = Number(meta.field) > 0 ? `${Number(meta.field)}/` : "";
  const url = `${prefix}/webgateway/plate/${meta.plateId}/${fieldPart}`;
  const link = el("a", present(meta.plateName) ? meta.plateName : `Plate ${meta.plateId}`, { href: url });
  facts.add("Plate", link, "plate");
  const well = facts.add("Well", wellName(meta.wellRow, meta.wellColumn), "well");
  if (present(meta.field)) facts.add("Field", `${Number(meta.field) + 1}`, "field");
  try {
    const grid = await (await api(`/webgateway/plate/${meta.plateId}/`)).json();
    well.textContent = wellName(meta.wellRow, meta.wellColumn, grid.rowlabels, grid.collabels);
  } catch (_) { /* the positional name stays */ }
}

class OriginalTable {
  constructor(entries) {
    this.section = document.getElementById("original");
    this.filter = document.getElementById("original-filter");
    this.count = document.getElementById("original-count");
    this.rows = document.getElementById("original-rows");
    this.more = document.getElementById("original-more");
    // PERF: lower-cased once, so filtering is a substring scan per entry.
    this.entries = entries.map(([key, value]) => [key, String(value), `${key}\u0000${value}`.toLowerCase()]);
    this.matches = this.entries;
    this.shown = 0;
    this.drawn = false;
    this.section.hidden = entries.length === 0;
    this.count.textContent = `${entries.length}`;
    this.filter.value = "";
    this.rows.replaceChildren();
    this.more.hidden = true;
  }

  bind() {
    this.section.addEventListener("toggle", () => { if (this.section.open && !this.drawn) this.apply(); });
    let pending = null;
    this.filter.addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(() => this.apply(), 80);
    });
    this.more.addEventListener("click", () => this.draw(this.shown + PAGE_ROWS));
  }

  apply() {
    const needle = this.filter.value.trim().toLowerCase();
    this.matches = needle ? this.entries.filter((entry) => entry[2].includes(needle)) : this.entries;
    this.rows.replaceChildren();
    this.shown = 0;
    this.draw(PAGE_ROWS);
  }

  draw(upTo) {
    this.drawn = true;
    const end = Math.min(upTo, this.matches.length);
    const fragment = document.createDocumentFragment();
    for (let i = this.shown; i < end; i += 1) {
      const [key, value] = this.matches[i];
      const row = el("tr", undefined, { role: "row" });
      row.append(el("th", key, { scope: "row", role: "rowheader" }), el("td", value, { role: "cell" }));
      fragment.append(row);
    }
    this.rows.append(fragment);
    this.shown = end;
    const total = this.entries.length;
    this.count.textContent = this.matches.length === total ? `${total}` : `${this.matches.length} of ${total}`;
    this.more.hidden = this.shown >= this.matches.length;
    this.more.textContent = `Show ${Math.min(PAGE_ROWS, this.matches.length - this.shown)} more`;
  }
}

let table = null;

/** Fill the panel from imgData: acquisition, the image's place in its file or plate, originals. */
export function showMetadata(data) {
  const meta = data.meta || {};
  const general = document.getElementById("general-list");
  const fileName = general.dataset.fileName || meta.imageName;
  const facts = new Facts(general);
  facts.clear();
  showAcquisition(data, meta);
  if (table === null) {
    table = new OriginalTable(Object.entries(meta.originalMetadata || {}));
    table.bind();
  }
  showFileset(data.id, meta, facts, fileName);
  showPlate(meta, facts);
}
