/**
 * deno task bench:suite [--json] [--quick] [--split design|held-out|all] [--tasks id,id] [--methods m,m]
 *   [--no-grid] [--lipschitz auto|<L>|<json rule>] [--threads N] [--out DIR] [--merge] [--reuse-lora FILE]
 *   [--rerun-lora] [--seed N] [--lr-scale X]
 *
 * The ScaLoRA task suite (bench/tasks/tasks.ts): for every task, LoRA's best
 * learning rate from its grid first (extended while the best is at an edge),
 * then at that lr LoRA(r), LoRA(4r) (the capacity reference, same s),
 * ScaLoRA(r) (I = 1) and ScaLoRA-I(10)(r), every one through fineTune() with
 * every other default, the same seed (adapter init, batch order; --seed, default 0) and the
 * training file as validation file: the loss is the memorisation objective,
 * the mean token cross-entropy over the whole training set, evaluated 20
 * times per run.
 *
 * Reported per task: final losses, ScaLoRA/LoRA final-loss ratios, the first
 * evaluated step at which a run is at or below LoRA(r)'s final loss, the
 * effective rank of the learned update (mean over adapted layers, singular
 * values above 1e-6·σmax) and its stable rank Σσ²/σmax² (how many directions
 * carry the update's energy), the share of layer events that took the
 * column-wise solution, wall time. Aggregate: worst and median ratio over
 * tasks (and per split). Writes <out>/suite.json, suite.md and one SVG per
 * task (suite-<id>.svg); `--merge` keeps other tasks' entries of an existing
 * suite.json; `--reuse-lora FILE` takes LoRA's grid and LoRA(4r) from an
 * earlier suite.json (they do not depend on the L rule); with `--rerun-lora`
 * only the grid's best lr is taken and LoRA's runs are run again (for metrics
 * the file lacks). `--quick`: the four short-sequence tasks marked `quick` (two
 * design, two held-out), LoRA(r) and ScaLoRA-I(10) only, at each task's
 * recorded lr (no grid), writing suite-quick.*: a smoke test that fits in 10
 * minutes on 2 cores. `--lr-scale X` runs every method that is run (not reused) at X times the task's lr (with
 * --no-grid or --reuse-lora; ratios stay to LoRA(r), reused at its best lr or run at X): how far a method's own
 * best lr lies from LoRA's. The one-line summary is printed last.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { fineTune, type FineTuneOptions } from "../src/train/fine_tune.ts";
import { rankAbove, singularValues, stableRank } from "../src/train/linalg.ts";
import type { LayerDelta } from "../src/train/layer_delta.ts";
import { lineChartSvg } from "./svg_plot.ts";
import { datasetJsonl } from "./tasks/data.ts";
import { pretrainedBase } from "./tasks/pretrain.ts";
import { SUITE_TASKS, type SuiteTask } from "./tasks/tasks.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    split: { type: "string", default: "all" },
    tasks: { type: "string" },
    methods: { type: "string" },
    "no-grid": { type: "boolean", default: false },
    lipschitz: { type: "string", default: "auto" },
    threads: { type: "string", default: "1" },
    out: { type: "string", default: "bench/results" },
    merge: { type: "boolean", default: false },
    "reuse-lora": { type: "string" },
    "rerun-lora": { type: "boolean", default: false },
    seed: { type: "string", default: "0" },
    "lr-scale": { type: "string", default: "1" },
    "models-dir": { type: "string", default: "./data/bench/suite/models" },
  },
});

type MethodKey = "lora" | "lora_4r" | "scalora" | "scalora_i10";
const METHODS: Record<MethodKey, { label: string; color: string; dashed?: boolean }> = {
  lora: { label: "LoRA(r)", color: "#d62728" },
  lora_4r: { label: "LoRA(4r)", color: "#7f7f7f", dashed: true },
  scalora: { label: "ScaLoRA(r)", color: "#1f77b4" },
  scalora_i10: { label: "ScaLoRA-I(10)(r)", color: "#2ca02c" },
};

const quick = values.quick;
const methods = (values.methods?.split(",") ??
  (quick ? ["lora", "scalora_i10"] : ["lora", "lora_4r", "scalora", "scalora_i10"])) as MethodKey[];
if (!methods.every((m) => m in METHODS)) throw new Error(`--methods: choose from ${Object.keys(METHODS).join(", ")}`);
const useGrid = !quick && !values["no-grid"];
const threads = Number(values.threads);
const lipschitz = parseLipschitz(values.lipschitz);
const lrScale = Number(values["lr-scale"]);
if (!(lrScale > 0)) throw new Error("--lr-scale: a positive number");
if (lrScale !== 1 && useGrid && !values["reuse-lora"]) throw new Error("--lr-scale: with --no-grid or --reuse-lora");
if (values["rerun-lora"] && (!values["reuse-lora"] || lrScale !== 1)) {
  throw new Error("--rerun-lora: with --reuse-lora and without --lr-scale");
}
const tasks = SUITE_TASKS.filter((t) =>
  (values.split === "all" || t.split === values.split) &&
  (values.tasks ? values.tasks.split(",").includes(t.id) : !quick || t.quick)
);
if (!tasks.length) throw new Error("no task matches --split / --tasks");

function parseLipschitz(v: string): FineTuneOptions["lipschitz"] {
  if (v === "auto") return "auto";
  if (/^[0-9.eE+-]+$/.test(v)) return Number(v);
  return JSON.parse(v);
}

const log = (s: string) => console.error(s);
const reused: { seed?: number; tasks: TaskResult[] } | null = values["reuse-lora"]
  ? JSON.parse(await Deno.readTextFile(values["reuse-lora"]))
  : null;

async function modelDir(task: SuiteTask): Promise<string> {
  const root = values["models-dir"];
  if (task.model === "pretrained") return await pretrainedBase(root, undefined, log);
  const dir = `${root}/${task.model}`;
  if (!(await Deno.stat(`${dir}/config.json`).catch(() => null))) {
    const tmp = `${dir}.partial-${Deno.pid}`;
    await generateTinyModel({ out: tmp, arch: task.model, preset: "tiny", tokenizer: "bytes", seed: 0 });
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, dir);
  }
  return dir;
}

interface RunResult {
  lr: number;
  rank: number;
  finalLoss: number;
  finalAccuracy: number;
  evals: [number, number][];
  steps: number;
  columnwiseShare: number | null;
  meanAlphaBeta: number | null;
  effectiveRank: number;
  /** Mean over the adapted layers of the update's stable rank Σσ²/σ_max² (absent in runs reused from older files). */
  stableRank?: number;
  maxRank: number;
  wallS: number;
}

