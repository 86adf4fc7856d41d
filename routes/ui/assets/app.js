// The dashboard's shared client code: the API key (asked once per tab, sent
// only as a Bearer header), JSON and SSE calls to the API, small DOM helpers
// and formatters. Plain ES module, no build step.

const KEY = "scalora.apiKey";
const body = document.body;
const authRequired = body.dataset.auth === "required";

function apiKey() {
  return sessionStorage.getItem(KEY);
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

export class ApiFailure extends Error {
  constructor(status, error) {
    super(error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? null;
    this.param = error?.param ?? null;
  }
}

async function failure(res) {
  let error = null;
  try {
    error = (await res.json()).error;
  } catch { /* not JSON */ }
  if (res.status === 401 && authRequired) showGate("The key was not accepted; enter it again.");
  return new ApiFailure(res.status, error);
}

/** A JSON API call; `body` is sent as JSON, FormData as is. */
export async function api(path, { method = "GET", body: payload, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (payload instanceof FormData) init.body = payload;
  else if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res);
  return res.status === 204 ? null : await res.json();
}

/** A raw authorized fetch (downloads, text endpoints). */
export async function fetchRaw(path, init = {}) {
  const res = await fetch(path, { ...init, headers: headers(init.headers ?? {}) });
  if (!res.ok) throw await failure(res);
  return res;
}

/**
 * Reads a text/event-stream response (fetch, so the Bearer header goes along: EventSource cannot send one),
 * calling onData with each event's parsed `data`; resolves at `[DONE]` or the end of the stream.
 */
export async function readSSE(res, onData) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join(
        "\n",
      );
      if (!data) continue;
      if (data === "[DONE]") {
        reader.cancel().catch(() => {});
        return;
      }
      onData(JSON.parse(data));
    }
  }
}

/** POSTs JSON and streams the SSE answer. */
export async function streamSSE(path, payload, onData, signal) {
  const res = await fetchRaw(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
    signal,
  });
  await readSSE(res, onData);
}

/** Creates an element: `attrs` are attributes (`on*` functions become listeners), children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces a table's body rows; `empty` text when there are none. */
export function fillTable(table, rows, empty) {
  const tbody = table.tBodies[0];
  const cols = table.tHead.rows[0].cells.length;
  tbody.replaceChildren(
    ...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: cols }, empty))]),
  );
}

/**
 * Re-renders a polled table only when `signature` changed, so a refresh does not take the keyboard focus
 * away from a control in it.
 */
export function fillTableIfChanged(table, signature, rows, empty) {
  const sig = JSON.stringify(signature);
  if (table.dataset.sig === sig) return;
  table.dataset.sig = sig;
  fillTable(table, rows(), empty);
}

/** A short text or link (a status, a time, a number): kept on one line while long ones wrap. */
function isShort(c) {
  const text = typeof c === "string" ? c : c instanceof HTMLElement ? c.textContent : "";
  return text.length > 0 && text.length <= 24;
}

export const row = (...cells) =>
  el(
    "tr",
    {},
    ...cells.map((c) => (c instanceof HTMLTableCellElement ? c : el("td", { class: isShort(c) ? "short" : null }, c))),
  );

export function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

/** A message in the page's live status region (screen readers hear it). */
export function announce(text, kind = "info") {
  const s = document.getElementById("status");
  if (!s) return;
  s.textContent = text;
  s.dataset.kind = kind;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtNum(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toPrecision(digits);
}

export function fmtTime(unixSeconds) {
  if (!unixSeconds) return "–";
  return new Date(unixSeconds * 1000).toLocaleString();
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function badge(status) {
  return el("span", { class: `badge ${status}` }, status);
}

export const METHODS = { column: "ScaLoRA", scalar: "ScaLoRA-scalar", none: "LoRA" };

/** Every model the server serves, grouped by kind (GET /v1/models' owned_by). */
export async function listModels() {
  const { data } = await api("/v1/models");
  const group = (owner) => data.filter((m) => m.owned_by === owner).map((m) => m.id);
  return { aliases: group("alias"), bases: group("system"), versions: group("fine-tuned") };
}

/** Fills a <select> with model ids in optgroups. */
export function fillModelSelect(select, models, { selected, includeCheckpoints = true } = {}) {
  const keep = select.value;
  const versions = includeCheckpoints ? models.versions : models.versions.filter((v) => !/:ckpt-step-\d+$/.test(v));
  const groups = [["Aliases", models.aliases], ["Base models", models.bases], ["Fine-tuned versions", versions]];
  select.replaceChildren(
    ...groups.filter(([, ids]) => ids.length).map(([label, ids]) =>
      el("optgroup", { label }, ...ids.map((id) => el("option", { value: id }, id)))
    ),
  );
  const want = selected ?? keep;
  if (want && [...select.options].some((o) => o.value === want)) select.value = want;
}

function showGate(message = "") {
  document.getElementById("app").hidden = true;
  document.getElementById("key-gate").hidden = false;
  document.getElementById("key-error").textContent = message;
  document.getElementById("api-key").focus();
}

/** Runs the page once the API is reachable: at once when open, else after a key was accepted. */
export function boot(init) {
  const start = () => {
    document.getElementById("key-gate").hidden = true;
    document.getElementById("app").hidden = false;
    Promise.resolve(init()).catch((e) => announce(e.message, "error"));
  };
  document.getElementById("forget-key")?.addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  if (!authRequired) return start();
  document.getElementById("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = document.getElementById("api-key").value.trim();
    if (!key) return;
    const res = await fetch("/v1/models", { headers: { Authorization: `Bearer ${key}` } });
    if (!res.ok) {
      document.getElementById("key-error").textContent = res.status === 401
        ? "This key was not accepted."
        : `The server answered ${res.status}.`;
      return;
    }
    sessionStorage.setItem(KEY, key);
    document.getElementById("api-key").value = "";
    start();
  });
  if (apiKey()) start();
  else showGate();
}

/** Calls fn now and every `ms` while the page is visible; errors go to the status line. */
export function every(ms, fn) {
  let timer = null;
  const tick = async () => {
    try {
      await fn();
    } catch (e) {
      announce(e.message, "error");
    }
    timer = setTimeout(tick, ms);
  };
  tick();
  return () => clearTimeout(timer);
}
