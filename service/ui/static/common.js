// Shared by every dashboard page: the API key or a user's token (kept in this browser only) and
// fetch helpers. A token (apt_...) goes as "Authorization: Bearer", the shared key as X-API-Key;
// a token also rides in a SameSite=Strict cookie so that page navigations can read.
"use strict";
const AstroPT = (() => {
  const KEY = "astropt-api-key";
  const apiKey = () => localStorage.getItem(KEY) || "";

  const TOKEN_COOKIE = "astropt_token";
  const isToken = (value) => value.startsWith("apt_");

  function saveKey(value) {
    if (value) localStorage.setItem(KEY, value); else localStorage.removeItem(KEY);
    const cookie = value && isToken(value) ? encodeURIComponent(value) : "";
    document.cookie = `${TOKEN_COOKIE}=${cookie}; path=/; SameSite=Strict${cookie ? "" : "; max-age=0"}`;
  }

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const saved = apiKey();
    if (saved && isToken(saved)) headers.set("Authorization", `Bearer ${saved}`);
    else if (saved) headers.set("X-API-Key", saved);
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
    if (response.status === 401) detail += " (enter the API key or your token at the top of the page)";
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
      saveKey(input.value);
      show();
    });
  }

  document.addEventListener("DOMContentLoaded", wireKeyForm);
  return { api, errorText, fmt, apiKey, saveKey };
})();
