// The hiagent-host console: plain DOM code over the /v1 API, no framework, no build step.
// Every text from the server is put into the page with textContent (never as HTML), so a
// plugin's metadata cannot inject markup. The API key lives in sessionStorage and is sent as
// a bearer token; config values (secrets included) live only in their form fields.
"use strict";

const KEY_STORE = "hiagent-host.apikey";
const PHASES = ["downloading", "validating", "creating venv", "installing dependencies", "probing"];
const REFRESH_MS = 2000; // processes, health and running jobs
const SECRET = "x-hiagent-secret";

const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ---- the API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(error, status) {
    super(error.message);
    this.code = error.code;
    this.data = error.data;
    this.status = status;
  }
}

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: "Bearer " + key } : extra;
}

async function envelope(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: reported below */ }
  if (body && body.error) {
    if (response.status === 401) showLogin(body.error.message);
    throw new ApiError(body.error, response.status);
  }
  if (!response.ok || !body) {
    throw new ApiError({ code: "HTTP" + response.status, message: response.statusText || "no JSON answer" }, response.status);
  }
  return body.data;
}

async function call(route, body = {}) {
  const response = await fetch("/v1/" + route, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  return envelope(response);
}

function errorBox(err) {
  const box = el("div", { class: "error-box", "data-testid": "error" },
    el("span", { class: "err" }, err.code || "Error"), ": ", err.message);
  if (err.data !== undefined && err.data !== null) box.append(el("pre", {}, JSON.stringify(err.data, null, 2)));
  return box;
}

// ---- the key ----------------------------------------------------------------------------

function showLogin(message) {
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#forget-key").hidden = !apiKey();
}

$("#login-form").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("#apikey").value.trim());
  $("#apikey").value = "";
  $("#login").hidden = true;
  updateKeyState();
  refreshAll();
});
$("#forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  updateKeyState();
  refreshAll();
});
function updateKeyState() {
  $("#key-state").textContent = apiKey() ? "API key set for this tab" : "";
  $("#forget-key").hidden = !apiKey();
}

// ---- views --------------------------------------------------------------------------------

let currentView = "packages";
for (const button of document.querySelectorAll("header nav [data-view]")) {
  button.addEventListener("click", () => showView(button.dataset.view));
}
function showView(name) {
  currentView = name;
  for (const b of document.querySelectorAll("header nav [data-view]")) {
    if (b.dataset.view === name) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  for (const panel of document.querySelectorAll("[data-view-panel]")) panel.hidden = panel.dataset.viewPanel !== name;
  refreshView();
}
function refreshView() {
  if (currentView === "packages") return loadPackages();
  if (currentView === "processes") return loadProcesses();
  if (currentView === "jobs") return loadJobs();
  return loadHealth();
}
function refreshAll() { loadHealthBadge(); refreshView(); }

// ---- formatting -------------------------------------------------------------------------------

function mib(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return (bytes / (1024 * 1024)).toFixed(1) + " MiB";
}
function when(text) {
  const date = new Date(text);
  return isNaN(date) ? String(text) : date.toLocaleString();
}

// ---- packages ---------------------------------------------------------------------------------

let openPackage = null; // {name, version} shown in the detail card

async function loadPackages() {
  const tbody = $("#packages-table tbody");
  let rows;
  try { rows = await call("ListPackages"); } catch (err) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7 }, errorBox(err))));
    return;
  }
  if (!rows.length) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No packages installed yet.")));
    return;
  }
  tbody.replaceChildren(...rows.map(p => el("tr", { "data-package": p.name, "data-version": p.version },
    el("td", {}, el("a", { href: "#", onclick: ev => { ev.preventDefault(); showPackage(p.name, p.version); } }, p.name)),
    el("td", {}, p.version),
    el("td", {}, p.plugins.join(", ")),
    el("td", {}, mib(p.disk_size_bytes)),
    el("td", {}, when(p.installed_at)),
    el("td", { class: "mono", title: p.wheel_sha256 }, (p.wheel_sha256 || "").slice(0, 12) + "…"),
    el("td", {},
      el("button", { type: "button", class: "secondary", title: "Install the same wheel again, replacing this version",
        onclick: () => startInstall("InstallPackageAsync", { uri: p.uri, filename: p.filename, force: true }) }, "Reinstall"), " ",
      el("button", { type: "button", class: "danger", "data-testid": "delete", onclick: () => deletePackage(p.name, p.version) }, "Delete")),
  )));
}