async function runOne(
  task: SuiteTask,
  dir: string,
  data: string,
  key: MethodKey,
  lr: number,
): Promise<RunResult> {
  const rank = key === "lora_4r" ? 4 * task.rank : task.rank;
  const alpha = (task.alpha ?? 2 * task.rank) * rank / task.rank;
  const epochs = task.epochs;
  const examples = data.trim().split("\n").length;
  const evalEvery = Math.max(1, Math.round(epochs * Math.ceil(examples / task.batchSize) / 20));
  const evals: [number, number][] = [], shares: number[] = [], ab: number[] = [];
  let finalAccuracy = NaN;
  const t0 = performance.now();
  const checkpointDir = await Deno.makeTempDir({ prefix: "bench-suite-" });
  try {
    const res = await fineTune({
      model: dir,
      trainText: data,
      validationText: data,
      method: key.startsWith("lora") ? "lora" : "scalora",
      rank,
      alpha,
      interval: key === "scalora_i10" ? 10 : 1,
      lipschitz,
      targetModules: task.targets,
      epochs,
      batchSize: task.batchSize,
      learningRate: lr,
      schedule: task.schedule,
      warmupRatio: task.warmupRatio,
      maxLength: task.maxLength,
      seed: Number(values.seed),
      checkpointDir,
      checkpointEvery: 0,
      evalEvery,
      threads,
      onEvent: (e) => {
        if (e.type !== "metrics") return;
        if (e.scaling) {
          shares.push(e.scaling.columnwiseShare);
          ab.push(e.scaling.meanAlphaBeta);
        }
        if (e.validLoss !== undefined) {
          evals.push([e.step, e.validLoss]);
          finalAccuracy = e.validTokenAccuracy ?? NaN;
        }
      },
    });
    const mean = (a: number[]) => a.length ? a.reduce((x, y) => x + y, 0) / a.length : null;
    const ranks = res.deltas.map(deltaRank);
    return {
      lr,
      rank,
      finalLoss: res.finalValidLoss!,
      finalAccuracy,
      evals,
      steps: res.steps,
      columnwiseShare: mean(shares),
      meanAlphaBeta: mean(ab),
      effectiveRank: mean(ranks.map((r) => r.rank))!,
      stableRank: mean(ranks.map((r) => r.stable))!,
      maxRank: mean(ranks.map((r) => r.max))!,
      wallS: (performance.now() - t0) / 1000,
    };
  } finally {
    await Deno.remove(checkpointDir, { recursive: true });
  }
}

