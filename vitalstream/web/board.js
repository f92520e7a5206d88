// The ward board: one tile per bed, live from /api/stream (Server-Sent Events).
// No build step and no framework: the service serves this file as it is.
// The EventSource reconnects by itself and sends the last event id, so the service
// resumes exactly after the last event shown (or sends a fresh snapshot).
"use strict";

const PRIORITY_RANK = { high: 3, medium: 2, low: 1 };
const LABELS = {
  resp_rate: ["RR", "/min", 0], spo2: ["SpO2", "%", 0], systolic_bp: ["SBP", "mmHg", 0],
  diastolic_bp: ["DBP", "mmHg", 0], heart_rate: ["HR", "/min", 0], temperature: ["Temp", "°C", 1],
  on_oxygen: ["O2", "", null], consciousness: ["ACVPU", "", null],
};
const ORDER = ["resp_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate", "consciousness", "temperature", "diastolic_bp"];
// A 2 h slope at least this big (per hour) is shown as rising or falling.
const TREND_PER_H = { heart_rate: 5, resp_rate: 2, spo2: 1, systolic_bp: 5, diastolic_bp: 5, temperature: 0.3 };
const STALE_AFTER_MS = 10 * 60 * 1000;
// Statuses under which an alert stays on the board (the station's OPEN_STATUSES).
const OPEN = new Set(["raised", "escalated", "reraised", "acknowledged", "called", "answered", "snoozed",
  "snooze_ended", "transferred"]);
const ROLE_TEXT = { bedside_nurse: "bedside nurse", charge_nurse: "charge nurse",
  rapid_response: "rapid-response team", physician: "physician" };
const ANSWERS = [
  ["physician_informed", "Acted: physician informed"], ["rapid_response_called", "Acted: rapid response called"],
  ["treatment_changed", "Acted: treatment changed"], ["observations_increased", "Acted: observations increased"],
  ["expected_or_known", "No action: expected or known"], ["artefact_or_equipment", "No action: artefact or equipment"],
  ["comfort_care", "No action: comfort care"], ["other", "No action: other (say what)"]];
// Device times further than this from the wall clock (a replay, a device clock) are labelled.
const CLOCKS_DIFFER_MS = 5 * 60 * 1000;

const state = { wards: new Map(), seen: new Set(), station: "", canAcknowledge: false, skewMs: 0 };

function ward(name) {
  if (!state.wards.has(name)) state.wards.set(name, { beds: new Map(), alerts: new Map(), goals: new Map() });
  return state.wards.get(name);
}

// Times of day say whose clock they are when device time and wall time differ.
function deviceClock(ms) {
  return Math.abs(state.skewMs) > CLOCKS_DIFFER_MS ? `device ${clock(ms)}` : clock(ms);
}

function wallClock(ms) {
  return Math.abs(state.skewMs) > CLOCKS_DIFFER_MS ? `wall ${clock(ms)}` : clock(ms);
}

function minutesSince(ms) {
  const minutes = Math.max(0, Math.floor((Date.now() - ms) / 60000));
  return minutes < 1 ? "<1 min" : `${minutes} min`;
}

function waiting(alert) {
  const oversight = alert.oversight || {};
  return oversight.waiting || (alert.status === "acknowledged" ? "answer" : "ack");
}

// Attention first: waiting for an acknowledgement, then an answer; by priority, then oldest.
function attentionOrder(a, b) {
  const group = { ack: 0, answer: 1, none: 2, snooze: 3 };
  const oa = a.oversight || {}, ob = b.oversight || {};
  return ((group[waiting(a)] ?? 2) - (group[waiting(b)] ?? 2))
    || ((PRIORITY_RANK[b.priority] || 0) - (PRIORITY_RANK[a.priority] || 0))
    || ((oa.opened_ms || a.device_time_ms) - (ob.opened_ms || b.device_time_ms));
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 16);
}

function slug(text) {
  return String(text || "").toLowerCase().replace(/[^a-z0-9-]/g, "-");
}

