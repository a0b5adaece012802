// Job page: curves, progress, validation images and checkpoints kept live over SSE.
"use strict";
(() => {
  const job = JSON.parse(document.getElementById("job-data").textContent);
  const curves = { train_loss: job.curves.train_loss, val_loss: job.curves.val_loss, lr: job.curves.lr };
  const probes = {};  // live probe: label -> R^2 curve (empty for a job without one)
  for (const [label, curve] of Object.entries(job.curves.probe_r2 || {})) probes[label] = curve;
  const $ = (id) => document.getElementById(id);
  const FINISHED = ["completed", "failed", "cancelled"];
  let lastArtifacts = 0;

  function append(have, add) {
    const last = have.steps.length ? have.steps[have.steps.length - 1] : -1;
    add.steps.forEach((step, i) => {
      if (step > last) { have.steps.push(step); have.values.push(add.values[i]); }
    });
  }

  function merge(fresh) {
    for (const name of Object.keys(curves)) append(curves[name], fresh[name] || { steps: [], values: [] });
    for (const [label, add] of Object.entries(fresh.probe_r2 || {})) {
      probes[label] = probes[label] || { steps: [], values: [] };
      append(probes[label], add);
    }
  }

  function drawCharts() {
    Chart.draw($("loss-chart"), [
      { name: "train_loss", cls: "train", ...curves.train_loss },
      { name: "val_loss", cls: "val", ...curves.val_loss },
    ]);
    Chart.draw($("lr-chart"), [{ name: "lr", cls: "lr", ...curves.lr }]);
    const labels = Object.keys(probes);
    $("probe-figure").hidden = !labels.length;
    if (labels.length) {
      Chart.draw($("probe-chart"), labels.map((label, i) => ({ name: label, cls: `probe probe-${i % 6}`, ...probes[label] })));
    }
    const lr = curves.lr.values;
    $("lr-now").textContent = lr.length ? lr[lr.length - 1].toExponential(2) : "–";
    captionImages();
  }

  function showState(state) {
    job.phase = state.phase;
    $("phase").textContent = state.phase;
    $("phase").className = `phase phase-${state.phase}`;
    const p = state.progress;
    if (p) {
      $("progress-bar").value = p.fraction;
      $("progress-text").textContent = `${p.iteration}/${p.max_iters}`
        + (p.eta_seconds ? ` · about ${Math.round(p.eta_seconds)} s left` : "");
      $("throughput").textContent = p.tokens_per_s ? `${p.tokens_per_s.toFixed(0)} tokens/s` : "–";
    }
    $("best-val").textContent = AstroPT.fmt(state.best_val_loss);
    $("failure").hidden = !state.failure_reason;
    $("failure-reason").textContent = state.failure_reason || "";
    $("cancel").disabled = FINISHED.includes(state.phase) || state.phase === "cancelling";
    $("resume").disabled = !FINISHED.includes(state.phase);
    $("ready").hidden = state.phase !== "completed";
  }

  function caption(step) {  // "step 20 · val loss 0.924" (the loss once the curve has the step)
    const i = curves.val_loss.steps.indexOf(step);
    return i < 0 ? `step ${step}` : `step ${step} · val loss ${curves.val_loss.values[i].toFixed(3)}`;
  }

  function captionImages() {
    for (const figure of $("val-images").querySelectorAll("figure")) {
      figure.querySelector("figcaption").textContent = caption(Number(figure.dataset.step));
    }
  }

  async function refreshArtifacts(force) {
    const now = Date.now();
    if (!force && now - lastArtifacts < 2000) return;
    lastArtifacts = now;
    const response = await fetch(`/jobs/${job.id}/artifacts`);
    if (!response.ok) return;
    const body = await response.json();
    const gallery = $("val-images");
    const shown = new Set([...gallery.querySelectorAll("figure")].map((f) => f.dataset.path));
    for (const file of body.files.filter((f) => f.kind === "val_image" && !shown.has(f.path))) {
      const figure = document.createElement("figure");
      figure.dataset.path = file.path;
      figure.dataset.step = String(Number((file.path.match(/step_(\d+)/) || [0, 0])[1]));
      const link = document.createElement("a");
      link.href = file.download_url;
      const img = document.createElement("img");
      img.src = file.download_url;
      img.alt = `validation galaxies at step ${figure.dataset.step}`;
      link.append(img);
      figure.append(link, document.createElement("figcaption"));
      gallery.append(figure);  // oldest first: the strip reads as the model learning
    }
    captionImages();
    const list = $("checkpoints");
    if (body.checkpoints.length) {
      list.replaceChildren(...body.checkpoints.map((c) => {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = c.download_url;
        a.textContent = c.name;
        li.append(a, ` (step ${c.step})`);
        return li;
      }));
    }
  }

  async function reload() {
    const response = await fetch(`/jobs/${job.id}`);
    if (!response.ok) return;
    const fresh = await response.json();
    for (const name of Object.keys(curves)) curves[name] = fresh.curves[name];
    for (const [label, curve] of Object.entries(fresh.curves.probe_r2 || {})) probes[label] = curve;
    showState(fresh);
    drawCharts();
    await refreshArtifacts(true);
  }

  function listen() {
    const source = new EventSource(`/jobs/${job.id}/events`);
    source.addEventListener("progress", (event) => {
      const state = JSON.parse(event.data);
      merge(state.curves);
      showState(state);
      drawCharts();
      refreshArtifacts(false);
    });
    source.addEventListener("end", () => { source.close(); reload(); });
    source.onerror = () => {  // the server went away: try again shortly
      source.close();
      if (!FINISHED.includes(job.phase)) setTimeout(listen, 3000);
    };
  }

  async function act(path, label) {
    const state = $("action-state");
    state.textContent = `${label}…`;
    const response = await AstroPT.api(path, { method: "POST" });
    if (!response.ok) { state.textContent = await AstroPT.errorText(response); return; }
    const body = await response.json();
    state.textContent = `${label}: ${body.phase}`;
    showState(body);
    if (label === "resume") listen();
  }

  $("cancel").addEventListener("click", () => act(`/jobs/${job.id}/cancel`, "cancel"));
  $("resume").addEventListener("click", () => act(`/jobs/${job.id}/resume`, "resume"));
  showState(job);
  drawCharts();
  if (!FINISHED.includes(job.phase)) listen(); else refreshArtifacts(true);
})();
