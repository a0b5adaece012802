// Reconstruct page: POST the form to /reconstruct, show the PNG panel and the X-* metrics.
"use strict";
(() => {
  const form = document.getElementById("reconstruct-form");
  const $ = (id) => document.getElementById(id);
  const METRICS = [["X-Job-Id", "job"], ["X-Checkpoint", "checkpoint"], ["X-Mode", "mode"],
    ["X-Token-Accuracy", "token accuracy"], ["X-MSE", "model MSE (nanomaggies²)"],
    ["X-Codec-MSE", "codec MSE (nanomaggies²)"], ["X-Warnings", "warnings"]];
  let objectUrl = null;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    if (!file) {
      $("reconstruct-error").textContent = "Choose a FITS or NumPy file, or try the mock galaxy.";
      $("reconstruct-error").hidden = false;
      return;
    }
    run(file);
  });

  // A held-out mock galaxy from the server: the demo's model, one click away.
  $("sample").addEventListener("click", async () => {
    const response = await fetch("/ui/sample-galaxy.fits");
    if (!response.ok) {
      $("reconstruct-error").textContent = await AstroPT.errorText(response);
      $("reconstruct-error").hidden = false;
      return;
    }
    run(new File([await response.blob()], "mock-galaxy.fits", { type: "application/fits" }));
  });

  async function run(file) {
    const data = new FormData(form);
    for (const [key, value] of [...data.entries()]) if (value === "" || key === "file") data.delete(key);
    data.set("file", file);
    data.set("format", "png");
    $("reconstruct-state").textContent = "working…";
    $("reconstruct-error").hidden = true;
    const response = await AstroPT.api("/reconstruct", { method: "POST", body: data });
    $("reconstruct-state").textContent = "";
    if (!response.ok) {
      $("reconstruct-error").textContent = await AstroPT.errorText(response);
      $("reconstruct-error").hidden = false;
      return;
    }
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(await response.blob());
    $("panel").src = objectUrl;
    $("panel-caption").textContent = `${data.get("file").name}: ${response.headers.get("X-Mode")} mode`;
    $("result").hidden = false;
    const body = $("metrics").querySelector("tbody");
    body.replaceChildren(...METRICS.filter(([h]) => response.headers.get(h)).map(([h, name]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th"), td = document.createElement("td");
      th.textContent = name;
      td.textContent = response.headers.get(h);
      td.dataset.metric = h;
      tr.append(th, td);
      return tr;
    }));
    $("metrics").hidden = false;
  }
})();
