// Aliases: what each alias points at and serves here, switch (with the target's validation result), "evaluate,
// then switch" (the gate's decision with both scores), one-click rollback, and the history.
import {
  announce,
  api,
  boot,
  el,
  every,
  fillModelSelect,
  fillTable,
  fillTableIfChanged,
  fmtNum,
  fmtTime,
  listModels,
  row,
} from "./app.js";

const result = document.getElementById("switch-result");
const historySelect = document.getElementById("history-alias");

function decisionText(d) {
  const inc = d.incumbent ? `${d.incumbent.model} ${fmtNum(d.incumbent.score)}` : "no current target";
  return `${d.decision}: ${d.metric} ${fmtNum(d.candidate.score)} (candidate) vs ${inc}` +
    (d.threshold !== null && d.must_beat !== "current" ? `, must beat ${fmtNum(d.threshold)}` : "");
}

function showSwitch(r) {
  const ev = r.switch;
  result.replaceChildren(
    el("p", { class: "ok" }, `✓ ${r.name} now serves ${r.serving}` + (r.changed ? "" : " (it already did)")),
    ev
      ? el(
        "p",
        {},
        `Validated before the switch: loaded in ${fmtNum(ev.load_ms, 3)} ms, checked (finite logits, smoke ` +
          `generation) in ${fmtNum(ev.validate_ms, 3)} ms.`,
      )
      : "",
  );
}

function showDecision(r) {
  const d = r.evaluation;
  result.replaceChildren(
    el(
      "p",
      { class: d.decision === "refused" ? "error" : "ok" },
      el("strong", { class: `decision ${d.decision}` }, d.decision),
      ` — ${d.reason}`,
    ),
    el(
      "dl",
      { class: "stats compact" },
      el(
        "div",
        { class: "stat" },
        el("dt", {}, `Candidate ${d.candidate.model}`),
        el("dd", {}, fmtNum(d.candidate.score)),
      ),
      el(
        "div",
        { class: "stat" },
        el("dt", {}, `Current ${d.incumbent?.model ?? "(none)"}`),
        el("dd", {}, d.incumbent ? fmtNum(d.incumbent.score) : "–"),
      ),
      el("div", { class: "stat" }, el("dt", {}, "Metric"), el("dd", {}, d.metric)),
      el(
        "div",
        { class: "stat" },
        el("dt", {}, "Evaluated on"),
        el("dd", {}, d.eval_set ? `${d.eval_set.source}, ${d.eval_set.examples} examples` : "–"),
      ),
    ),
    r.alias ? el("p", {}, `${r.name} serves ${r.alias.serving ?? r.alias.target}.`) : "",
  );
}

function showError(e) {
  result.replaceChildren(el("p", { class: "error" }, `✗ ${e.message}`));
}

async function refreshHistory() {
  const name = historySelect.value;
  const table = document.getElementById("history");
  if (!name) return fillTable(table, [], "Choose an alias.");
  const a = await api(`/v1/aliases/${encodeURIComponent(name)}`);
  fillTable(
    table,
    a.history.map((h) =>
      row(
        String(h.seq),
        fmtTime(h.at),
        h.action,
        h.previous ?? "–",
        h.target,
        h.evaluation ? decisionText(h.evaluation) : "–",
        h.reason ?? "",
      )
    ),
    "No history.",
  );
}

async function rollback(name) {
  try {
    const r = await api(`/v1/aliases/${encodeURIComponent(name)}/rollback`, { method: "POST", body: {} });
    result.replaceChildren(el("p", { class: "ok" }, `✓ ${name} rolled back to ${r.target}`));
    announce(`${name} rolled back to ${r.target}.`);
  } catch (e) {
    showError(e);
  }
  await refresh();
}

/** Reloads the aliases and the history shown; `prefer`: show this alias's history once it exists (after a switch). */
async function refresh(prefer) {
  const { data } = await api("/v1/aliases");
  fillTableIfChanged(
    document.getElementById("aliases"),
    data.map((a) => [a.name, a.target, a.serving, a.updated_at]),
    () =>
      data.map((a) =>
        row(
          a.name,
          a.target,
          a.serving ?? "–",
          fmtTime(a.updated_at),
          el(
            "td",
            {},
            el("button", {
              type: "button",
              class: "small",
              "aria-label": `Roll back ${a.name}`,
              onclick: () => rollback(a.name),
            }, "Roll back"),
          ),
        )
      ),
    "No aliases yet.",
  );
  document.getElementById("alias-names").replaceChildren(...data.map((a) => el("option", { value: a.name })));
  const keep = prefer ?? historySelect.value;
  const names = data.map((a) => a.name).join("\n");
  if (historySelect.dataset.names !== names) {
    historySelect.dataset.names = names;
    historySelect.replaceChildren(...data.map((a) => el("option", { value: a.name }, a.name)));
  }
  if (keep && data.some((a) => a.name === keep)) historySelect.value = keep;
  await refreshHistory();
}

async function refreshTargets() {
  const models = await listModels();
  const { data } = await api("/v1/files?limit=200");
  const target = document.getElementById("alias-target");
  // Only when something changed: replacing the options under a user's focus would lose their place.
  const sig = JSON.stringify([models.bases, models.versions, data.map((f) => f.id)]);
  if (target.dataset.sig === sig) return;
  target.dataset.sig = sig;
  fillModelSelect(target, { ...models, aliases: [] }); // an alias cannot be a target
  const file = document.getElementById("eval-file");
  const keepFile = file.value;
  file.replaceChildren(
    el("option", { value: "" }, "The target's validation file"),
    ...data.filter((f) => f.purpose === "fine-tune").map((f) =>
      el("option", { value: f.id }, `${f.filename} (${f.id})`)
    ),
  );
  file.value = keepFile;
}

async function change(gated) {
  const form = document.getElementById("switch-form");
  const name = form.elements.name.value.trim();
  if (!name) {
    form.elements.name.focus();
    return showError(new Error("Name the alias to switch."));
  }
  const body = { target: form.elements.target.value };
  const reason = form.elements.reason.value.trim();
  if (reason) body.reason = reason;
  if (gated) {
    const mustBeat = form.elements.must_beat.value.trim();
    body.evaluate = {
      metric: form.elements.metric.value,
      ...(mustBeat ? { must_beat: Number(mustBeat) } : {}),
      ...(form.elements.file.value ? { file: form.elements.file.value } : {}),
    };
  }
  result.textContent = gated
    ? `Evaluating ${body.target} against ${name}'s target…`
    : `Loading and validating ${body.target}…`;
  for (const b of form.querySelectorAll("button")) b.disabled = true;
  try {
    const r = await api(`/v1/aliases/${encodeURIComponent(name)}`, { method: "PUT", body });
    if (r.object === "model.alias.evaluation") showDecision(r);
    else showSwitch(r);
  } catch (e) {
    showError(e);
  } finally {
    for (const b of form.querySelectorAll("button")) b.disabled = false;
  }
  await refresh(name);
}

boot(async () => {
  document.getElementById("switch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    change(false);
  });
  document.getElementById("switch-gated").addEventListener("click", () => change(true));
  historySelect.addEventListener("change", () => refreshHistory().catch((e) => announce(e.message, "error")));
  await refreshTargets();
  every(5000, refresh);
  setInterval(() => refreshTargets().catch(() => {}), 10_000);
});