/** Effective rank (singular values above 1e-6·σ_max) and stable rank of Σ U·Vᵀ over the delta's terms (float64). */
function deltaRank(d: LayerDelta): { rank: number; stable: number; max: number } {
  const D = new Float64Array(d.m * d.n);
  for (const t of d.terms) {
    for (let i = 0; i < d.m; i++) {
      for (let k = 0; k < t.k; k++) {
        const u = t.U[i * t.k + k];
        if (u === 0) continue;
        for (let j = 0; j < d.n; j++) D[i * d.n + j] += u * t.V[j * t.k + k];
      }
    }
  }
  const sv = singularValues(D, d.m, d.n);
  return { rank: rankAbove(sv), stable: stableRank(sv), max: Math.min(d.m, d.n) };
}

interface TaskResult {
  id: string;
  split: string;
  note: string;
  model: string;
  rank: number;
  targets: string[];
  schedule: string;
  examples: number;
  lr: number;
  lrGrid: Record<string, number> | null;
  capacityBound: boolean | null;
  runs: Partial<Record<MethodKey, RunResult>>;
  ratios: Partial<Record<MethodKey, number>>;
  stepsToLoraFinal: Partial<Record<MethodKey, number | null>>;
}

async function runTask(task: SuiteTask): Promise<TaskResult> {
  const dir = await modelDir(task);
  const data = await datasetJsonl(task.data, task.id);
  const examples = data.trim().split("\n").length;
  log(`== ${task.id} (${task.split}): ${examples} examples, r=${task.rank}, ${dir}`);
  const runs: Partial<Record<MethodKey, RunResult>> = {};
  let lr = task.lr, lrGrid: Record<string, number> | null = null;
  // LoRA's runs do not depend on the L rule: an earlier full run's grid and capacity reference can be reused.
  const old = reused?.tasks.find((t) =>
    t.id === task.id && t.examples === examples && (reused.seed ?? 0) === Number(values.seed)
  );
  if (old?.runs.lora) {
    lr = old.lr;
    lrGrid = old.lrGrid;
    if (values["rerun-lora"]) {
      log(`  LoRA's grid (best lr ${lr}) from ${values["reuse-lora"]}; its runs again (--rerun-lora)`);
    } else {
      runs.lora = old.runs.lora;
      if (old.runs.lora_4r && methods.includes("lora_4r")) runs.lora_4r = old.runs.lora_4r;
      log(`  reusing LoRA's grid (best lr ${lr}) and capacity reference from ${values["reuse-lora"]}`);
    }
  } else if (useGrid) {
    // LoRA's best lr: the grid, extended by a half-decade step while the best is at an edge.
    const tried = new Map<number, RunResult>();
    const tryLr = async (x: number) => {
      const key = Number(x.toPrecision(3));
      if (!tried.has(key)) {
        const r = await runOne(task, dir, data, "lora", key);
        log(`  lora lr ${key}: ${r.finalLoss.toFixed(4)} (${r.wallS.toFixed(0)} s)`);
        tried.set(key, r);
      }
      return tried.get(key)!;
    };
    for (const x of task.lrGrid) await tryLr(x);
    for (let ext = 0; ext < 2; ext++) {
      const sorted = [...tried.keys()].sort((a, b) => a - b);
      const best = sorted.reduce((b, x) => tried.get(x)!.finalLoss < tried.get(b)!.finalLoss ? x : b);
      if (best === sorted[0]) await tryLr(best / Math.sqrt(10));
      else if (best === sorted.at(-1)) await tryLr(best * Math.sqrt(10));
      else break;
    }
    lr = [...tried.keys()].reduce((b, x) => tried.get(x)!.finalLoss < tried.get(b)!.finalLoss ? x : b);
    lrGrid = Object.fromEntries([...tried].sort((a, b) => a[0] - b[0]).map(([x, r]) => [String(x), r.finalLoss]));
    runs.lora = tried.get(lr)!;
  }
  for (const m of methods) {
    if (runs[m]) continue;
    runs[m] = await runOne(task, dir, data, m, lr * lrScale);
    log(`  ${m} lr ${runs[m]!.lr}: ${runs[m]!.finalLoss.toFixed(4)} (${runs[m]!.wallS.toFixed(0)} s)`);
  }
  // The capacity reference has 4x the parameters at the same s: where LoRA(r)'s best lr is too large for
  // it (it does no better than LoRA(r)), it gets the next lr down of the grid too, and keeps the better.
  const big = runs.lora_4r;
  if (big && runs.lora && !quick && big.finalLoss >= runs.lora.finalLoss) {
    const lower = await runOne(task, dir, data, "lora_4r", Number((lr / Math.sqrt(10)).toPrecision(3)));
    log(`  lora_4r lr ${lower.lr}: ${lower.finalLoss.toFixed(4)} (${lower.wallS.toFixed(0)} s)`);
    if (lower.finalLoss < big.finalLoss) runs.lora_4r = lower;
  }
  const lora = runs.lora;
  const ratios: TaskResult["ratios"] = {}, stepsTo: TaskResult["stepsToLoraFinal"] = {};
  for (const m of lora ? methods : []) {
    const r = runs[m]!;
    ratios[m] = r.finalLoss / lora!.finalLoss;
    stepsTo[m] = r.evals.find(([, l]) => l <= lora!.finalLoss)?.[0] ?? null;
  }
  // Capacity-bound: four times the rank reaches the target (≤ 0.7x LoRA(r)'s final loss).
  const capacityBound = runs.lora_4r && lora ? runs.lora_4r.finalLoss <= 0.7 * lora.finalLoss : null;
  return {
    id: task.id,
    split: task.split,
    note: task.note,
    model: task.model,
    rank: task.rank,
    targets: task.targets,
    schedule: task.schedule,
    examples,
    lr,
    lrGrid,
    capacityBound,
    runs,
    ratios,
    stepsToLoraFinal: stepsTo,
  };
}

