// The plate page: its wells as a table of thumbnails of one field, from webgateway/plate/.
//
// SECURITY: names come from uploaded files; they reach the page through textContent only.

import { api, prefix } from "./common.js";

const table = document.getElementById("plate");
const field = document.getElementById("field");
const status = document.getElementById("plate-status");

function cell(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function show(number) {
  status.textContent = "";
  let grid;
  try {
    grid = await (await api(`/webgateway/plate/${table.dataset.plateId}/${number}/`)).json();
  } catch (error) {
    status.textContent = `The plate could not be read: ${error.message}`;
    return;
  }
  const head = table.tHead.rows[0];
  head.replaceChildren(cell("th"), ...grid.collabels.map((label) => {
    const th = cell("th", label);
    th.scope = "col";
    return th;
  }));
  const rows = grid.grid.map((wells, r) => {
    const row = document.createElement("tr");
    const label = cell("th", grid.rowlabels[r]);
    label.scope = "row";
    row.append(label);
    wells.forEach((well, c) => {
      const td = cell("td");
      const name = `${grid.rowlabels[r]}${grid.collabels[c]}`;
      if (well) {
        const link = cell("a");
        link.href = `${prefix}/images/${well.id}`;
        link.title = `${name}: ${well.name}`;
        const img = cell("img");
        img.alt = `Well ${name}`;
        img.src = well.thumb_url;
        img.loading = "lazy";
        link.append(img);
        td.append(link);
        td.dataset.imageId = well.id;
      } else {
        td.className = "empty-well";
        td.title = `${name}: no image`;
      }
      row.append(td);
    });
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
}

field?.addEventListener("change", () => show(Number(field.value)));
show(0);