function applySnapshot(message) {
  for (const [name, snapshot] of Object.entries(message.wards)) {
    const w = { beds: new Map(), alerts: new Map(), goals: new Map() };
    state.wards.set(name, w);
    for (const bed of snapshot.beds) { w.beds.set(String(bed.bed), bed); noteSkew(bed); }
    for (const goal of snapshot.goals || []) w.goals.set(goal.alert_id, goal);
    for (const alert of snapshot.alerts) {
      w.alerts.set(alert.alert_id, alert);
      state.seen.add(alert.event_id);
    }
  }
  if (message.station) state.station = message.station;
  renderAll();
}

function applyAlert(alert) {
  if (state.seen.has(alert.event_id)) return;  // a redelivered status change
  state.seen.add(alert.event_id);
  const w = ward(alert.ward);
  if (alert.replaces) w.alerts.delete(alert.replaces);
  const previous = w.alerts.get(alert.alert_id);
  if (previous && alert.status === "acknowledged" && !alert.raised_summary) {
    alert.raised_summary = previous.raised_summary || previous.summary;  // keep the reasons
  }
  if (!OPEN.has(alert.status)) w.alerts.delete(alert.alert_id);
  else w.alerts.set(alert.alert_id, alert);
  refreshBed(alert.ward, String(alert.bed));
  renderAttention();
  if (alert.status === "raised" || alert.status === "escalated" || alert.status === "reraised") {
    announce(`${alert.priority} priority alert: ${alert.summary}`);
  }
}

function applyBed(bedState) {
  ward(bedState.ward).beds.set(String(bedState.bed), bedState);
  noteSkew(bedState);
  renderBed(bedState.ward, String(bedState.bed));
}

function noteSkew(bedState) {
  if (typeof bedState.time_ms === "number") state.skewMs = Date.now() - bedState.time_ms;
}

function applyGoal(goal) {
  const w = ward(goal.ward);
  if (goal.status === "goal_set") w.goals.set(goal.alert_id, goal);
  else w.goals.delete(goal.alert_id);
  renderBed(goal.ward, String(goal.bed));
}

function vacate(wardName, bed) {
  ward(wardName).beds.delete(String(bed));
  refreshBed(wardName, String(bed));
}

// A bed's tile while it shows something (a bed state, an open alert or a care goal);
// removed once it shows nothing (the patient left and the last alert closed).
function refreshBed(wardName, bed) {
  const w = ward(wardName);
  const shown = w.beds.has(bed) || [...w.alerts.values()].some((a) => String(a.bed) === bed)
    || [...w.goals.values()].some((g) => String(g.bed) === bed);
  if (shown) renderBed(wardName, bed);
  else {
    document.getElementById(`bed-${slug(wardName)}-${slug(bed)}`)?.remove();
    updateHeader();
  }
}

function announce(text) {
  const region = document.getElementById("announce");
  region.textContent = text;
}

function bedNames(w) {
  const names = new Set(w.beds.keys());
  for (const alert of w.alerts.values()) names.add(String(alert.bed));
  return [...names].sort((a, b) => (Number(a) - Number(b)) || a.localeCompare(b));
}

function renderAll() {
  const main = document.getElementById("beds");
  const focused = main.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  main.replaceChildren();
  for (const [name, w] of [...state.wards.entries()].sort()) {
    for (const bed of bedNames(w)) main.append(tile(name, bed));
  }
  if (!main.children.length) main.append(el("p", { class: "empty", text: "No beds reporting yet." }));
  if (focused) main.querySelector(`[data-focus-key="${focused}"]`)?.focus();
  renderAttention();
  updateHeader();
}

// The attention strip: every alert waiting for an acknowledgement or an answer, first.
function renderAttention() {
  const strip = document.getElementById("attention");
  const focused = strip.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  const waitingAlerts = [];
  for (const w of state.wards.values()) {
    for (const alert of w.alerts.values()) if (["ack", "answer"].includes(waiting(alert))) waitingAlerts.push(alert);
  }
  waitingAlerts.sort(attentionOrder);
  strip.replaceChildren(...waitingAlerts.map(attentionItem));
  strip.hidden = !waitingAlerts.length;
  if (focused) strip.querySelector(`[data-focus-key="${focused}"]`)?.focus();
}