async function deletePackage(name, version) {
  if (!confirm(`Delete ${name} ${version}? Its processes are stopped and its venv and data removed.`)) return;
  try {
    await call("DeletePackage", { pkg: name, version });
  } catch (err) {
    $("#install-progress").replaceChildren(errorBox(err));
    return;
  }
  if (openPackage && openPackage.name === name && openPackage.version === version) {
    openPackage = null;
    $("#package-detail").hidden = true;
  }
  loadPackages();
}

$("#refresh-packages").addEventListener("click", loadPackages);

// ---- install with progress --------------------------------------------------------------------

$("#upload-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const file = $("#upload-file").files[0];
  if (!file) return;
  const force = $("#upload-force").checked;
  const box = $("#install-progress");
  box.replaceChildren(el("p", { class: "muted" }, `Uploading ${file.name} (${mib(file.size)})…`));
  let job;
  try {
    const query = new URLSearchParams({ filename: file.name, force: String(force) });
    const response = await fetch("/v1/UploadPackage?" + query, {
      method: "POST", headers: headers({ "Content-Type": "application/octet-stream" }), body: file,
    });
    job = await envelope(response);
  } catch (err) {
    box.replaceChildren(errorBox(err));
    return;
  }
  followJob(job.job_id, file.name, box);
});

$("#url-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const uri = $("#url-uri").value.trim();
  const filename = decodeURIComponent(new URL(uri).pathname.split("/").pop() || "");
  startInstall("InstallPackageAsync", { uri, filename, force: $("#url-force").checked });
});

async function startInstall(route, body) {
  const box = $("#install-progress");
  box.replaceChildren(el("p", { class: "muted" }, `Submitting ${body.filename}…`));
  let job;
  try { job = await call(route, body); } catch (err) { box.replaceChildren(errorBox(err)); return; }
  followJob(job.job_id, body.filename, box);
}

function progressView(filename, info) {
  const current = PHASES.indexOf(info.phase);
  const finished = info.status === "finished";
  const phases = el("ol", { class: "phases" }, PHASES.map((phase, i) =>
    el("li", { class: finished || (current >= 0 && i < current) ? "done" : i === current ? "current" : "" }, phase)));
  const parts = [el("div", { class: "row" }, el("strong", {}, filename), " ",
    el("span", { "data-testid": "job-status", class: finished ? "ok" : ["failed", "stopped"].includes(info.status) ? "err" : "" }, info.status),
    info.phase ? el("span", { class: "muted" }, info.phase) : null), phases];
  if (info.phase === "downloading" && info.downloaded_bytes !== null && info.downloaded_bytes !== undefined) {
    const total = info.download_size_bytes;
    parts.push(el("div", { class: "row" },
      total ? el("progress", { max: total, value: info.downloaded_bytes }) : null,
      `${mib(info.downloaded_bytes)}${total ? " of " + mib(total) : ""} downloaded`));
  }
  if (info.reason) parts.push(el("div", { class: "error-box" }, info.reason));
  if (finished && info.data) parts.push(el("p", { class: "ok", "data-testid": "installed" }, `Installed ${info.data.name} ${info.data.version}.`));
  return parts;
}

