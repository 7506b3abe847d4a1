// Images side by side: each through the IIIF Image API with its saved settings, the plane
// shared, and zoom and pan of one followed by the others.

import { prefix } from "./common.js";

const panes = [...document.querySelectorAll(".compare-osd")];
const plane = { z: 0, t: 0 };
const viewers = [];
let leading = null; // the viewer the user moves; the others follow it

const source = (id) => `${location.origin}${prefix}/iiif/3/${id};z=${plane.z};t=${plane.t}/info.json`;

function mark(viewer) {
  const { element, viewport } = viewer;
  const center = viewport.getCenter(true);
  element.dataset.zoom = viewport.getZoom(true).toFixed(4);
  element.dataset.center = `${center.x.toFixed(4)},${center.y.toFixed(4)}`;
}

function follow(from) {
  if (leading !== null && leading !== from) return;
  leading = from;
  const zoom = from.viewport.getZoom();
  const center = from.viewport.getCenter();
  for (const other of viewers) {
    if (other === from) continue;
    other.viewport.zoomTo(zoom, null, true);
    other.viewport.panTo(center, true);
    mark(other);
  }
  mark(from);
  leading = null;
}

for (const element of panes) {
  const viewer = OpenSeadragon({
    element,
    prefixUrl: `${prefix}/static/vendor/openseadragon/images/`,
    tileSources: source(element.dataset.imageId),
    maxZoomPixelRatio: 4,
    drawer: "canvas",
    crossOriginPolicy: false,
    gestureSettingsMouse: { clickToZoom: false },
  });
  viewer.addHandler("zoom", () => follow(viewer));
  viewer.addHandler("pan", () => follow(viewer));
  viewer.addHandler("open", () => mark(viewer));
  viewer.addHandler("animation", () => mark(viewer)); // where the view is now, not where it goes
  viewers.push(viewer);
}

for (const key of ["z", "t"]) {
  const input = document.getElementById(key);
  input?.addEventListener("input", () => {
    plane[key] = Number(input.value);
    document.getElementById(`${key}-out`).value = plane[key] + 1;
    viewers.forEach((viewer, index) => {
      const zoom = viewer.viewport.getZoom();
      const center = viewer.viewport.getCenter();
      viewer.addOnceHandler("open", () => {
        viewer.viewport.zoomTo(zoom, null, true);
        viewer.viewport.panTo(center, true);
        mark(viewer);
      });
      viewer.open(source(panes[index].dataset.imageId));
    });
  });
}
