"use strict";
// The board's mode banner: which mode (normal, NEWS2 only) the ward's alerts come from.
(function () {
  const banner = document.getElementById("mode");
  if (!banner) return;
  async function refresh() {
    try {
      const response = await fetch("/api/mode", {credentials: "same-origin"});
      if (!response.ok) return;
      const body = await response.json();
      const modes = Object.values(body.wards || {});
      const off = modes.filter((m) => m !== "normal");
      banner.dataset.mode = off.length ? off[0] : "normal";
      banner.textContent = off.length ? "Risk model OFF: alerts from NEWS2 only" : "NEWS2 + risk model";
    } catch (e) { /* the next poll tries again */ }
  }
  refresh();
  setInterval(refresh, 1000);
})();