async function followJob(jobId, filename, box) {
  for (;;) {
    let info;
    try { info = await call("GetInstallPackageAsyncStatus", { job_id: jobId }); } catch (err) {
      box.replaceChildren(errorBox(err));
      return;
    }
    box.replaceChildren(...progressView(filename, info));
    if (["finished", "failed", "stopped"].includes(info.status)) {
      loadPackages();
      if (info.status === "finished" && info.data) showPackage(info.data.name, info.data.version);
      return;
    }
    await new Promise(resolve => setTimeout(resolve, 300));
  }
}

// ---- one package: plugins, tools, forms, log ------------------------------------------------

async function showPackage(name, version) {
  openPackage = { name, version };
  const card = $("#package-detail");
  card.hidden = false;
  card.replaceChildren(el("h2", {}, `${name} ${version}`), el("p", { class: "muted" }, "Loading…"));
  let plugins, listed;
  try {
    // GetPackageMetadata lists the plugins in the order of their entry-point names, which
    // calls use (a plugin's own `name` may be a display name).
    [plugins, listed] = await Promise.all([call("GetPackageMetadata", { pkg: name, version }), call("ListPackages")]);
  } catch (err) {
    card.replaceChildren(el("h2", {}, `${name} ${version}`), errorBox(err));
    return;
  }
  const row = listed.find(p => p.name === name && p.version === version);
  const entries = row ? row.plugins : plugins.map(p => p.name);
  const log = el("div");
  card.replaceChildren(el("h2", {}, `${name} ${version}`),
    ...plugins.map((plugin, i) => pluginView(name, version, entries[i], plugin)),
    el("h3", {}, "Log (plugin stderr, secrets masked) ",
      el("button", { type: "button", class: "secondary", onclick: () => loadLog(name, version, log) }, "Refresh")), log);
  loadLog(name, version, log);
  card.scrollIntoView({ block: "start" });
}

function pluginView(pkg, version, entry, plugin) {
  const icon = el("img", { alt: "" });
  call("GetPluginIcon", { pkg, version, plugin: entry })
    .then(data => { icon.src = iconSource(data); })
    .catch(() => { icon.hidden = true; });
  const labels = plugin.labels || {};
  const names = [...new Set([entry, plugin.name, labels.name_en].filter(Boolean))];
  const title = names[0] + (names.length > 1 ? ` (${names.slice(1).join(", ")})` : "");
  const config = schemaForm(plugin.config_schema || {}, "cfg");
  const configSection = config.empty ? null : el("div", {},
    el("h3", {}, "Config"), config.node,
    el("div", { class: "row" }, el("button", { type: "button", class: "secondary", onclick: () => validate(pkg, version, entry, config, configOut) }, "Validate config")));
  const configOut = el("div");
  return el("div", { class: "plugin", "data-plugin": entry },
    el("div", { class: "plugin-head" }, icon, el("div", {}, el("strong", {}, title), el("div", { class: "muted" }, labels.description_en || plugin.description || ""))),
    configSection, configOut,
    el("h3", {}, "Tools"),
    ...Object.values(plugin.tools || {}).map(tool => toolView(pkg, version, entry, tool, config)));
}

