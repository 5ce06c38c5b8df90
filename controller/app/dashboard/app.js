// Berth's dashboard: a thin view of the HTTP API. No framework, no build step, no CDN.
// The token lives in sessionStorage (this tab only). Live updates come from
// GET /api/v1/stream read with fetch (EventSource cannot send an Authorization header);
// on a reconnect the last id goes back as Last-Event-ID, and changes are de-duplicated
// on their `seq`. Every text from the server is set with textContent, never as HTML.
"use strict";

const state = {
  token: sessionStorage.getItem("berth.token"),
  scope: null,
  rows: new Map(),       // deployment name -> overview row, kept current by the stream
  builds: [],
  seen: new Set(),       // stream seqs already applied
  cursor: null,          // Last-Event-ID for a reconnect
  abort: null,
  detail: null,          // the deployment whose page is open
  buildId: null,         // the build whose log is shown
  logSeq: 0,
  oldestEvent: null,
};
const $ = (id) => document.getElementById(id);
const timers = {};

function debounce(key, ms, fn) {
  clearTimeout(timers[key]);
  timers[key] = setTimeout(fn, ms);
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + state.token, ...(options.headers || {}) };
  if (typeof options.body === "string") headers["Content-Type"] = "application/json";
  const response = await fetch("/api/v1" + path, { ...options, headers });
  const text = await response.text();
  const json = (response.headers.get("content-type") || "").includes("json");
  const body = json && text ? JSON.parse(text) : text;
  if (response.status === 401) logout(body.error || "token refused");
  if (!response.ok) throw new Error((body && body.error) || response.statusText);
  return body;
}

// --- login --------------------------------------------------------------------------------
async function login(token) {
  state.token = token;
  try {
    const who = await api("/token");
    state.scope = who.scope;
    sessionStorage.setItem("berth.token", token);
    $("who").textContent = `${who.name} (${who.scope})`;
    $("logout").hidden = false;
    $("login").hidden = true;
    follow();
    const cluster = await api("/cluster");
    $("cluster").textContent = `cluster ${cluster.cluster} · leader term ${cluster.term ?? "-"}`;
    route();
  } catch (error) {
    $("login-error").textContent = String(error.message || error);
    logout();
  }
}

function logout(reason) {
  sessionStorage.removeItem("berth.token");
  state.token = null;
  if (state.abort) state.abort.abort();
  for (const id of ["overview", "detail"]) $(id).hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
  if (reason) $("login-error").textContent = reason;
}

