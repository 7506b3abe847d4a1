// Export the current view: at full resolution (the server renders the whole plane with the
// viewer's settings) or at screen resolution (the canvas as shown, turned and mirrored).

import { prefix } from "./common.js";

const TYPES = { png: "image/png", jpeg: "image/jpeg" };

function save(href, name) {
  const link = document.createElement("a");
  link.href = href;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

// ``current()`` returns { query, z, t } of what the viewer shows; ``say`` reports problems.
export function addExport(viewer, imageId, baseName, current, say) {
  const format = document.getElementById("export-format");
  const scope = document.getElementById("export-scope");
  const button = document.getElementById("export");
  const screenOption = scope.querySelector("option[value=screen]");
  const sync = () => {
    // A canvas is PNG or JPEG; a TIFF is rendered by the server at full resolution.
    const tiff = format.value === "tif";
    screenOption.disabled = tiff;
    if (tiff) scope.value = "full";
  };
  format.addEventListener("change", sync);
  sync();
  button.addEventListener("click", () => {
    const { query, z, t } = current();
    const ext = format.value === "jpeg" ? "jpg" : format.value;
    const name = `${baseName}-z${z + 1}-t${t + 1}${scope.value === "screen" ? "-screen" : ""}.${ext}`;
    if (scope.value === "full") {
      save(`${prefix}/webgateway/render_image/${imageId}/${z}/${t}/?${query}&format=${format.value}`, name);
      return;
    }
    const canvas = viewer.drawer.canvas;
    try {
      save(canvas.toDataURL(TYPES[format.value], 0.92), name);
    } catch (error) {
      say(`Cannot export the view: ${error.message}`);
    }
  });
}
