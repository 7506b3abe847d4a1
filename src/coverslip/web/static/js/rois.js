// Regions of interest over the image (get_rois_json), drawn in SVG in image pixels, and listed
// with each channel's statistics inside the shape (shape_stats, all of a plane at once) for the
// plane shown.

import { api, prefix } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";

function element(name, attrs) {
  const made = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) made.setAttribute(key, String(value));
  return made;
}

function drawn(shape, imageId) {
  const stroke = { stroke: shape.strokeColor || "#ffff00", "vector-effect": "non-scaling-stroke" };
  const fill = shape.fillColor && shape.fillAlpha ? shape.fillColor : "none";
  const paint = { ...stroke, fill, "fill-opacity": shape.fillAlpha ?? 0, "stroke-width": 2 };
  switch (shape.type) {
    case "Rectangle":
      return element("rect", { x: shape.x, y: shape.y, width: shape.width, height: shape.height, ...paint });
    case "Ellipse":
      return element("ellipse", { cx: shape.x, cy: shape.y, rx: shape.radiusX, ry: shape.radiusY, ...paint });
    case "Polygon":
      return element("polygon", { points: shape.points, ...paint });
    case "Polyline":
      return element("polyline", { points: shape.points, ...paint, fill: "none" });
    case "Line":
      return element("line", { x1: shape.x1, y1: shape.y1, x2: shape.x2, y2: shape.y2, ...paint });
    case "Point":
      return element("circle", { cx: shape.x, cy: shape.y, r: 3, ...paint });
    case "Mask": // a label image's pixels, drawn by the server in the label's colour
      return element("image", {
        href: `${prefix}/webgateway/render_shape_mask/${imageId}/${shape.id}/`,
        x: shape.x, y: shape.y, width: shape.width, height: shape.height,
        preserveAspectRatio: "none", style: "image-rendering: pixelated",
      });
    default: {
      const text = element("text", { x: shape.x, y: shape.y, fill: stroke.stroke, "font-size": 14 });
      text.textContent = shape.textValue;
      return text;
    }
  }
}

const onPlane = (shape, z, t) => (shape.theZ === null || shape.theZ === z) && (shape.theT === null || shape.theT === t);

function format(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toPrecision(5);
}

// ``plane()`` returns the { z, t } shown. Returns ``update()``, to call when the plane changes.
export async function addRois(viewer, imageId, size, plane) {
  const section = document.getElementById("rois");
  let rois = [];
  try {
    rois = await (await api(`/webgateway/get_rois_json/${imageId}/`)).json();
  } catch (_) {
    return () => {};
  }
  const shapes = rois.flatMap((roi) => roi.shapes.map((shape) => ({ ...shape, roi: roi.name })));
  if (!shapes.length) return () => {};
  section.hidden = false;
  const svg = element("svg", { viewBox: `0 0 ${size.width} ${size.height}`, preserveAspectRatio: "none", class: "roi-layer" });
  // OpenSeadragon sets the overlay element's own display as it draws, so the shapes are hidden
  // by a group inside it.
  const layer = element("g", {});
  svg.append(layer);
  const marks = new Map();
  for (const shape of shapes) {
    const mark = drawn(shape, imageId);
    mark.dataset.shape = shape.id;
    marks.set(shape.id, mark);
    layer.append(mark);
  }
  viewer.addOverlay({ element: svg, location: new OpenSeadragon.Rect(0, 0, 1, size.height / size.width) });
  const show = document.getElementById("rois-shown");
  show.addEventListener("change", () => { layer.style.display = show.checked ? "" : "none"; });
  const body = section.querySelector("tbody");
  const head = section.querySelector("thead tr");
  const channels = (await (await api(`/webgateway/imgData/${imageId}/`)).json()).channels.map((c) => c.label);
  for (const label of channels) {
    for (const what of ["mean", "min", "max"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = `${label} ${what}`;
      head.append(th);
    }
  }
  let runs = 0;
  const update = async () => {
    const run = ++runs; // a later plane change wins over one still reading statistics
    const { z, t } = plane();
    body.replaceChildren();
    const rows = new Map();
    for (const shape of shapes) {
      const visible = onPlane(shape, z, t);
      marks.get(shape.id).style.display = visible ? "" : "none";
      if (!visible) continue;
      const row = document.createElement("tr");
      row.dataset.shape = shape.id;
      const cells = [shape.id, shape.type, shape.roi || "", shape.textValue || ""];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = String(text);
        row.append(td);
      }
      const area = document.createElement("td");
      area.className = "area";
      row.append(area);
      body.append(row);
      rows.set(shape.id, row);
    }
    // Every shape of the plane in one answer (a label image has hundreds).
    let found = [];
    if (rows.size) {
      try {
        found = (await (await api(`/webgateway/shape_stats/${imageId}/?theZ=${z}&theT=${t}`)).json()).shapes;
      } catch (_) {
        // the rows stay without statistics
      }
    }
    if (run !== runs) return;
    for (const stats of found) {
      const row = rows.get(stats.shape);
      if (!row) continue;
      row.querySelector(".area").textContent = stats.area === null ? "–" : String(stats.area); // lines and labels enclose no pixels
      for (const channel of stats.channels || []) {
        for (const what of ["mean", "min", "max"]) {
          const td = document.createElement("td");
          td.textContent = format(channel[what]);
          td.dataset.stat = `${channel.index}-${what}`;
          row.append(td);
        }
      }
    }
    body.dataset.plane = `${z},${t}`;
  };
  await update();
  return update;
}
