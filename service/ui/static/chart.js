// A small SVG line chart (no library): series of (step, value) points on shared axes.
"use strict";
const Chart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 300, M = { left: 64, right: 16, top: 12, bottom: 36 };

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function ticks(lo, hi, count) {
    if (hi <= lo) return [lo];
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
    return out;
  }

  const label = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : +v.toPrecision(4));

  // series: [{name, cls, steps: [], values: []}]
  function draw(svg, series) {
    const finite = series.map((s) => s.steps.map((x, i) => [x, s.values[i]]).filter(([, y]) => Number.isFinite(y)));
    const all = finite.flat();
    svg.replaceChildren();
    svg.dataset.points = String(all.length);
    series.forEach((s, i) => { svg.dataset[`points_${s.name}`] = String(finite[i].length); });
    if (!all.length) {
      svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis-label" }, "no points yet"));
      return;
    }
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.05 || 1; y1 += Math.abs(y1) * 0.05 || 1; }
    const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
    const sy = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
    for (const t of ticks(y0, y1, 5)) {
      svg.append(el("line", { x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t), class: "grid-line" }));
      svg.append(el("text", { x: M.left - 6, y: sy(t) + 4, "text-anchor": "end", class: "axis-label" }, label(t)));
    }
    for (const t of ticks(x0, x1, 6)) {
      svg.append(el("text", { x: sx(t), y: H - M.bottom + 16, "text-anchor": "middle", class: "axis-label" }, label(t)));
    }
    svg.append(el("text", { x: (W + M.left) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, "iteration"));
    series.forEach((s, i) => {
      const pts = finite[i];
      if (!pts.length) return;
      svg.append(el("polyline", { points: pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "), class: `line ${s.cls}`, "data-series": s.name }));
      if (pts.length < 40) for (const [x, y] of pts) svg.append(el("circle", { cx: sx(x), cy: sy(y), r: 2.5, class: `dot ${s.cls}` }));
    });
    series.forEach((s, i) => {
      svg.append(el("rect", { x: W - M.right - 150, y: M.top + 4 + i * 16, width: 10, height: 3, class: `swatch ${s.cls}` }));
      svg.append(el("text", { x: W - M.right - 134, y: M.top + 9 + i * 16, class: "axis-label" }, s.name));
    });
  }

  return { draw };
})();
