// The viewer's "Edit" form: rename, describe, tag and move the image (the images API's PATCH).
//
// SECURITY: what is typed reaches the page through textContent only.

import { api } from "./common.js";

const form = document.getElementById("edit-form");
const status = document.getElementById("edit-status");
const select = document.getElementById("edit-dataset");
const PATCH = "application/openstack-images-v2.1-json-patch";

async function fillDatasets() {
  const current = form.dataset.dataset;
  const { datasets } = await (await api("/api/v2/datasets")).json();
  for (const dataset of datasets.filter((d) => d.can_add || String(d.id) === current)) {
    const option = document.createElement("option");
    option.value = String(dataset.id);
    option.textContent = dataset.name;
    select.append(option);
  }
  select.value = current;
}

function tagsOf(text) {
  return [...new Set(text.split(",").map((tag) => tag.trim()).filter(Boolean))];
}

// The paragraph with ``id`` (made after ``before`` with ``className`` when the page has none).
function paragraph(id, className, before) {
  let found = document.getElementById(id);
  if (!found) {
    found = document.createElement("p");
    found.id = id;
    found.className = className;
    before.after(found);
  }
  return found;
}

function showDetails(doc) {
  document.getElementById("image-name").textContent = doc.name;
  document.title = `${doc.name} · Coverslip`;
  const description = paragraph("image-description", "description", document.getElementById("image-name"));
  description.textContent = doc.description || "";
  description.hidden = !doc.description;
  const tags = paragraph("image-tags", "tags", description);
  tags.replaceChildren(...doc.tags.map((tag) => {
    const span = document.createElement("span");
    span.className = "tag";
    span.textContent = tag;
    return span;
  }));
  tags.hidden = !doc.tags.length;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = document.getElementById("edit-name").value.trim();
  if (!name) { status.textContent = "An image needs a name."; return; }
  const dataset = select.value ? Number(select.value) : null;
  const changes = [
    { op: "replace", path: "/name", value: name },
    { op: "replace", path: "/description", value: document.getElementById("edit-description").value },
    { op: "replace", path: "/tags", value: tagsOf(document.getElementById("edit-tags").value) },
  ];
  if (String(dataset ?? "") !== form.dataset.dataset) changes.push({ op: "replace", path: "/dataset", value: dataset });
  status.textContent = "Saving …";
  try {
    const response = await api(`/api/v2/images/${form.dataset.imageId}`, {
      method: "PATCH", headers: { "Content-Type": PATCH }, body: JSON.stringify(changes),
    });
    const doc = await response.json();
    form.dataset.dataset = doc.dataset === null ? "" : String(doc.dataset);
    showDetails(doc);
    status.textContent = "Saved.";
  } catch (error) {
    status.textContent = `Not saved: ${error.message}`;
  }
});

fillDatasets().catch((error) => { status.textContent = `The datasets could not be listed: ${error.message}`; });
