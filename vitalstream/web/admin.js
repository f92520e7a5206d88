"use strict";
// The kill switch page: post the instruction, then show the modes the workers apply.
(function () {
  const form = document.getElementById("killswitch");
  const result = document.getElementById("ks-result");
  const modes = document.getElementById("ks-modes");

  async function refresh() {
    try {
      const response = await fetch("/api/mode", {credentials: "same-origin"});
      const body = await response.json();
      modes.textContent = "default: " + body.default + "\n" +
        Object.entries(body.wards || {}).map(([w, m]) => w + ": " + m).join("\n");
      modes.dataset.default = body.default;
      modes.dataset.wards = JSON.stringify(body.wards || {});
    } catch (e) {
      modes.textContent = "unavailable";
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {mode: form.mode.value, scope: form.scope.value, reason: form.reason.value};
    const response = await fetch("/api/killswitch", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const answer = await response.json();
    result.dataset.state = response.ok ? "sent" : "refused";
    result.textContent = response.ok ? "Sent: " + answer.mode + " for " + answer.scope
                                     : "Refused: " + answer.error;
  });
  refresh();
  setInterval(refresh, 500);
})();