const round = (x: number | null | undefined, d = 4) =>
  x == null || !Number.isFinite(x) ? null : Number(x.toPrecision(d));
const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

const wall = performance.now();
const fresh: TaskResult[] = [];
for (const t of tasks) fresh.push(await runTask(t));

const stem = quick ? "suite-quick" : "suite";
await Deno.mkdir(values.out, { recursive: true });
let results = fresh;
if (values.merge) {
  const old = await Deno.readTextFile(`${values.out}/${stem}.json`).then(JSON.parse).catch(() => null);
  const kept = (old?.tasks ?? []).filter((t: TaskResult) => !fresh.some((f) => f.id === t.id));
  results = [...kept, ...fresh].sort((a, b) =>
    SUITE_TASKS.findIndex((t) => t.id === a.id) - SUITE_TASKS.findIndex((t) => t.id === b.id)
  );
}

function aggregate(list: TaskResult[]) {
  const agg: Record<string, unknown> = { tasks: list.length };
  for (const m of methods.filter((m) => m.startsWith("scalora"))) {
    const r = list.map((t) => t.ratios[m]).filter((x): x is number => x !== undefined);
    agg[m] = {
      worst_ratio: round(Math.max(...r)),
      median_ratio: round(median(r)),
      at_most_0_7: r.filter((x) => x <= 0.7).length,
    };
  }
  return agg;
}

