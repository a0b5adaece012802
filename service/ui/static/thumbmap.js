// Catalogue page: the thumbnail map on a canvas (no library, nothing from elsewhere).
// The sheet (GET .../thumbnails.png) is laid under the points over the map's extent; drag to
// pan, wheel to zoom, hover for an object's id, click to open its galaxy panel (#object=ID).
"use strict";
(() => {
  const page = JSON.parse(document.getElementById("catalogue-data").textContent);
  const $ = (id) => document.getElementById(id);
  const canvas = $("thumbmap");
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  const base = `/catalogues/${page.job_id}`;
  let layout = null, sheet = null, view = { scale: 1, dx: 0, dy: 0 }, hover = -1, drag = null;

  // data (x, y) -> canvas pixels: the extent fills the canvas, then the view's pan and zoom
  function toScreen(x, y) {
    const e = layout.extent;
    const sx = ((x - e.xmin) / (e.xmax - e.xmin)) * canvas.width;
    const sy = (1 - (y - e.ymin) / (e.ymax - e.ymin)) * canvas.height;
    return [sx * view.scale + view.dx, sy * view.scale + view.dy];
  }

  function draw() {
    ctx.fillStyle = "#0c0e12";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!layout) return;
    if (sheet) {
      const [x0, y0] = toScreen(layout.extent.xmin, layout.extent.ymax);
      ctx.imageSmoothingEnabled = view.scale < 2;
      ctx.drawImage(sheet, x0, y0, canvas.width * view.scale, canvas.height * view.scale);
    }
    const p = layout.points;
    ctx.fillStyle = "rgba(108, 182, 255, 0.55)";
    for (let k = 0; k < p.x.length; k++) {
      const [sx, sy] = toScreen(p.x[k], p.y[k]);
      ctx.fillRect(sx - 1, sy - 1, 2, 2);
    }
    if (hover >= 0) {
      const [sx, sy] = toScreen(p.x[hover], p.y[hover]);
      ctx.strokeStyle = "#ffb454";
      ctx.strokeRect(sx - 4, sy - 4, 8, 8);
    }
  }

  function nearest(mx, my) {
    const p = layout.points;
    let best = -1, bestD = 64;  // within 8 px
    for (let k = 0; k < p.x.length; k++) {
      const [sx, sy] = toScreen(p.x[k], p.y[k]);
      const d = (sx - mx) ** 2 + (sy - my) ** 2;
      if (d < bestD) { best = k; bestD = d; }
    }
    return best;
  }

  function mouse(event) {
    const r = canvas.getBoundingClientRect();
    return [(event.clientX - r.left) * (canvas.width / r.width), (event.clientY - r.top) * (canvas.height / r.height)];
  }

  canvas.addEventListener("mousedown", (event) => { drag = { at: mouse(event), moved: false }; });
  window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
  canvas.addEventListener("mousemove", (event) => {
    if (!layout) return;
    const [mx, my] = mouse(event);
    if (drag) {
      view.dx += mx - drag.at[0];
      view.dy += my - drag.at[1];
      drag.moved = drag.moved || Math.abs(mx - drag.at[0]) + Math.abs(my - drag.at[1]) > 2;
      drag.at = [mx, my];
    }
    hover = nearest(mx, my);
    canvas.dataset.hover = hover >= 0 ? layout.points.object_id[hover] : "";
    $("thumbmap-state").textContent = hover >= 0 ? layout.points.object_id[hover] : "";
    draw();
  });
  canvas.addEventListener("click", (event) => {
    if (!layout || (drag && drag.moved)) return;
    const k = nearest(...mouse(event));
    if (k >= 0) location.hash = `object=${encodeURIComponent(layout.points.object_id[k])}`;
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [mx, my] = mouse(event);
    const factor = event.deltaY < 0 ? 1.25 : 0.8;
    view.dx = mx - (mx - view.dx) * factor;
    view.dy = my - (my - view.dy) * factor;
    view.scale *= factor;
    canvas.dataset.scale = String(view.scale);
    draw();
  }, { passive: false });

  async function load() {
    const params = new URLSearchParams({ method: "pca", grid: $("thumbmap-grid").value, tile: "48" });
    $("thumbmap-state").textContent = "drawing…";
    const response = await AstroPT.api(`${base}/thumbnails?${params}`);
    if (!response.ok) { $("thumbmap-state").textContent = await AstroPT.errorText(response); return; }
    layout = await response.json();
    view = { scale: 1, dx: 0, dy: 0 };
    draw();
    const png = await AstroPT.api(layout.sheet);
    if (!png.ok) { $("thumbmap-state").textContent = await AstroPT.errorText(png); return; }
    const image = new Image();
    image.onload = () => { sheet = image; canvas.dataset.ready = "1"; draw(); };
    image.src = URL.createObjectURL(await png.blob());
    $("thumbmap-state").textContent = `${layout.cells.length} thumbnails of ${layout.points.x.length} galaxies`;
  }

  $("thumbmap-grid").addEventListener("change", load);
  $("key-form").addEventListener("submit", () => setTimeout(load, 0));
  load();
})();