function holderText(alert) {
  const oversight = alert.oversight || {};
  if (!oversight.holder) return "";
  return `${ROLE_TEXT[oversight.holder] || oversight.holder} since ${wallClock(oversight.held_since_ms)} (${minutesSince(oversight.held_since_ms)})`;
}

function attentionItem(alert) {
  const need = waiting(alert);
  const item = el("li", {
    class: `attention-item prio-${slug(alert.priority)} waiting-${need}`, "data-alert-id": alert.alert_id,
    "data-bed": String(alert.bed), "data-ward": alert.ward,
  },
  el("span", { class: "badge", text: String(alert.priority).toUpperCase() }),
  el("span", { class: "where", text: `Bed ${alert.bed}` }),
  el("span", { class: "need", text: need === "ack" ? "not acknowledged" : "not answered" }),
  el("span", { class: "holder", "data-holder": (alert.oversight || {}).holder || "", text: holderText(alert) }),
  el("span", { class: "summary", text: alert.raised_summary || alert.summary }));
  item.append(...actions(alert, need));
  return item;
}

function actions(alert, need) {
  const viewOnly = !state.canAcknowledge;  // a wall board's token (or a role that may not): grey
  if (need === "ack") {
    const button = el("button", {
      type: "button", class: "ack", "data-alert-id": alert.alert_id, "data-focus-key": `strip-ack-${alert.alert_id}`,
      "aria-label": `Acknowledge ${alert.priority} alert, bed ${alert.bed}`, text: "Accept", disabled: viewOnly,
      onclick: () => acknowledge(alert, button),
    });
    const snooze = el("button", { type: "button", class: "snooze", text: "Snooze", disabled: viewOnly,
      title: "As long as this priority allows (a high alert only a few minutes)",
      "data-focus-key": `strip-snooze-${alert.alert_id}`, onclick: () => snoozeAlert(alert, snooze) });
    const decline = el("button", { type: "button", class: "decline", text: "Decline", disabled: viewOnly,
      "data-focus-key": `strip-decline-${alert.alert_id}`, onclick: () => decline(alert) });
    return [button, snooze, decline];
  }
  const select = el("select", { class: "reason", "aria-label": "Answer", disabled: viewOnly,
    "data-focus-key": `strip-reason-${alert.alert_id}` },
    el("option", { value: "", text: "Answer…" }), ...ANSWERS.map(([code, text]) => el("option", { value: code, text })));
  const text = el("input", { class: "other", type: "text", maxlength: "200", placeholder: "what (for other)",
    disabled: viewOnly });
  const button = el("button", { type: "button", class: "answer", text: "Send answer", disabled: viewOnly,
    "data-focus-key": `strip-answer-${alert.alert_id}`, onclick: () => answer(alert, select.value, text.value, button) });
  return [select, text, button];
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
    body: JSON.stringify(body),  // who acts is the signed-in user, known to the server
  });
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
}

async function answer(alert, reason, text, button) {
  button.disabled = true;
  try {
    await post("/api/answer", { alert_id: alert.alert_id, reason, text });
    button.textContent = "Sent";
  } catch (error) {
    button.disabled = false;
    announce(`Answer not sent: ${error.message}`);
  }
}

async function snoozeAlert(alert, button) {
  button.disabled = true;
  try {
    await post("/api/snooze", { alert_id: alert.alert_id, duration_s: "max", reason: "at the bedside" });
  } catch (error) {
    button.disabled = false;
    announce(`Snooze refused: ${error.message}`);
  }
}

async function decline(alert) {
  try {
    await post("/api/disposition", { alert_id: alert.alert_id, disposition: "declined" });
  } catch (error) {
    announce(`Decline not sent: ${error.message}`);
  }
}

