/**
 * deno task bench:synthetic [--json] [--steps N] [--seed S] [--out DIR]
 *
 * The ScaLoRA paper's Figure-1 setting exactly as ../shared/SCALORA.md
 * specifies (m = n = 64, r = 8, X 1024x64 N(0,1), W* N(0,1)/8, Y = X W*,
 * 0.5·mean‖xW − y‖², W_0 = 0, batch 32 without replacement, Adam 0.9/0.999,
 * eps 1e-8, lr 3e-3, 3000 steps, A = 0, B N(0,1)/8, s = 1,
 * L = 1000·λmax(XᵀX/1024)), run through the same path as LM training: the
 * LoRA graph hook on a one-layer regression graph, ORT, the ai.scalora
 * kernels and the trainer. Runs lora, scalora (I=1), scalora_i10 (I=10) with
 * the paper's L, and the two ScaLoRA runs again with the default (auto) L rule.
 *
 * final_loss: full-data loss after the last step; rank: effective rank of the
 * cumulative update W + s·ABᵀ − W_0 (σ > 1e-6·σ_max). Writes the loss curves
 * (full-data loss every 10 steps, log y) to <out>/synthetic.svg and the full
 * result to <out>/synthetic.json. Prints the JSON with --json, else a table
 * and a one-line summary.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { runSynthetic, type SyntheticRunResult } from "../src/train/synthetic_run.ts";
import { makeSyntheticTask } from "../src/train/synthetic_task.ts";
import type { LipschitzRule } from "../src/train/lipschitz.ts";
import type { TrainMode } from "../src/train/trainer.ts";
import { lineChartSvg } from "./svg_plot.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean", default: false },
    steps: { type: "string", default: "3000" },
    seed: { type: "string", default: "0" },
    out: { type: "string", default: "bench/results" },
  },
});
const steps = Number(values.steps), seed = Number(values.seed);
const task = makeSyntheticTask(seed);
const paperL: LipschitzRule = { kind: "fixed", L: 1000 * task.lambdaMax };
const auto: LipschitzRule = { kind: "auto" };

const runs: {
  key: string;
  label: string;
  mode: TrainMode;
  interval: number;
  lipschitz: LipschitzRule;
  color: string;
  dashed?: boolean;
}[] = [
  { key: "lora", label: "LoRA", mode: "lora", interval: 1, lipschitz: paperL, color: "#d62728" },
  { key: "scalora", label: "ScaLoRA", mode: "scalora", interval: 1, lipschitz: paperL, color: "#1f77b4" },
  { key: "scalora_i10", label: "ScaLoRA-I(10)", mode: "scalora", interval: 10, lipschitz: paperL, color: "#2ca02c" },
  {
    key: "scalora_auto",
    label: "ScaLoRA, auto L",
    mode: "scalora",
    interval: 1,
    lipschitz: auto,
    color: "#1f77b4",
    dashed: true,
  },
  {
    key: "scalora_i10_auto",
    label: "ScaLoRA-I(10), auto L",
    mode: "scalora",
    interval: 10,
    lipschitz: auto,
    color: "#2ca02c",
    dashed: true,
  },
];

const results = new Map<string, SyntheticRunResult>();
const wall = performance.now();
for (const r of runs) {
  if (!values.json) console.error(`running ${r.key} ...`);
  results.set(
    r.key,
    await runSynthetic(task, { mode: r.mode, interval: r.interval, lipschitz: r.lipschitz, steps, seed }),
  );
}
const wallS = (performance.now() - wall) / 1000;

const round = (x: number, d = 4) => Number(x.toPrecision(d));
const json: Record<string, unknown> = {};
for (const r of runs) {
  const res = results.get(r.key)!;
  json[r.key] = {
    final_loss: res.finalLoss,
    rank: res.rank,
    initial_loss: round(res.initialLoss, 6),
    L: r.lipschitz.kind === "fixed" ? round(r.lipschitz.L, 6) : "auto",
    ms_per_step: round(res.meanStepMs),
    timings_ms: Object.fromEntries(Object.entries(res.meanTimings).map(([k, v]) => [k, round(v)])),
    scaling_events: res.scalingEvents,
    columnwise_share: round(res.meanColumnwiseShare),
    mean_alpha_beta: round(res.meanAlphaBeta),
  };
}
const meta = { steps, seed, lambda_max: round(task.lambdaMax, 6), wall_s: round(wallS, 3), device: "cpu" };

await Deno.mkdir(values.out, { recursive: true });
const svg = lineChartSvg(
  runs.map((r) => ({
    name: r.label,
    color: r.color,
    dashed: r.dashed,
    points: results.get(r.key)!.evalLosses.map((e) => [e.step, e.loss] as [number, number]),
  })),
  { title: "Synthetic matrix regression (m = n = 64, r = 8)", xLabel: "step", yLabel: "full-data loss", logY: true },
);
await Deno.writeTextFile(`${values.out}/synthetic.svg`, svg);
await Deno.writeTextFile(`${values.out}/synthetic.json`, JSON.stringify({ ...json, meta }, null, 2) + "\n");

if (values.json) {
  console.log(JSON.stringify(json));
} else {
  console.log(
    `λmax(XᵀX/1024) = ${task.lambdaMax.toFixed(4)}, paper L = ${paperL.kind === "fixed" ? paperL.L.toFixed(1) : ""}`,
  );
  console.log("run                 final loss   rank  ms/step  fwd/bwd  scaling  merge   optim  col.share  mean αβ");
  for (const r of runs) {
    const x = results.get(r.key)!, t = x.meanTimings;
    console.log(
      `${r.key.padEnd(19)} ${x.finalLoss.toExponential(3).padStart(10)} ${String(x.rank).padStart(6)} ${
        x.meanStepMs.toFixed(3).padStart(8)
      } ${t.forwardBackward.toFixed(3).padStart(8)} ${t.scaling.toFixed(3).padStart(8)} ${
        t.merge.toFixed(3).padStart(6)
      } ${t.optimizer.toFixed(3).padStart(7)} ${x.meanColumnwiseShare.toFixed(3).padStart(10)} ${
        x.meanAlphaBeta.toFixed(3).padStart(8)
      }`,
    );
  }
  const g = (k: string) => results.get(k)!;
  console.log(
    `synthetic: initial ${g("lora").initialLoss.toFixed(1)} → LoRA ${g("lora").finalLoss.toFixed(2)} (rank ${
      g("lora").rank
    }), ` +
      `ScaLoRA ${g("scalora").finalLoss.toExponential(2)} (rank ${g("scalora").rank}), ` +
      `ScaLoRA-I(10) ${g("scalora_i10").finalLoss.toExponential(2)} (rank ${g("scalora_i10").rank}); ` +
      `auto L: ${g("scalora_auto").finalLoss.toExponential(2)} / ${
        g("scalora_i10_auto").finalLoss.toExponential(2)
      }; ` +
      `${wallS.toFixed(1)} s, plot ${values.out}/synthetic.svg`,
  );
}
