// Catalogue page: the map, the outliers, galleries of cut-outs, a galaxy's own panel (#object=ID)
// and a similarity search (by id or by image), through the API (with the key).
"use strict";
(() => {
  const page = JSON.parse(document.getElementById("catalogue-data").textContent);
  const $ = (id) => document.getElementById(id);
  const base = `/catalogues/${page.job_id}`;
  const objectUrl = (id) => `${base}/objects/${encodeURIComponent(id)}`;

  async function showPng(img, response) {
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    img.dataset.url = URL.createObjectURL(await response.blob());
    img.src = img.dataset.url;
  }

  async function cutoutInto(img, id) {
    const response = await AstroPT.api(`${objectUrl(id)}/cutout.png`);
    if (!response.ok) { img.alt = await AstroPT.errorText(response); img.classList.add("missing"); return null; }
    await showPng(img, response);
    return response.headers.get("X-Image-Origin");
  }

  function openGalaxy(id) { location.hash = `object=${encodeURIComponent(id)}`; }

  function rows(tbody, items, cells) {
    tbody.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      tr.dataset.objectId = item.object_id;
      tr.addEventListener("click", () => openGalaxy(item.object_id));
      for (const text of cells(item)) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
  }

  // A grid of cut-outs, each with its caption; a click opens the galaxy's panel.
  function tiles(container, items) {
    container.replaceChildren(...items.map((item) => {
      const figure = document.createElement("figure");
      figure.className = "tile";
      figure.dataset.objectId = item.object_id;
      figure.title = item.object_id;
      const img = document.createElement("img");
      img.alt = item.object_id;
      const caption = document.createElement("figcaption");
      caption.textContent = item.caption;
      figure.append(img, caption);
      figure.addEventListener("click", () => openGalaxy(item.object_id));
      cutoutInto(img, item.object_id);
      return figure;
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
    const mosaic = await AstroPT.api(`${base}/outliers?n=8&format=png`);
    if (mosaic.ok) await showPng($("outliers-mosaic"), mosaic);
    $("outliers-state").textContent = `ranked by ${body.method}`;
  }

  async function loadGallery(event) {
    if (event) event.preventDefault();
    const kind = $("gallery-kind").value;
    $("gallery-label-field").hidden = kind !== "worst";
    const params = new URLSearchParams({ kind, n: $("gallery-n").value });
    if (kind === "worst") params.set("label", $("gallery-label").value);
    if ($("gallery-method").value) params.set("method", $("gallery-method").value);
    $("gallery-state").textContent = "loading…";
    const response = await AstroPT.api(`${base}/gallery?${params}`);
    if (!response.ok) { $("gallery-state").textContent = await AstroPT.errorText(response); return; }
    const body = await response.json();
    tiles($("gallery"), body.items);
    $("gallery-state").textContent = body.title;
  }

  async function showGalaxy() {
    const match = location.hash.match(/^#object=(.+)$/);
    $("galaxy").hidden = !match;
    if (!match) return;
    const id = decodeURIComponent(match[1]);
    $("galaxy-id").textContent = id;
    $("galaxy-state").textContent = "loading…";
    $("galaxy").scrollIntoView();
    cutoutInto($("galaxy-cutout"), id).then((origin) => {
      $("galaxy-origin").textContent = origin === "codec-decoded"
        ? "decoded from its codec tokens (the source files are not readable)" : "";
    });
    const response = await AstroPT.api(objectUrl(id));
    if (!response.ok) { $("galaxy-state").textContent = await AstroPT.errorText(response); return; }
    const body = await response.json();
    const anomaly = Object.entries(body.anomaly).map(([method, a]) => ({ object_id: id, method, ...a }));
    rows($("galaxy-anomaly").querySelector("tbody"), anomaly,
      (a) => [a.method + (a.method === body.default_method ? " (default)" : ""), AstroPT.fmt(a.score), `${a.rank} of ${a.of}`]);
    const columns = Object.entries(body.columns).map(([name, value]) => ({ object_id: id, name, value }));
    rows($("galaxy-columns").querySelector("tbody"), columns,
      (c) => [c.name, typeof c.value === "number" ? AstroPT.fmt(c.value) : String(c.value ?? "–")]);
    tiles($("galaxy-neighbours"), body.neighbours.map((n) => ({ ...n, caption: `#${n.rank} ${n.score.toFixed(3)}` })));
    $("galaxy-state").textContent = `row ${body.row}; images from the ${body.image_source} source`;
  }

  async function search(event) {
    event.preventDefault();
    const file = $("search-file").files[0];
    const k = Number($("search-k").value);
    let post;
    if (file) {
      post = (suffix) => {
        const form = new FormData();
        form.append("file", file);
        form.append("job_id", page.job_id);
        form.append("k", String(k));
        return AstroPT.api(`/search${suffix}`, { method: "POST", body: form });
      };
    } else {
      if (!$("search-id").value) { $("search-state").textContent = "an object id or an image"; return; }
      const query = { job_id: page.job_id, object_id: $("search-id").value, k };
      post = (suffix) => AstroPT.api(`/search${suffix}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(query) });
    }
    $("search-state").textContent = "searching…";
    const response = await post("");
    if (!response.ok) { $("search-state").textContent = await AstroPT.errorText(response); return; }
    const body = await response.json();
    rows($("neighbours").querySelector("tbody"), body.neighbours,
      (n) => [n.rank, n.object_id, n.score.toFixed(4)]);
    tiles($("search-tiles"), body.neighbours.map((n) => ({ ...n, caption: `#${n.rank} ${n.score.toFixed(3)}` })));
    const mosaic = await post("?format=png");
    if (mosaic.ok) await showPng($("search-mosaic"), mosaic);
    $("search-state").textContent = `${body.neighbours.length} neighbours`;
  }

  async function loadAll() {
    await drawMap();
    await loadOutliers();
    await loadGallery();
    await showGalaxy();
  }

  $("map-color").addEventListener("change", drawMap);
  $("gallery-form").addEventListener("submit", loadGallery);
  $("gallery-kind").addEventListener("change", loadGallery);
  $("search-form").addEventListener("submit", search);
  $("galaxy-close").addEventListener("click", (event) => { event.preventDefault(); location.hash = ""; });
  window.addEventListener("hashchange", showGalaxy);
  $("key-form").addEventListener("submit", () => setTimeout(loadAll, 0));  // a key was just entered
  loadAll();
})();