function iconSource(data) {
  const ext = data.filename.split(".").pop().toLowerCase();
  const type = { svg: "image/svg+xml", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp" }[ext] || "image/png";
  return `data:${type};base64,${data.content}`;
}

async function validate(pkg, version, plugin, config, out) {
  let cfg;
  try { cfg = config.value(); } catch (err) { out.replaceChildren(errorBox(err)); return; }
  out.replaceChildren(el("p", { class: "muted" }, "Validating…"));
  try {
    await call("RunPluginValidate", { pkg, version, plugin, cfg });
    out.replaceChildren(el("p", { class: "ok" }, "The plugin accepts this config."));
  } catch (err) { out.replaceChildren(errorBox(err)); }
}

function toolView(pkg, version, plugin, tool, config) {
  const form = schemaForm(tool.input_schema || {}, "input");
  const out = el("div", { "data-testid": "tool-result" });
  const streams = Boolean(tool.stream_func_name);
  const stream = el("input", { type: "checkbox", checked: streams });
  const run = async ev => {
    ev.preventDefault();
    let input, cfg;
    try { input = form.value(); cfg = config.value(); } catch (err) { out.replaceChildren(errorBox(err)); return; }
    const body = { pkg, version, plugin, tool: tool.name, input, cfg: config.empty ? null : cfg };
    if (streams && stream.checked) return runStream(body, out);
    out.replaceChildren(el("p", { class: "muted" }, "Running…"));
    const started = performance.now();
    try {
      const result = await call("RunPluginTool", body);
      out.replaceChildren(el("div", { class: "row" }, el("span", { class: "ok" }, "result"),
        el("span", { class: "muted" }, `${Math.round(performance.now() - started)} ms`)),
        el("pre", { "data-testid": "result" }, JSON.stringify(result, null, 2)));
    } catch (err) { out.replaceChildren(errorBox(err)); }
  };
  const labels = tool.labels || {};
  return el("details", { class: "tool", "data-tool": tool.name },
    el("summary", {}, tool.name, labels.name_en && labels.name_en !== tool.name ? ` (${labels.name_en})` : "",
      el("span", { class: "muted" }, " — ", tool.description || "")),
    el("form", { onsubmit: run }, form.node,
      el("div", { class: "row" }, el("button", { type: "submit" }, "Run"),
        streams ? el("label", {}, stream, " stream (items as they arrive)") : null)),
    out);
}

async function runStream(body, out) {
  const items = el("ul", { class: "items", "data-testid": "stream-items" });
  const state = el("span", { class: "muted" }, "streaming…");
  out.replaceChildren(el("div", { class: "row" }, state), items);
  let response;
  try {
    response = await fetch("/v1/RunPluginTool", {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify({ ...body, stream: true }),
    });
  } catch (err) { out.replaceChildren(errorBox(err)); return; }
  if (!(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
    try { await envelope(response); } catch (err) { out.replaceChildren(errorBox(err)); }
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (!event) continue;
      if (event.event === "done") { state.textContent = `done: ${items.children.length} item(s)`; state.className = "ok"; return; }
      if (event.event === "error") {
        let error;
        try { error = JSON.parse(event.data); } catch { error = { code: "StreamError", message: event.data }; }
        out.append(errorBox(error));
        state.textContent = "failed";
        state.className = "err";
        return;
      }
      const shown = event.event && event.event !== "message" ? `[${event.event}] ${event.data}` : event.data;
      items.append(el("li", {}, shown));
    }
  }
  state.textContent = "the stream ended without its done event";
  state.className = "warn";
}

function parseEvent(block) {
  const event = {};
  let data = null;
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "data") data = data === null ? value : data + "\n" + value;
    else event[field] = value;
  }
  if (data === null && !event.event) return null;
  event.data = data === null ? "" : data;
  return event;
}

async function loadLog(pkg, version, box) {
  try {
    const log = await call("GetPackageLog", { pkg, version, max_lines: 200 });
    box.replaceChildren(log.lines.length
      ? el("pre", { "data-testid": "log" }, (log.truncated ? "…\n" : "") + log.lines.join("\n"))
      : el("p", { class: "muted" }, "Nothing logged yet."));
  } catch (err) { box.replaceChildren(errorBox(err)); }
}

// ---- forms from JSON Schema -----------------------------------------------------------------
// A form for an object schema: one field per property (string, number, integer, boolean, enum
// as inputs; anything else as JSON text). `value()` returns the object, or throws a typed error.

