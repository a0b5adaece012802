// Catalogue page: the map, the outliers and a similarity search, through the API (with the key).
"use strict";
(() => {
  const page = JSON.parse(document.getElementById("catalogue-data").textContent);
  const $ = (id) => document.getElementById(id);
  const base = `/catalogues/${page.job_id}`;

  async function showPng(img, response) {
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    img.dataset.url = URL.createObjectURL(await response.blob());
    img.src = img.dataset.url;
  }

  function rows(tbody, items, cells) {
    tbody.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      tr.dataset.objectId = item.object_id;
      for (const text of cells(item)) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
  }

  async function drawMap() {
    const color = $("map-color").value;
    $("map-state").textContent = "drawing…";
    const response = await AstroPT.api(`${base}/map.png?color=${encodeURIComponent(color)}`);
    if (!response.ok) { $("map-state").textContent = await AstroPT.errorText(response); return; }
    await showPng($("map"), response);
    $("map-state").textContent = "";
  }

  async function loadOutliers() {
    $("outliers-state").textContent = "scoring…";
    const response = await AstroPT.api(`${base}/outliers?n=8`);
    if (!response.ok) { $("outliers-state").textContent = await AstroPT.errorText(response); return; }
    const body = await response.json();
    rows($("outliers").querySelector("tbody"), body.items,
      (o) => [o.rank, o.object_id, o.outlier_score.toFixed(4)]);
    if (!$("search-id").value && body.items.length) $("search-id").value = body.items[0].object_id;
    if (page.mock) {
      const mosaic = await AstroPT.api(`${base}/outliers?n=8&format=png`);
      if (mosaic.ok) await showPng($("outliers-mosaic"), mosaic);
    }
    $("outliers-state").textContent = "";
  }

  async function search(event) {
    event.preventDefault();
    const query = { job_id: page.job_id, object_id: $("search-id").value, k: Number($("search-k").value) };
    $("search-state").textContent = "searching…";
    const post = (suffix) => AstroPT.api(`/search${suffix}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(query) });
    const response = await post("");
    if (!response.ok) { $("search-state").textContent = await AstroPT.errorText(response); return; }
    const body = await response.json();
    rows($("neighbours").querySelector("tbody"), body.neighbours,
      (n) => [n.rank, n.object_id, n.score.toFixed(4)]);
    if (page.mock) {
      const mosaic = await post("?format=png");
      if (mosaic.ok) await showPng($("search-mosaic"), mosaic);
    }
    $("search-state").textContent = `${body.neighbours.length} neighbours`;
  }

  async function loadAll() {
    await drawMap();
    await loadOutliers();
  }

  $("map-color").addEventListener("change", drawMap);
  $("search-form").addEventListener("submit", search);
  $("key-form").addEventListener("submit", () => setTimeout(loadAll, 0));  // a key was just entered
  loadAll();
})();
