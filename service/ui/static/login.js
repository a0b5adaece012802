// The sign-in page: check the token against /users/me, keep it, and go back where we came from.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const state = document.getElementById("login-state");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = document.getElementById("login-token").value.trim();
    const response = await fetch("/users/me", { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) {
      state.textContent = await AstroPT.errorText(response);
      return;
    }
    AstroPT.saveKey(token);
    const next = form.dataset.next || "/ui/jobs";
    window.location.assign(next.startsWith("/ui") ? next : "/ui/jobs");
  });
});