function historyText(entry) {
  const who = entry.user_id ? ` ${entry.name || ""} (${entry.user_id}${entry.user_role ? ", " + (ROLE_TEXT[entry.user_role] || entry.user_role) : ""})` : "";
  const role = entry.role ? ` ${ROLE_TEXT[entry.role] || entry.role}` : "";
  const why = entry.reason ? `: ${String(entry.reason).replaceAll("_", " ")}` : "";
  return `${wallClock(entry.at_ms)} ${entry.event}${role}${who}${why}`;
}

function renderBed(wardName, bed) {
  const main = document.getElementById("beds");
  const id = `bed-${slug(wardName)}-${slug(bed)}`;
  const old = document.getElementById(id);
  const focused = old && old.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  const fresh = tile(wardName, bed);
  if (old) old.replaceWith(fresh);
  else {
    main.querySelector(".empty")?.remove();
    const after = [...main.children].find((node) => node.dataset.ward === wardName
      && ((Number(node.dataset.bed) - Number(bed)) || node.dataset.bed.localeCompare(bed)) > 0);
    main.insertBefore(fresh, after || null);
  }
  if (focused) fresh.querySelector(`[data-focus-key="${focused}"]`)?.focus();
  updateHeader();
}

function trendArrow(parameter, slopePerH) {
  const limit = TREND_PER_H[parameter];
  if (slopePerH === undefined || slopePerH === null || limit === undefined) return null;
  const sign = slopePerH >= limit ? "up" : slopePerH <= -limit ? "down" : "flat";
  const text = sign === "up" ? "↑" : sign === "down" ? "↓" : "→";
  const words = sign === "flat" ? "steady" : `${sign === "up" ? "rising" : "falling"} ${Math.abs(slopePerH).toFixed(1)} per hour`;
  return el("span", { class: `arrow ${sign}`, title: words, "aria-label": words, text });
}

function formatValue(parameter, value) {
  const [, unit, places] = LABELS[parameter] || [parameter, "", null];
  if (value === null || value === undefined || Number.isNaN(value)) return "\u2014";  // no value: a dash, not "null"
  if (parameter === "on_oxygen") return value ? "oxygen" : "air";
  if (places === null || typeof value !== "number") return String(value);
  return `${value.toFixed(places)}${unit === "%" ? " %" : ""}`;
}

function vitals(bedState) {
  const list = el("ul", { class: "vitals" });
  const components = (bedState.news2 && bedState.news2.components) || {};
  const stale = new Set(bedState.stale || []);
  const observations = bedState.observations || {};
  for (const parameter of ORDER) {
    const observation = observations[parameter];
    if (!observation && !stale.has(parameter)) continue;
    const [label, unit] = LABELS[parameter];
    const points = components[parameter];
    const item = el("li", { class: stale.has(parameter) ? "stale" : null, "data-parameter": parameter },
      el("span", { class: "name", text: label }),
      el("span", { class: "value", text: observation ? formatValue(parameter, observation.value) : "—" }),
      unit && unit !== "%" ? el("span", { class: "name", text: unit }) : null,
      trendArrow(parameter, (bedState.trends_per_h || {})[parameter]),
      points !== undefined ? el("span", { class: `points points-${points}`, title: `NEWS2 points ${points}`, text: String(points) }) : null,
      stale.has(parameter) && observation ? el("span", { class: "stale-mark", text: `since ${clock(observation.time_ms)}` }) : null);
    list.append(item);
  }
  return list;
}

