// Versions: every immutable model version (storage kind, size, content hash, parent job, metrics) with
// export buttons; an export's files download through fetch (the key goes as a header, never in a URL).
import { announce, api, boot, el, every, fetchRaw, fillTableIfChanged, fmtBytes, fmtNum, fmtTime, row } from "./app.js";

const EXPORTS = [
  { label: "HF", format: "hf", dtype: "fp32" },
  { label: "ONNX fp32", format: "onnx", dtype: "fp32" },
  { label: "ONNX fp16", format: "onnx", dtype: "fp16" },
];

async function download(file) {
  const res = await fetchRaw(file.url);
  const url = URL.createObjectURL(await res.blob());
  const a = el("a", { href: url, download: file.name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function exportVersion(v, e, button) {
  const out = document.getElementById("export-result");
  button.disabled = true;
  out.textContent = `Exporting ${v.name} as ${e.label}…`;
  try {
    const r = await api(`/v1/versions/${encodeURIComponent(v.id)}/export`, {
      method: "POST",
      body: { format: e.format, dtype: e.dtype },
    });
    out.replaceChildren(
      el("p", {}, `${v.name} → ${r.export} (${r.path})`),
      el(
        "ul",
        { class: "files" },
        ...r.files.map((f) =>
          el(
            "li",
            {},
            el("button", {
              type: "button",
              class: "link",
              onclick: () => download(f).catch((x) => announce(x.message, "error")),
            }, `Download ${f.name}`),
            ` ${fmtBytes(f.bytes)}`,
          )
        ),
      ),
    );
  } catch (err) {
    out.textContent = `Export failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

function storage(v) {
  const layers = v.layers ?? [];
  const ranks = [...new Set(layers.map((l) => l.rank))];
  const kind = v.delta_format === "lowrank" ? "low-rank log" : "dense";
  return ranks.length
    ? `${kind}, rank ${ranks.length === 1 ? ranks[0] : `${Math.min(...ranks)}–${Math.max(...ranks)}`}`
    : kind;
}

async function refresh() {
  const { data } = await api("/v1/versions?limit=500");
  const all = document.getElementById("show-checkpoints").checked;
  const shown = data.filter((v) => all || v.kind === "final");
  fillTableIfChanged(
    document.getElementById("versions"),
    shown.map((v) => v.id),
    () =>
      shown.map((v) => {
        const valid = v.metrics.final_valid_loss ?? v.metrics.full_valid_loss;
        return row(
          el("a", { href: `/ui/playground?model=${encodeURIComponent(v.name)}`, title: "Chat with it" }, v.name),
          v.kind,
          storage(v),
          fmtBytes(v.size_bytes),
          el("code", { title: v.content_hash }, v.content_hash.slice(0, 12)),
          v.job_id ? el("a", { href: `/ui/jobs/${v.job_id}` }, v.job_id) : "–",
          fmtNum(valid),
          fmtTime(v.created_at),
          el(
            "td",
            { class: "actions" },
            ...EXPORTS.map((e) => {
              const b = el(
                "button",
                { type: "button", class: "small", "aria-label": `Export ${v.name} as ${e.label}` },
                e.label,
              );
              b.addEventListener("click", () => exportVersion(v, e, b));
              return b;
            }),
          ),
        );
      }),
    "No versions yet.",
  );
}

boot(() => {
  document.getElementById("show-checkpoints").addEventListener("change", () => refresh());
  every(5000, refresh);
});
