// The data sets page: delete buttons (DELETE /datasets/{id}, with the saved key or token).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const state = document.getElementById("datasets-state");
  for (const button of document.querySelectorAll("button.delete-dataset")) {
    button.addEventListener("click", async () => {
      const id = button.dataset.datasetId;
      if (!window.confirm(`Delete ${id}? Jobs will have to make it again.`)) return;
      const response = await AstroPT.api(`/datasets/${encodeURIComponent(id)}`, { method: "DELETE" });
      if (response.status === 204) {
        button.closest("tr").remove();
        state.textContent = `${id} deleted.`;
      } else {
        state.textContent = await AstroPT.errorText(response);
      }
    });
  }
});
