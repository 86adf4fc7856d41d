// Overview: readiness and disk (/ready), device, base models, engines and memory, running job
// (/v1/dashboard), and queue depth, request rate and tokens/s from two scrapes of /metrics.
import { api, boot, el, every, fillTable, fmtBytes, fmtNum, row, setText } from "./app.js";

/** Sums the samples of each metric family in a Prometheus text exposition (those `keep(labels)` accepts). */
function sumMetrics(text, keep = () => true) {
  const sums = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !keep(m[1], m[2] ?? "")) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) sums.set(m[1], (sums.get(m[1]) ?? 0) + v);
  }
  return sums;
}

let last = null;

async function refresh() {
  const ready = await fetch("/ready").then((r) => r.json()).catch(() => null);
  setText("ov-status", ready ? ready.status : "unreachable");
  if (ready?.disk) {
    setText(
      "ov-disk",
      `${fmtBytes(ready.disk.free_bytes)} of ${fmtBytes(ready.disk.total_bytes)}` +
        (ready.disk.pressure ? " (low!)" : ""),
    );
  }

  const ov = await api("/v1/dashboard");
  setText("ov-device", `${ov.device} (${ov.dtype})`);
  setText("ov-bases", ov.base_models.join(", "));
  const job = document.getElementById("ov-job");
  job.replaceChildren(ov.running_job ? el("a", { href: `/ui/jobs/${ov.running_job}` }, ov.running_job) : "none");
  setText("ov-memory", `${fmtBytes(ov.memory.used_bytes)} / ${fmtBytes(ov.memory.budget_bytes)}`);
  fillTable(
    document.getElementById("engines"),
    ov.engines.map((e) =>
      row(e.model, fmtBytes(e.bytes), e.busy ? "yes" : "no", String(e.queue_depth), String(e.active_sequences))
    ),
    "No engine loaded yet.",
  );

  const text = await fetch("/metrics").then((r) => r.text());
  // API traffic only: not the pages, their assets, or this page's own polling.
  const apiOnly = (name, labels) =>
    name !== "scalora_http_requests_total" ||
    (/route="\/v1\//.test(labels) && !/route="\/v1\/dashboard/.test(labels));
  const now = { at: performance.now(), m: sumMetrics(text, apiOnly) };
  setText("ov-queue", fmtNum(now.m.get("scalora_queue_depth") ?? 0));
  setText("ov-active", fmtNum(now.m.get("scalora_active_sequences") ?? 0));
  if (last) {
    const dt = (now.at - last.at) / 1000;
    const rate = (name) => Math.max(0, ((now.m.get(name) ?? 0) - (last.m.get(name) ?? 0)) / dt);
    setText("ov-rps", fmtNum(rate("scalora_http_requests_total"), 3));
    setText("ov-tps", fmtNum(rate("scalora_completion_tokens_total"), 3));
  }
  last = now;
}

boot(() => {
  every(2000, refresh);
});