function schemaForm(schema, prefix) {
  const defs = schema.$defs || schema.definitions || {};
  const resolve = s => {
    for (let i = 0; s && s.$ref && i < 8; i++) s = defs[s.$ref.split("/").pop()] || {};
    return s || {};
  };
  const root = resolve(schema);
  const props = root.properties || {};
  const required = new Set(root.required || []);
  const node = el("div");
  const readers = [];
  for (const [name, raw] of Object.entries(props)) {
    const { input, read } = fieldFor(name, raw, resolve, required.has(name), `${prefix}-${name}`);
    const prop = resolve(raw);
    node.append(el("div", { class: "field" },
      el("label", { for: `${prefix}-${name}` }, prop.title || name, required.has(name) ? el("span", { class: "req" }, " *") : null),
      el("div", {}, input, prop.description ? el("div", { class: "hint" }, prop.description) : null)));
    readers.push([name, read]);
  }
  const empty = readers.length === 0;
  if (empty && root.additionalProperties !== false && root.type !== undefined && prefix === "input") {
    // A schema with no declared properties: free JSON.
    const area = el("textarea", { id: `${prefix}-json`, spellcheck: "false" }, "{}");
    node.append(area);
    return { node, empty: false, value: () => parseJson(area.value, "input") };
  }
  return {
    node, empty,
    value() {
      const out = {};
      for (const [name, read] of readers) {
        const v = read();
        if (v !== undefined) out[name] = v;
      }
      return out;
    },
  };
}

function fieldFor(name, raw, resolve, isRequired, id) {
  let prop = resolve(raw);
  const options = prop.anyOf || prop.oneOf;
  if (options) { // Optional[X] is anyOf [X, null]: use X
    const real = options.map(resolve).filter(s => s.type !== "null");
    if (real.length === 1) prop = { ...real[0], ...prop, anyOf: undefined, oneOf: undefined, type: real[0].type, enum: real[0].enum };
  }
  const secret = raw[SECRET] === true || prop[SECRET] === true;
  const def = prop.default;
  if (Array.isArray(prop.enum)) {
    const select = el("select", { id, name },
      isRequired ? null : el("option", { value: "" }, "(not set)"),
      prop.enum.map(v => el("option", { value: JSON.stringify(v), selected: def !== undefined && JSON.stringify(def) === JSON.stringify(v) }, String(v))));
    return { input: select, read: () => (select.value === "" ? undefined : JSON.parse(select.value)) };
  }
  if (prop.type === "boolean") {
    const box = el("input", { type: "checkbox", id, name, checked: def === true });
    return { input: box, read: () => box.checked };
  }
  if (prop.type === "string") {
    const input = el("input", { type: secret ? "password" : "text", id, name, size: 40, autocomplete: secret ? "new-password" : "off",
      placeholder: def !== undefined && !secret ? String(def) : "" });
    if (def !== undefined && !secret) input.value = String(def);
    return { input, read: () => {
      if (input.value === "" && !isRequired) return undefined;
      return input.value;
    } };
  }
  if (prop.type === "integer" || prop.type === "number") {
    const input = el("input", { type: "number", id, name, step: prop.type === "integer" ? "1" : "any" });
    if (def !== undefined && def !== null) input.value = String(def);
    return { input, read: () => {
      if (input.value === "") {
        if (isRequired) throw { code: "InvalidToolInput", message: `${name} is required` };
        return undefined;
      }
      const n = Number(input.value);
      if (prop.type === "integer" && !Number.isInteger(n)) throw { code: "InvalidToolInput", message: `${name} must be a whole number` };
      return n;
    } };
  }
  const area = el("textarea", { id, name, spellcheck: "false", placeholder: "JSON" });
  if (def !== undefined) area.value = JSON.stringify(def, null, 2);
  return { input: area, read: () => (area.value.trim() === "" && !isRequired ? undefined : parseJson(area.value, name)) };
}

function parseJson(text, what) {
  try { return JSON.parse(text); } catch (err) {
    throw { code: "InvalidJSON", message: `${what}: not valid JSON (${err.message})` };
  }
}

// ---- processes, jobs, health ------------------------------------------------------------------

