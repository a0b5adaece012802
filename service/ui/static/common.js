// Shared by every dashboard page: the API key (kept in this browser only) and fetch helpers.
"use strict";
const AstroPT = (() => {
  const KEY = "astropt-api-key";
  const apiKey = () => localStorage.getItem(KEY) || "";

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (apiKey()) headers.set("X-API-Key", apiKey());
    return fetch(path, { ...options, headers });
  }

  async function errorText(response) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${d.field || (d.loc || []).join(".")}: ${d.msg}`).join("\n")
        : body.detail || JSON.stringify(body);
    } catch (_) { /* not JSON */ }
    if (response.status === 401) detail += " (enter the API key at the top of the page)";
    return `${response.status}: ${detail}`;
  }

  const fmt = (value, digits = 4) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

  function wireKeyForm() {
    const form = document.getElementById("key-form");
    if (!form) return;
    const input = document.getElementById("api-key");
    const state = document.getElementById("key-state");
    const show = () => { state.textContent = apiKey() ? "key saved in this browser" : ""; };
    input.value = apiKey();
    show();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.value) localStorage.setItem(KEY, input.value); else localStorage.removeItem(KEY);
      show();
    });
  }

  document.addEventListener("DOMContentLoaded", wireKeyForm);
  return { api, errorText, fmt, apiKey };
})();
