// Submit page: the OpenAPI examples as starting points; POST /jobs, then go to the job's page.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const example = (name) => document.querySelector(`template[data-example="${name}"]`).content.textContent;

  $("example").addEventListener("change", (event) => { $("spec").value = example(event.target.value); });
  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("submit-error").hidden = true;
    let spec;
    try {
      spec = JSON.parse($("spec").value);
    } catch (error) {
      $("submit-error").textContent = `not valid JSON: ${error.message}`;
      $("submit-error").hidden = false;
      return;
    }
    const response = await AstroPT.api("/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(spec),
    });
    if (response.status !== 201) {
      $("submit-error").textContent = await AstroPT.errorText(response);
      $("submit-error").hidden = false;
      return;
    }
    const job = await response.json();
    window.location.assign(`/ui/jobs/${job.id}`);
  });
})();