async function loadProcesses() {
  const tbody = $("#processes-table tbody");
  let rows;
  try { rows = await call("ListProcesses"); } catch (err) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 11 }, errorBox(err))));
    return;
  }
  if (!rows.length) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 11, class: "muted" }, "No plugin processes running.")));
    return;
  }
  tbody.replaceChildren(...rows.map(p => el("tr", {},
    el("td", {}, p.pkg), el("td", {}, p.version), el("td", {}, p.replica), el("td", {}, p.pid ?? "-"),
    el("td", {}, p.state), el("td", {}, `${Math.round(p.uptime_s)} s`), el("td", {}, p.calls_in_flight),
    el("td", {}, p.calls_total), el("td", {}, p.restarts), el("td", {}, mib(p.rss_bytes)),
    el("td", {}, p.last_exit_reason || "-"))));
}

async function loadJobs() {
  const tbody = $("#jobs-table tbody");
  let jobs;
  try { jobs = await call("ListJobs", { limit: 100 }); } catch (err) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7 }, errorBox(err))));
    return;
  }
  if (!jobs.length) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No install jobs (finished ones expire after queue.result_ttl_s).")));
    return;
  }
  tbody.replaceChildren(...jobs.map(job => {
    const actions = el("td");
    if (["queued", "started", "deferred"].includes(job.status)) {
      actions.append(el("button", { type: "button", class: "danger", onclick: () => jobAction("CancelInstallPackage", job.job_id) }, "Cancel"));
    } else {
      actions.append(el("button", { type: "button", class: "secondary", onclick: () => jobAction("RetryInstallPackage", job.job_id) }, "Retry"));
    }
    const detail = job.reason || (job.data ? `${job.data.name} ${job.data.version}` : "");
    const status = el("span", { class: job.status === "finished" ? "ok" : ["failed", "stopped"].includes(job.status) ? "err" : "" }, job.status);
    return el("tr", { "data-job": job.job_id },
      el("td", { class: "mono", title: job.job_id }, job.job_id.slice(0, 12)), el("td", {}, job.filename),
      el("td", {}, status), el("td", {}, job.phase || ""), el("td", {}, detail), el("td", {}, when(job.enqueued_at)), actions);
  }));
}

async function jobAction(route, jobId) {
  try { await call(route, { job_id: jobId }); } catch (err) { alert(`${err.code}: ${err.message}`); }
  loadJobs();
}

async function fetchHealth() {
  const response = await fetch("/v1/health", { headers: headers() });
  const body = await response.json();
  return body.data || (body.error && body.error.data) || {};
}

async function loadHealthBadge() {
  try {
    const health = await fetchHealth();
    const badge = $("#health-badge");
    badge.textContent = health.status || "unknown";
    badge.className = health.status === "ok" ? "ok" : "err";
    $("#version").textContent = health.version ? "v" + health.version : "";
  } catch { $("#health-badge").textContent = "unreachable"; $("#health-badge").className = "err"; }
}

async function loadHealth() {
  const box = $("#health");
  try {
    const h = await fetchHealth();
    const pool = h.pool || {}, queue = h.queue || {};
    box.replaceChildren(
      el("p", {}, "status: ", el("span", { class: h.status === "ok" ? "ok" : "err" }, h.status), ` · version ${h.version} · up ${Math.round(h.uptime_s)} s`),
      el("h3", {}, "Pool"), el("pre", {}, JSON.stringify(pool, null, 2)),
      el("h3", {}, "Install queue"), el("pre", {}, JSON.stringify(queue, null, 2)));
  } catch (err) { box.replaceChildren(errorBox(err)); }
}

// ---- start ----------------------------------------------------------------------------------------

updateKeyState();
refreshAll();
setInterval(() => {
  if (document.hidden) return;
  loadHealthBadge();
  if (currentView === "processes" || currentView === "jobs" || currentView === "health") refreshView();
}, REFRESH_MS);