function alertItem(alert) {
  const acked = alert.status === "acknowledged";
  const ack = (alert.payload && alert.payload.ack) || null;
  const button = el("button", {
    type: "button", class: "ack", "data-alert-id": alert.alert_id, "data-focus-key": `ack-${alert.alert_id}`,
    disabled: acked || !state.canAcknowledge || ["answer", "none"].includes(waiting(alert)),
    "aria-label": acked ? "Acknowledged" : `Acknowledge ${alert.priority} alert, bed ${alert.bed}`,
    text: acked || ["answer", "none"].includes(waiting(alert)) ? "Acknowledged" : "Acknowledge",
    onclick: () => acknowledge(alert, button),
  });
  return el("li", {
    class: `alert prio-${slug(alert.priority)} kind-${slug(alert.kind)} status-${slug(alert.status)}`,
    "data-alert-id": alert.alert_id, "data-status": alert.status,
  },
  el("div", { class: "head" },
    el("span", { class: "badge", text: String(alert.priority).toUpperCase() }),
    el("span", { class: "kind", text: alert.kind === "technical" ? "technical" : "clinical" }),
    el("span", { class: "status", text: `${alert.status.replaceAll("_", " ")} ${deviceClock(alert.device_time_ms)}` }),
    button),
  el("p", { class: "summary", text: alert.raised_summary || alert.summary }),
  acked && ack ? el("p", { class: "acked", text: `Acknowledged by ${ack.by} at ${ack.shown || clock(ack.ms)}` }) : null,
  oversightLine(alert));
}

function oversightLine(alert) {
  const oversight = alert.oversight;
  if (!oversight) return null;
  const parts = [];
  if (oversight.holder) parts.push(`Held by ${holderText(alert)}`);
  if (oversight.acknowledged) parts.push(`accepted by ${oversight.acknowledged.name || oversight.acknowledged.user_id}`);
  if (oversight.answer) parts.push(`answered: ${String(oversight.answer.reason).replaceAll("_", " ")} by ${oversight.answer.name || oversight.answer.user_id}`);
  if (oversight.snooze) parts.push(`snoozed until ${wallClock(oversight.snooze.until_ms)} (${oversight.snooze.reason})`);
  const history = el("details", { class: "history" }, el("summary", { text: "History" }),
    el("ol", {}, ...(oversight.history || []).map((entry) => el("li", { text: historyText(entry) }))));
  return el("div", { class: "oversight" }, el("p", { class: "held", text: parts.join("; ") }), history);
}

function tile(wardName, bed) {
  const w = ward(wardName);
  const bedState = w.beds.get(bed);
  const alerts = [...w.alerts.values()].filter((a) => String(a.bed) === bed)
    .sort((a, b) => (PRIORITY_RANK[b.priority] || 0) - (PRIORITY_RANK[a.priority] || 0) || b.device_time_ms - a.device_time_ms);
  const top = alerts.find((a) => a.status !== "acknowledged") || alerts[0];
  const node = el("article", {
    id: `bed-${slug(wardName)}-${slug(bed)}`, class: `tile${top ? ` prio-${slug(top.priority)}` : ""}`,
    "data-ward": wardName, "data-bed": bed, "aria-label": `Ward ${wardName}, bed ${bed}`,
  });
  const header = el("header", {},
    el("h2", { text: `Bed ${bed}` }),
    el("span", { class: "patient", text: bedState ? bedState.patient_id : (alerts[0] || {}).patient_id }));
  if (bedState) {
    const old = Date.now() - bedState.time_ms > STALE_AFTER_MS;
    header.append(old ? el("span", { class: "stale-mark", "data-stale": "bed", text: `no data since ${deviceClock(bedState.time_ms)}` })
      : el("span", { class: "updated", text: deviceClock(bedState.time_ms) }));
  }
  for (const goal of w.goals.values()) {
    if (String(goal.bed) !== bed) continue;
    const body = (goal.payload || {}).goal || {};
    header.append(el("span", { class: "goal", "data-goal": body.goal,
      title: `${body.reason || ""} (set by ${body.name || body.user_id}, review ${wallClock(body.until_ms)})`,
      text: String(body.goal || "").replaceAll("_", " ") }));
  }
  node.append(header);
  if (bedState && bedState.news2) {
    const news2 = bedState.news2;
    const score = el("div", { class: "score" },
      el("div", { class: `news2 band-${slug(news2.band)}`, "data-news2": String(news2.total) },
        el("span", { class: "label", text: "NEWS2" }),
        el("span", { class: "total", text: String(news2.total) }),
        el("span", { class: "band", text: news2.band })),
      news2.partial ? el("span", { class: "partial", text: "partial" }) : null,
      typeof bedState.risk === "number" && bedState.risk_shown
        ? el("span", { class: "risk", "data-risk": bedState.risk.toFixed(3), text: `Risk ${(bedState.risk * 100).toFixed(0)} %` }) : null);
    node.append(score, vitals(bedState));
  }
  if (alerts.length) node.append(el("ul", { class: "alerts", "aria-label": "Open alerts" }, ...alerts.map(alertItem)));
  return node;
}

