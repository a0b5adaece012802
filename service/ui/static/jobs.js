// Jobs list: refreshed from GET /jobs every few seconds; tick rows to compare their curves.
"use strict";
(() => {
  const table = document.querySelector("#jobs tbody");
  // Options live on the table itself, before any embedded data: nothing after them can hide them.
  const limit = Number(document.getElementById("jobs").dataset.limit) || 100;
  const picked = new Set();
  const compare = document.getElementById("compare-link");

  const cell = (html) => { const td = document.createElement("td"); td.innerHTML = html; return td; };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  // Tokenise jobs run the codec: 576 tokens a galaxy, so their rate reads better in galaxies/s.
  const rate = (job) => {
    const perS = job.progress.tokens_per_s;
    if (!perS) return "–";
    return job.kind === "tokenise" ? `${(perS / 576).toFixed(1)} gal/s` : perS.toFixed(0);
  };

  function row(job) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    const p = job.progress;
    tr.append(
      cell(`<input type="checkbox" class="pick" value="${esc(job.id)}" ${picked.has(job.id) ? "checked" : ""}>`),
      cell(`<a href="/ui/jobs/${esc(job.id)}">${esc(job.id.slice(0, 8))}</a> <span class="muted">${esc(job.kind)}</span>`),
      cell(job.owner ? esc(job.owner) : "–"),
      cell(`<span class="phase phase-${esc(job.phase)}">${esc(job.phase)}</span>`),
      cell(`<progress max="1" value="${p.fraction}"></progress> ${p.iteration}/${p.max_iters}`),
      cell(AstroPT.fmt(job.best_val_loss)),
      cell(rate(job)),
      cell(esc(job.created_at.replace("T", " ").slice(0, 19))),
    );
    return tr;
  }

  function updateCompare() {
    compare.hidden = picked.size < 1;
    compare.href = `/jobs/compare.png?ids=${[...picked].join(",")}`;
  }

  table.addEventListener("change", (event) => {
    if (!event.target.classList.contains("pick")) return;
    if (event.target.checked) picked.add(event.target.value); else picked.delete(event.target.value);
    updateCompare();
  });

  async function refresh() {
    try {
      const response = await fetch(`/jobs?limit=${limit}`);
      if (!response.ok) return;
      const body = await response.json();
      document.getElementById("jobs-total").textContent = body.total;
      if (!body.items.length) return;
      table.replaceChildren(...body.items.map(row));
      table.dataset.refreshed = String(Number(table.dataset.refreshed || 0) + 1);
    } finally {
      setTimeout(refresh, 2000);
    }
  }
  setTimeout(refresh, 2000);
})();
