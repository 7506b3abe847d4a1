// Overlays of the viewer drawn over OpenSeadragon as its controls: a scale bar from the
// physical pixel size, and the stored values of every channel under the cursor.
// (No maintained scale-bar plugin is on npm; this is the few lines it takes.)

import { api } from "./common.js";

const STEPS = [1, 2, 5];
const TARGET_PX = 120; // about how long the bar is drawn

// Return the round length (1, 2 or 5 × 10^k) nearest below `length`.
function roundDown(length) {
  const power = 10 ** Math.floor(Math.log10(length));
  const step = [...STEPS].reverse().find((s) => s * power <= length) || 1;
  return step * power;
}

function formatMicrons(microns) {
  if (microns >= 1000) return `${microns / 1000} mm`;
  if (microns < 1) return `${Math.round(microns * 1000)} nm`;
  return `${microns} µm`;
}

// A bar of a round length in µm, redrawn on every zoom; hidden when the size is unknown.
export function addScaleBar(viewer, micronsPerPixel) {
  const box = document.createElement("div");
  box.className = "scalebar";
  box.id = "scalebar";
  box.innerHTML = '<span class="bar"></span><span class="label"></span>';
  const bar = box.querySelector(".bar");
  const label = box.querySelector(".label");
  if (!micronsPerPixel) {
    box.hidden = true;
    return box;
  }
  viewer.addControl(box, { anchor: OpenSeadragon.ControlAnchor.BOTTOM_LEFT });
  const draw = () => {
    const item = viewer.world.getItemAt(0);
    if (!item) return;
    const screenPerImage = item.viewportToImageZoom(viewer.viewport.getZoom(true));
    const micronsPerScreen = micronsPerPixel / screenPerImage;
    const length = roundDown(TARGET_PX * micronsPerScreen);
    bar.style.width = `${length / micronsPerScreen}px`;
    label.textContent = formatMicrons(Number(length.toPrecision(6)));
    box.dataset.microns = String(length);
  };
  viewer.addHandler("animation", draw);
  viewer.addHandler("open", draw);
  viewer.addHandler("resize", draw);
  draw();
  return box;
}

function formatValue(value) {
  if (value === null) return "NaN";
  return Number.isInteger(value) ? String(value) : value.toPrecision(5);
}

// Under the cursor: x, y and each channel's stored value (read from pixel_values, never from
// the rendered picture). `plane()` says which z and t are shown.
// ``plane()`` returns the { z, t } shown, or null when the view is not the image's pixels.
export function addReadout(viewer, imageId, size, plane) {
  const box = document.createElement("p");
  box.className = "readout";
  box.id = "readout";
  box.hidden = true;
  viewer.addControl(box, { anchor: OpenSeadragon.ControlAnchor.TOP_LEFT });
  let wanted = null;
  let busy = false;
  const read = async () => {
    if (busy || !wanted) return;
    const { x, y } = wanted;
    const { z, t } = plane();
    wanted = null;
    busy = true;
    try {
      const answer = await (await api(`/webgateway/pixel_values/${imageId}/${z}/${t}/?x=${x}&y=${y}`)).json();
      const values = answer.channels.map((ch) => `${ch.label} ${formatValue(ch.values[0][0])}`);
      box.textContent = `x ${answer.x}, y ${answer.y} · ${values.join(" · ")}`;
      box.dataset.x = String(answer.x);
      box.dataset.y = String(answer.y);
      box.hidden = false;
    } catch (_) {
      box.hidden = true;
    } finally {
      busy = false;
      if (wanted) read();
    }
  };
  const hide = () => { wanted = null; box.hidden = true; };
  // NOTE: in the capture phase: OpenSeadragon's own tracker keeps moves on its canvas to itself.
  viewer.element.addEventListener("pointermove", (event) => {
    if (event.target.closest(".navigator") || !plane()) {
      hide(); // the overview map is not the image at this scale; nor is a split view
      return;
    }
    const rect = viewer.element.getBoundingClientRect();
    const at = new OpenSeadragon.Point(event.clientX - rect.left, event.clientY - rect.top);
    const point = viewer.viewport.viewerElementToImageCoordinates(at);
    const x = Math.floor(point.x);
    const y = Math.floor(point.y);
    if (x < 0 || y < 0 || x >= size.width || y >= size.height) {
      hide();
      return;
    }
    wanted = { x, y };
    read();
  }, true);
  viewer.element.addEventListener("pointerleave", hide);
  return box;
}