function updateHeader() {
  let open = 0, unacked = 0;
  for (const w of state.wards.values()) {
    for (const alert of w.alerts.values()) {
      open += 1;
      if (waiting(alert) === "ack") unacked += 1;
    }
  }
  document.getElementById("counts").textContent = `${open} open, ${unacked} not acknowledged`;
  document.getElementById("station").textContent = state.station || "Ward board";
  document.getElementById("wards").textContent = [...state.wards.keys()].sort().map((w) => `Ward ${w}`).join(", ");
  document.querySelectorAll("#first-alert").forEach((n) => n.removeAttribute("id"));
  const first = document.querySelector(".alert:not(.status-acknowledged) button.ack");
  if (first) first.id = "first-alert";
}

async function acknowledge(alert, button) {
  button.disabled = true;
  button.textContent = "Sending…";
  try {
    // Who acknowledges is the signed-in user, known to the server: nothing typed.
    const response = await fetch("/api/ack", {
      method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
      body: JSON.stringify({ alert_id: alert.alert_id }),
    });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    button.textContent = "Waiting for monitor…";  // the tile changes when the monitor confirms
  } catch (error) {
    button.disabled = false;
    button.textContent = "Acknowledge";
    announce(`Acknowledgement not sent: ${error.message}`);
  }
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/api/stream");
  source.onopen = () => { status.dataset.state = "live"; status.textContent = "live"; };
  source.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "snapshot") applySnapshot(data);
    else if (data.type === "alert") applyAlert(data.alert);
    else if (data.type === "bed") applyBed(data.state);
    else if (data.type === "goal") applyGoal(data.goal);
    else if (data.type === "bed_vacated") vacate(data.ward, data.bed);
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      status.dataset.state = "closed";
      status.textContent = "disconnected";
      // Signed out or the token was withdrawn: back to sign-in; else try again shortly.
      fetch("/api/me", { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) location.assign("/");
        else setTimeout(connect, 2000);
      }, () => setTimeout(connect, 2000));
    } else {
      status.dataset.state = "reconnecting";
      status.textContent = "reconnecting";
    }
  };
}

function nextUnacknowledged() {
  const buttons = [...document.querySelectorAll(".alert:not(.status-acknowledged) button.ack:not(:disabled)")];
  if (!buttons.length) return;
  const index = buttons.indexOf(document.activeElement);
  buttons[(index + 1) % buttons.length].focus();
}

document.addEventListener("keydown", (event) => {
  if (event.key === "n" && !(event.target instanceof HTMLInputElement)) {
    event.preventDefault();
    nextUnacknowledged();
  }
});

function tick() {
  document.getElementById("clock").textContent = new Date().toISOString().slice(11, 19) + " UTC";
}

fetch("/api/me", { credentials: "same-origin" }).then((r) => r.json()).then((me) => {
  state.canAcknowledge = Boolean(me.can_acknowledge);
  const who = document.getElementById("who");
  who.textContent = me.user ? `Signed in: ${me.user.name} (${me.user.role.replace("_", " ")})`
    : "Wall board: view only (sign in as yourself to acknowledge)";
  document.body.classList.toggle("view-only", !state.canAcknowledge);
  renderAll();
}, () => {});
setInterval(renderAttention, 30 * 1000);  // "held for N min" follows the clock
tick();
setInterval(tick, 1000);
setInterval(renderAll, 60 * 1000);  // stale-data markers follow the clock
connect();
