// A job's page: live curves (train / validation loss, token accuracy, ScaLoRA's rescaling stats) from the
// job's events stream, learning rate, tokens/s and ETA, the events log, checkpoints, the promotion decision,
// and pause / resume / cancel.
import {
  announce,
  api,
  badge,
  boot,
  el,
  fetchRaw,
  fillTable,
  fmtDuration,
  fmtNum,
  fmtTime,
  METHODS,
  readSSE,
  row,
  setText,
} from "./app.js";
import { LineChart } from "./charts.js";

const jobId = document.getElementById("job-id").textContent.trim();
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const MAX_LOG_ROWS = 500;
let job = null;
let charts = null;
let lastEventId = null;
/** The first and latest metrics event (step, total, time): the ETA before the server estimates one. */
let pace = null;
let drawPending = false;

function renderJob(j) {
  job = j;
  document.getElementById("job-status").replaceWith(Object.assign(badge(j.status), { id: "job-status" }));
  setText("job-model", j.model);
  const ft = document.getElementById("job-ft");
  ft.replaceChildren(
    j.fine_tuned_model
      ? el("a", { href: `/ui/playground?model=${encodeURIComponent(j.fine_tuned_model)}` }, j.fine_tuned_model)
      : "–",
  );
  const hp = j.hyperparameters;
  setText(
    "job-method",
    `${METHODS[hp.scaling] ?? hp.scaling} r=${hp.rank} α=${hp.alpha}` +
      (hp.scaling === "none" ? "" : `, interval ${hp.interval}`) +
      `; ${hp.n_epochs} epochs, batch ${hp.batch_size}`,
  );
  setText("job-error", j.error ? `${j.error.code}: ${j.error.message}` : "–");
  const eta = j.status !== "running"
    ? null
    : j.estimated_finish
    ? j.estimated_finish - Date.now() / 1000
    : pace && pace.last.step > pace.first.step
    ? ((pace.last.at - pace.first.at) / (pace.last.step - pace.first.step)) * (pace.total - pace.last.step)
    : null;
  setText("job-eta", j.status === "running" ? (eta !== null ? fmtDuration(eta) : "estimating…") : "–");
  document.getElementById("job-pause").disabled = j.status !== "running";
  document.getElementById("job-resume").disabled = j.status !== "paused";
  document.getElementById("job-cancel").disabled = TERMINAL.has(j.status);
  if (j.promotion || j.promote_to_alias) {
    const p = document.getElementById("promotion");
    if (!p.dataset.decided) {
      p.textContent = j.promotion
        ? `On success: point alias '${j.promotion.alias}' at the result if its ${j.promotion.metric} beats ` +
          (j.promotion.must_beat === "current" ? "the alias's current target" : j.promotion.must_beat) + "."
        : `On success: point alias '${j.promote_to_alias}' at the result.`;
    }
  }
}

async function refreshJob() {
  renderJob(await api(`/v1/fine_tuning/jobs/${jobId}`));
}

async function refreshCheckpoints() {
  const { data } = await api(`/v1/fine_tuning/jobs/${jobId}/checkpoints?limit=100`);
  fillTable(
    document.getElementById("checkpoints"),
    data.map((c) =>
      row(
        String(c.step_number),
        c.fine_tuned_model_checkpoint,
        fmtNum(c.metrics.train_loss),
        fmtNum(c.metrics.full_valid_loss),
        el("a", { href: `/ui/playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}` }, "Chat"),
      )
    ),
    "No checkpoint yet.",
  );
}

function scoreText(s) {
  return s ? `${s.model}: ${fmtNum(s.score)}` : "none";
}

function renderPromotion(d) {
  const p = document.getElementById("promotion");
  p.dataset.decided = d.decision;
  p.replaceChildren(
    el("p", {}, el("strong", { class: `decision ${d.decision}` }, d.decision), ` — alias '${d.alias}'`),
    el(
      "dl",
      { class: "stats compact" },
      el("div", { class: "stat" }, el("dt", {}, `Candidate (${d.metric})`), el("dd", {}, scoreText(d.candidate))),
      el("div", { class: "stat" }, el("dt", {}, "Current target"), el("dd", {}, scoreText(d.incumbent))),
      el(
        "div",
        { class: "stat" },
        el("dt", {}, "Must beat"),
        el("dd", {}, d.threshold === null ? "nothing" : fmtNum(d.threshold)),
      ),
      el(
        "div",
        { class: "stat" },
        el("dt", {}, "Evaluated on"),
        el("dd", {}, d.eval_set ? `${d.eval_set.source} (${d.eval_set.examples} examples)` : "–"),
      ),
    ),
    el("p", {}, d.reason),
  );
}