// --- the live stream ------------------------------------------------------------------------
async function follow() {
  if (state.abort) state.abort.abort();
  const abort = new AbortController();
  state.abort = abort;
  while (state.token && !abort.signal.aborted) {
    try {
      const headers = { Authorization: "Bearer " + state.token };
      if (state.cursor !== null) headers["Last-Event-ID"] = String(state.cursor);
      const response = await fetch("/api/v1/stream", { headers, signal: abort.signal });
      if (!response.ok) throw new Error("stream: " + response.status);
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + value).replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          receive(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (abort.signal.aborted) return;
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function setLive(on) {
  $("live").className = "live " + (on ? "on" : "off");
  $("live").textContent = on ? "live" : "reconnecting";
}

function receive(block) {
  let event = "message", data = "", id = null;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data += value;
    else if (field === "id") id = value;
  }
  if (id !== null) state.cursor = Number(id);
  if (event === "hello" || !data) return;
  const change = JSON.parse(data);
  if (state.seen.has(change.seq)) return;
  state.seen.add(change.seq);
  if (state.seen.size > 20000) state.seen.delete(state.seen.values().next().value);
  apply(event, change);
}

function apply(kind, change) {
  const name = change.deployment, data = change.data;
  const row = state.rows.get(name);
  if (kind === "status" || kind === "spec") {
    if (!row) { debounce("overview", 100, loadOverview); return; }
    if (kind === "status") Object.assign(row, data);
    else Object.assign(row, { desired_replicas: data.replicas, image: data.image,
                              generation: data.generation, routes: data.routes });
    renderRow(row);
    if (state.detail === name) renderDetailStatus(row);
    if (kind === "status") placementChanged(name);  // nodes.js: replicas move with the status
  } else if (kind === "event") {
    // the row was deleted (the status stays until its containers are gone): re-read;
    // the last event of a deleted deployment ends its phases: it is gone
    if (data.action === "deleted") debounce("overview", 100, loadOverview);
    if (data.kind === "phase" && data.phase_to === null) { state.rows.delete(name); removeRow(name); }
    if (state.detail === name) prependEvent(data);
  } else if (kind === "build") {
    debounce("builds", 150, loadBuilds);
    if (state.detail === name && data.id !== state.buildId && data.status === "queued") {
      showBuild(data.id);
    }
  } else if (kind === "log") {
    if (state.detail === name && data.build_id !== state.buildId) {
      $("build-section").hidden = false;
      showBuild(data.build_id);
    }
    else if (state.detail === name && data.seq > state.logSeq) appendLog([data]);
  }
}

// --- the overview ---------------------------------------------------------------------------
async function loadOverview() {
  const body = await api("/deployments");
  const names = new Set();
  for (const row of body.items) {
    names.add(row.name);
    state.rows.set(row.name, row);
    renderRow(row);
  }
  for (const name of [...state.rows.keys()]) {
    if (!names.has(name)) { state.rows.delete(name); removeRow(name); }
  }
}

function rowId(name) { return "row-" + name; }

function removeRow(name) {
  const tr = $(rowId(name));
  if (tr) tr.remove();
}

function renderRow(row) {
  let tr = $(rowId(row.name));
  if (!tr) {
    tr = el("tr");
    tr.id = rowId(row.name);
    const rows = [...$("deployments").tBodies[0].rows];
    const next = rows.find((other) => other.id > tr.id);
    $("deployments").tBodies[0].insertBefore(tr, next || null);
  }
  tr.replaceChildren();
  const link = el("a", row.name);
  link.href = "#/d/" + encodeURIComponent(row.name);
  const name = el("td"); name.append(link);
  const phase = el("td"); phase.append(el("span", row.phase, "phase " + row.phase));
  const progress = el("progress");
  progress.max = 100;
  progress.value = row.phase_progress;
  progress.className = "progress";
  const progressCell = el("td"); progressCell.append(progress);
  const route = (row.routes || [])[0];
  tr.append(name, phase, progressCell,
    el("td", `${row.ready_replicas}/${row.desired_replicas}`, "ready"),
    el("td", row.serving_revision ?? "-"),
    el("td", route ? route.host + (route.path_prefix || "/") : "-"),
    el("td", row.message, "message"));
  tr.dataset.phase = row.phase;
  tr.dataset.progress = row.phase_progress;
}

async function loadBuilds() {
  const body = await api("/builds?limit=20");
  const tbody = $("builds").tBodies[0];
  tbody.replaceChildren();
  for (const build of body.items) {
    const tr = el("tr");
    tr.id = "build-" + build.id;
    const action = el("td");
    if (state.scope === "write" && (build.status === "queued" || build.status === "running")
        && !build.cancel_requested_at) {
      const button = el("button", "Cancel");
      button.id = "cancel-" + build.id;
      button.onclick = () => cancelBuild(build.id);
      action.append(button);
    }
    tr.append(el("td", build.id), el("td", build.deployment), el("td", build.status, "status"),
      el("td", build.position ? `${build.position} of ${build.queue_length}` : "-"),
      el("td", build.step), el("td", build.progress + "%"), action);
    tbody.append(tr);
  }
}

async function cancelBuild(id) {
  try {
    await api(`/builds/${id}/cancel`, { method: "POST" });
    $("action-result").textContent = `build ${id}: cancel requested`;
  } catch (error) {
    $("action-result").textContent = String(error.message);
  }
  loadBuilds();
}

// --- a deployment's page ----------------------------------------------------------------------
async function loadDetail(name) {
  state.detail = name;
  state.buildId = null;
  $("detail-name").textContent = name;
  $("actions").hidden = state.scope !== "write";
  $("action-result").textContent = "";
  $("events").replaceChildren();
  $("build-log").textContent = "";
  const found = await api("/deployments/" + encodeURIComponent(name));
  state.rows.set(name, found.status);
  renderDetailStatus(found.status);
  renderReplicas(found.replicas || []);
  $("scale-to").value = found.spec.replicas ?? 1;
  $("retry").hidden = !found.spec.source;
  $("cancel-build").hidden = !found.spec.source;
  const events = await api(`/deployments/${encodeURIComponent(name)}/events?limit=50`);
  for (const event of events.items) $("events").append(eventItem(event));
  state.oldestEvent = events.items.length ? events.items[events.items.length - 1].id : null;
  $("older-events").hidden = !events.next;
  $("build-section").hidden = !found.latest_build;
  if (found.latest_build) showBuild(found.latest_build);
  loadRevisions(name);
  loadContainerLogs(name);
}

function renderDetailStatus(row) {
  $("detail-phase").textContent = row.phase;
  $("detail-phase").className = "phase " + row.phase;
  $("detail-progress").value = row.phase_progress;
  $("detail-ready").textContent = `${row.ready_replicas}/${row.desired_replicas} ready`;
  $("detail-revision").textContent = "revision " + (row.serving_revision ?? "-");
  $("detail-message").textContent = row.message;
}

function renderReplicas(rows) {
  const tbody = $("replicas").tBodies[0];
  tbody.replaceChildren();
  for (const r of rows) {
    const tr = el("tr", null, r.state);
    tr.id = `replica-${r.slot}-${r.revision}`;
    tr.append(el("td", r.slot), el("td", r.revision), el("td", r.node), el("td", r.state),
      el("td", r.health || "-"), el("td", r.address || "-"), el("td", r.restarts), el("td", r.note || ""));
    tbody.append(tr);
  }
}

function eventItem(event) {
  const item = el("li", null, event.level);
  const when = el("time", new Date(event.at).toLocaleTimeString());
  const what = event.phase_to ? `${event.phase_from || "-"} → ${event.phase_to}: ` : "";
  item.append(when, document.createTextNode(what + event.message));
  return item;
}

function prependEvent(event) { $("events").prepend(eventItem(event)); }

async function olderEvents() {
  const name = encodeURIComponent(state.detail);
  const page = await api(`/deployments/${name}/events?limit=50&before=${state.oldestEvent}`);
  for (const event of page.items) $("events").append(eventItem(event));
  if (page.items.length) state.oldestEvent = page.items[page.items.length - 1].id;
  $("older-events").hidden = !page.next;
}

async function showBuild(id) {
  state.buildId = id;
  state.logSeq = 0;
  $("build-id").textContent = "#" + id;
  $("build-log").textContent = "";
  const body = await api(`/builds/${id}/logs`);
  if (state.buildId === id) appendLog(body.items);
}

function appendLog(lines) {
  const pre = $("build-log");
  for (const line of lines) {
    if (line.seq <= state.logSeq) continue;
    state.logSeq = line.seq;
    pre.append(document.createTextNode(line.line + "\n"));
  }
  pre.scrollTop = pre.scrollHeight;
}

async function loadRevisions(name) {
  const body = await api(`/deployments/${encodeURIComponent(name)}/revisions`);
  const tbody = $("revisions").tBodies[0];
  tbody.replaceChildren();
  for (const r of body.items) {
    const tr = el("tr");
    tr.append(el("td", r.revision), el("td", r.generation), el("td", r.outcome), el("td", r.image),
      el("td", new Date(r.created_at).toLocaleString()), el("td", r.reason));
    tbody.append(tr);
  }
}

async function loadContainerLogs(name) {
  try {
    const text = await api(`/deployments/${encodeURIComponent(name)}/logs?tail=200`);
    $("container-logs").textContent = text || "(no output yet)";
  } catch (error) {
    $("container-logs").textContent = String(error.message);
  }
}

async function act(description, call) {
  try {
    const body = await call();
    $("action-result").textContent = description + ": " + JSON.stringify(body);
  } catch (error) {
    $("action-result").textContent = description + " failed: " + error.message;
  }
}

function wireActions() {
  const path = () => "/deployments/" + encodeURIComponent(state.detail);
  $("scale").onclick = () => act("scale", () => api(path(), {
    method: "PATCH", body: JSON.stringify({ replicas: Number($("scale-to").value) }) }));
  $("rollback").onclick = () => act("rollback", () => api(path() + "/rollback", {
    method: "POST", body: "{}" }));
  $("retry").onclick = () => act("build again", () => api(path() + "/retry", { method: "POST" }));
  $("cancel-build").onclick = () => state.buildId && cancelBuild(state.buildId);
  $("delete").onclick = async () => {
    if (!confirm(`Delete deployment ${state.detail}? Its containers will be removed.`)) return;
    await act("delete", () => api(path(), { method: "DELETE" }));
    location.hash = "#/";
  };
  $("older-events").onclick = olderEvents;
  $("refresh-logs").onclick = () => loadContainerLogs(state.detail);
  $("logout").onclick = () => logout();
  $("login-form").onsubmit = (event) => { event.preventDefault(); login($("token").value.trim()); };
}

// --- navigation -------------------------------------------------------------------------------
function route() {
  if (!state.token) return;
  const match = location.hash.match(/^#\/d\/(.+)$/);
  $("overview").hidden = Boolean(match);
  $("detail").hidden = !match;
  if (match) {
    loadDetail(decodeURIComponent(match[1])).catch((error) => {
      $("detail-message").textContent = String(error.message);
    });
  } else {
    state.detail = null;
    loadOverview();
    loadBuilds();
    loadNodes();
  }
}

window.addEventListener("hashchange", route);
wireActions();
if (state.token) login(state.token); else logout();