const json = {
  bench: "suite",
  mode: quick ? "quick" : "full",
  lipschitz,
  methods,
  device: "cpu",
  threads,
  seed: Number(values.seed),
  lr_scale: lrScale,
  note: "final loss = mean token CE over the training set (memorisation); ratio = method / LoRA(r) at LoRA's best lr",
  wall_s: round((performance.now() - wall) / 1000),
  aggregate: {
    all: aggregate(results),
    design: aggregate(results.filter((t) => t.split === "design")),
    "held-out": aggregate(results.filter((t) => t.split === "held-out")),
  },
  tasks: results.map((t) => ({
    ...t,
    ratios: Object.fromEntries(Object.entries(t.ratios).map(([k, v]) => [k, round(v)])),
    runs: Object.fromEntries(
      Object.entries(t.runs).map(([k, r]) => [k, {
        ...r,
        finalLoss: round(r.finalLoss, 5),
        finalAccuracy: round(r.finalAccuracy),
        columnwiseShare: round(r.columnwiseShare),
        meanAlphaBeta: round(r.meanAlphaBeta),
        effectiveRank: round(r.effectiveRank, 3),
        stableRank: round(r.stableRank, 3),
        wallS: round(r.wallS, 3),
        evals: r.evals.map(([s, l]) => [s, round(l, 5)]),
      }]),
    ),
  })),
};
await Deno.writeTextFile(`${values.out}/${stem}.json`, JSON.stringify(json, null, 2) + "\n");

for (const t of fresh) {
  await Deno.writeTextFile(
    `${values.out}/${stem}-${t.id}.svg`,
    lineChartSvg(
      methods.map((m) => ({
        name: `${METHODS[m].label}: ${t.runs[m]!.finalLoss.toFixed(3)}`,
        color: METHODS[m].color,
        dashed: METHODS[m].dashed,
        points: t.runs[m]!.evals,
      })),
      {
        title: `${t.id} (${t.split}), r = ${t.rank}, lr ${t.lr}`,
        xLabel: "step",
        yLabel: "training-set loss (token CE)",
        logY: true,
      },
    ),
  );
}

const fmtR = (x: number | undefined) => x === undefined ? "–" : x.toFixed(2);
const fmtL = (r: RunResult | undefined) => r ? r.finalLoss.toFixed(3) : "–";
const md = [
  `| task | split | r | lr | LoRA(r) | LoRA(4r) (lr) | ScaLoRA(r) | ScaLoRA-I(10)(r) | ScaLoRA / LoRA | I(10) / LoRA | eff. rank LoRA / I(10) | stable rank LoRA / LoRA(4r) / I(10) | column-wise |`,
  `|---|---|---|---|---|---|---|---|---|---|---|---|---|`,
  ...results.map((t) =>
    `| ${t.id} | ${t.split} | ${t.rank} | ${t.lr} | ${fmtL(t.runs.lora)} | ${fmtL(t.runs.lora_4r)}${
      t.runs.lora_4r && t.runs.lora_4r.lr !== t.lr ? ` (${t.runs.lora_4r.lr})` : ""
    } | ${fmtL(t.runs.scalora)} | ${fmtL(t.runs.scalora_i10)} | ${fmtR(t.ratios.scalora)} | **${
      fmtR(t.ratios.scalora_i10)
    }** | ${t.runs.lora?.effectiveRank.toFixed(1)} / ${t.runs.scalora_i10?.effectiveRank.toFixed(1) ?? "–"} | ${
      [t.runs.lora, t.runs.lora_4r, t.runs.scalora_i10].map((r) => r?.stableRank?.toFixed(2) ?? "–").join(" / ")
    } | ${t.runs.scalora_i10?.columnwiseShare?.toFixed(2) ?? "–"} |`
  ),
].join("\n");
await Deno.writeTextFile(
  `${values.out}/${stem}.md`,
  `# ScaLoRA task suite (${json.mode}${
    lrScale === 1 ? "" : `; methods run at ${lrScale}x the task's lr, LoRA(r) reused at 1x where --reuse-lora`
  })\n\n${md}\n`,
);

if (values.json) console.log(JSON.stringify(json));
else console.log(md);
const a = json.aggregate.all as Record<string, { worst_ratio: number; median_ratio: number }>;
console.log(
  `bench:suite ${json.mode}: ${results.length} tasks; ScaLoRA-I(10)/LoRA final loss worst ${
    a.scalora_i10?.worst_ratio ?? "–"
  }, median ${a.scalora_i10?.median_ratio ?? "–"}` +
    (a.scalora ? `; ScaLoRA(I=1) worst ${a.scalora.worst_ratio}, median ${a.scalora.median_ratio}` : "") +
    ` (target ≤ 0.7 on every task); ${json.wall_s} s; ${values.out}/${stem}.md`,
);