function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    for (const c of Object.values(charts)) c.draw();
  });
}

function onMetrics(m, at) {
  const point = { step: m.step, at };
  pace = pace ? { ...pace, last: point, total: m.total_steps } : { first: point, last: point, total: m.total_steps };
  charts.loss.add(m.step, [m.train_loss, m.valid_loss ?? null]);
  charts.acc.add(m.step, [m.train_mean_token_accuracy, m.valid_mean_token_accuracy ?? null]);
  if (m.scaling) {
    charts.scalora.add(m.step, [m.scaling.columnwise_share, m.scaling.mean_alpha_beta, m.scaling.update_rank ?? null]);
    setText("sc-share", fmtNum(m.scaling.columnwise_share, 3));
    setText("sc-ab", fmtNum(m.scaling.mean_alpha_beta, 3));
    setText("sc-rank", fmtNum(m.scaling.update_rank, 3));
  }
  setText("job-step", `${m.step} / ${m.total_steps}`);
  setText("job-epoch", String(m.epoch));
  setText("job-lr", fmtNum(m.learning_rate, 3));
  setText("job-tps", fmtNum(m.tokens_per_second, 4));
  scheduleDraw();
}

function onEvent(e) {
  lastEventId = e.id;
  const tbody = document.getElementById("events").tBodies[0];
  tbody.prepend(
    el(
      "tr",
      { class: `level-${e.level}` },
      el("td", {}, fmtTime(e.created_at)),
      el("td", {}, e.level),
      el("td", {}, e.message),
    ),
  );
  while (tbody.rows.length > MAX_LOG_ROWS) tbody.deleteRow(-1);
  const data = e.data ?? {};
  if (e.type === "metrics") onMetrics(data, e.created_at);
  if (data.fine_tuned_model_checkpoint) refreshCheckpoints().catch(() => {});
  if (data.promotion) renderPromotion(data.promotion);
  if (data.status) refreshJob().catch(() => {});
}

/** Follows the events stream from the first event (or where it left off) until the job ends. */
async function follow() {
  for (;;) {
    try {
      const after = lastEventId ? `&after=${encodeURIComponent(lastEventId)}` : "";
      const res = await fetchRaw(`/v1/fine_tuning/jobs/${jobId}/events?stream=true${after}`);
      await readSSE(res, onEvent);
    } catch (e) {
      announce(`Event stream: ${e.message}`, "error");
    }
    await refreshJob().catch(() => {});
    if (job && TERMINAL.has(job.status)) break;
    await new Promise((r) => setTimeout(r, 2000));
  }
  await refreshCheckpoints();
}

const DONE = { pause: "paused", resume: "resumed", cancel: "cancelled" };

function action(id, verb) {
  document.getElementById(id).addEventListener("click", async () => {
    try {
      renderJob(await api(`/v1/fine_tuning/jobs/${jobId}/${verb}`, { method: "POST" }));
      announce(`Job ${DONE[verb]}.`);
    } catch (e) {
      announce(e.message, "error");
    }
  });
}

boot(async () => {
  charts = {
    loss: new LineChart(document.getElementById("loss-chart"), [
      { label: "train loss" },
      { label: "validation loss", dash: true },
    ], { y: "loss (log scale)", log: true }),
    acc: new LineChart(document.getElementById("acc-chart"), [
      { label: "train accuracy" },
      { label: "validation accuracy", dash: true },
    ], { y: "token accuracy" }),
    scalora: new LineChart(document.getElementById("scalora-chart"), [
      { label: "column-wise share" },
      { label: "mean α·β" },
      { label: "update rank", scale: "y2" },
    ], { y: "share, α·β", y2: "rank" }),
  };
  action("job-pause", "pause");
  action("job-resume", "resume");
  action("job-cancel", "cancel");
  await refreshJob();
  await refreshCheckpoints();
  // The estimated finish and status between events.
  setInterval(() => {
    if (job && !TERMINAL.has(job.status)) refreshJob().catch(() => {});
  }, 5000);
  await follow();
});
