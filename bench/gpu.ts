/**
 * deno task bench:gpu [--presets smollm2-135m,llama3.2-1b] [--devices cpu,webgpu,cuda] [--quick] [--out FILE]
 *   [--budget-s S]
 *
 * The GPU benchmark: on each preset (models generated here, llama, bytes
 * tokenizer) and each device — the CPU and every usable GPU device of this
 * machine (WebGPU on a hardware adapter, CUDA when its provider is installed)
 * — measures, in one run:
 * - decode: one greedy generation, 128-token prompt, 64 new tokens, batch 1;
 *   prefill and decode tokens/s; and the memory-bandwidth bound of decoding:
 *   weight bytes per token over the device bandwidth measured in the same
 *   run through onnxruntime (a graph that writes, adds and reduces a 1 GiB
 *   tensor on the device);
 * - serving: 8 (and 1) concurrent greedy streams through the batching
 *   engine (64-token prompts, 32 new tokens), generated tokens/s, and the
 *   bytes one decode step copies between host and device;
 * - training: one LoRA step (rank 8, every linear, forward/backward +
 *   AdamW) on a fixed batch, median of the measured steps, tokens/s, and the
 *   bytes the step's training graph copies between host and device.
 * Then the GPU/CPU ratios per preset against the targets (llama3.2-1b:
 * decode ≥ 5x, 8-stream serving ≥ 10x, training step ≥ 20x, fp16 decode ≥ 25%
 * of the bandwidth bound) and `deno task doctor`'s report.
 *
 * Serving runs fp16 on a GPU and fp32 on the CPU (the defaults); training
 * computes in fp32 everywhere (fp16 training is not implemented). Writes the
 * JSON to --out (default bench/results/gpu-<card>.json, the card named from
 * its Vulkan device) after every measurement, so a run cut short keeps what
 * it measured, and prints a one-line summary. Measurements that would start
 * after --budget-s seconds (default 450) are skipped and marked so.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { formatDoctor, runDoctor } from "../src/cli/doctor_report.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import type { ComputeDType } from "../src/model/decoder_graph.ts";
import { parameterCount } from "../src/model/layout.ts";
import { Rng } from "../src/model/rng.ts";
import { TINY_PRESETS, type TinyPreset } from "../src/model/tiny_model.ts";
import { GraphBuilder } from "../src/onnx/builder.ts";
import type { TransferBytes } from "../src/runtime/transfer.ts";
import { type Device, DEVICES, probeDevices } from "../src/runtime/device.ts";
import { ort } from "../src/runtime/ort.ts";
import { openGraphSession } from "../src/runtime/session.ts";
import { createEngine } from "../src/serve/batch_engine.ts";
import { generate } from "../src/serve/generate.ts";
import { loadModel } from "../src/serve/load_model.ts";
import type { StepMetrics } from "../src/serve/scheduler.ts";
import { collate } from "../src/train/batching.ts";
import { initAdapterFactors, LmTrainingModel } from "../src/train/lm_training_graph.ts";
import { Trainer } from "../src/train/trainer.ts";
import { benchModel } from "./bench_model.ts";
import { benchTrainerConfig, FixedBatch } from "./fixed_batch.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    presets: { type: "string", default: "smollm2-135m,llama3.2-1b" },
    devices: { type: "string" },
    quick: { type: "boolean", default: false },
    out: { type: "string" },
    "budget-s": { type: "string", default: "450" },
  },
});
const budgetMs = Number(values["budget-s"]) * 1000;

const presets = values.presets.split(",").map((p) => p.trim()) as TinyPreset[];
for (const p of presets) {
  if (!TINY_PRESETS.includes(p)) throw new Error(`--presets: unknown preset ${p} (${TINY_PRESETS.join(", ")})`);
}
const probe = probeDevices();
const devices: Device[] = values.devices ? values.devices.split(",").map((d) => d.trim()) as Device[] : [
  "cpu",
  ...(probe.webgpu.hardware.length ? ["webgpu" as const] : []),
  ...(probe.cuda.usable ? ["cuda" as const] : []),
];
for (const d of devices) if (!DEVICES.includes(d)) throw new Error(`--devices: unknown device ${d}`);
const quick = values.quick;
const SIZES = {
  promptTokens: quick ? 16 : 128,
  newTokens: quick ? 8 : 64,
  streams: 8,
  streamPrompt: quick ? 16 : 64,
  streamTokens: quick ? 8 : 32,
  trainWarm: 1,
  trainSteps: quick ? 1 : 3,
  bandwidthBytes: quick ? 64 * 2 ** 20 : 2 ** 30,
};
/** Training batch rows x tokens: bench:train-step's 4 x 256 on the small presets; 1 x 256 on the 1B (CPU time). */
function trainShape(preset: TinyPreset): { rows: number; seq: number } {
  if (quick) return { rows: 1, seq: 32 };
  return preset === "llama3.2-1b" ? { rows: 1, seq: 256 } : { rows: 4, seq: 256 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, d = 4) => Number(x.toPrecision(d));
const log = (s: string) => console.error(s);

/** Device memory bandwidth in bytes/s through onnxruntime: Expand writes N, Add reads N writes N, ReduceMax reads N. */
async function deviceBandwidth(device: Device, bytes: number): Promise<number> {
  const g = new GraphBuilder("bandwidth");
  const shape = g.input("shape", "int64", [1]);
  const x = g.op1("Expand", [g.scalar(1, "float32"), shape], {}, { types: [{ dtype: "float32", shape: ["n"] }] });
  const y = g.add(x, x);
  g.output(g.op1("ReduceMax", [y], { keepdims: 0 }, { types: [{ dtype: "float32", shape: [] }] }), "max");
  const session = await openGraphSession(g.build(), { device, threads: navigator.hardwareConcurrency });
  const n = bytes / 4;
  const feeds = { shape: new ort.Tensor("int64", BigInt64Array.of(BigInt(n)), [1]) };
  try {
    await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await session.run(feeds);
      times.push((performance.now() - t) / 1000);
    }
    return (4 * bytes) / median(times);
  } finally {
    await session.release();
  }
}

function servingDtype(device: Device): ComputeDType {
  return device === "cpu" ? "float32" : "float16";
}

async function benchDecode(modelDir: string, dataDir: string, device: Device) {
  const dtype = servingDtype(device);
  const model = await loadModel(modelDir, { dataDir, device, dtype });
  try {
    const promptIds = Array.from({ length: SIZES.promptTokens }, (_, i) => (i * 7919) % 256);
    const run = async () => {
      const times: number[] = [];
      const start = performance.now();
      await generate(model.lm, model.tokenizer, promptIds, {
        maxTokens: SIZES.newTokens,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        stopTokenIds: [],
        onToken: () => times.push(performance.now()),
      });
      return {
        prefill: SIZES.promptTokens / ((times[0] - start) / 1000),
        decode: (times.length - 1) / ((times.at(-1)! - times[0]) / 1000),
      };
    };
    await run(); // warm-up: shader compilation, allocator growth
    const runs = [await run(), await run()];
    return {
      dtype,
      prefill_tok_s: round(median(runs.map((r) => r.prefill))),
      decode_tok_s: round(Math.max(...runs.map((r) => r.decode))),
    };
  } finally {
    await model.lm.release();
  }
}

async function benchServe(modelDir: string, dataDir: string, device: Device) {
  const dtype = servingDtype(device);
  const steps: StepMetrics[] = [];
  const engine = await createEngine(modelDir, {
    dataDir,
    device,
    dtype,
    observer: { onStep: (m) => steps.push(m) },
  });
  const stream = async (i: number) => {
    const promptIds = Array.from({ length: SIZES.streamPrompt }, (_, j) => (i * 131 + j * 7) % 256);
    let n = 0;
    const req = {
      promptIds,
      maxTokens: SIZES.streamTokens,
      sampling: { temperature: 0, topP: 1, topK: 0 },
      stop: [],
      stopTokenIds: [],
    };
    for await (const ev of engine.generate(req)) if (ev.type === "token") n++;
    return n;
  };
  const wave = async (k: number) => {
    const t = performance.now();
    const counts = await Promise.all(Array.from({ length: k }, (_, i) => stream(i)));
    return counts.reduce((a, b) => a + b) / ((performance.now() - t) / 1000);
  };
  try {
    await wave(SIZES.streams); // warm-up
    steps.length = 0;
    const eight = [await wave(SIZES.streams), await wave(SIZES.streams)];
    const decodes = steps.filter((s) => s.kind === "decode" && s.batchSize === SIZES.streams);
    const one = await wave(1);
    const perStep: TransferBytes | null = decodes.length ? decodes.at(-1)!.transfer : null;
    return {
      dtype,
      streams_8_tok_s: round(Math.max(...eight)),
      streams_1_tok_s: round(one),
      decode_step_copy_bytes_at_8: perStep,
      decode_step_width_at_8: decodes.at(-1)?.width ?? null,
    };
  } finally {
    await engine.close();
  }
}

async function benchTrain(modelDir: string, device: Device, shape: { rows: number; seq: number }) {
  const ckpt = await openCheckpoint(modelDir);
  const rng = new Rng(1, "bench/gpu/train");
  const rows = Array.from(
    { length: shape.rows },
    () => Array.from({ length: shape.seq }, () => rng.nextInt(256)),
  );
  const batch = collate(rows.map((ids) => ({ inputIds: ids, labels: ids })), { padTokenId: 0 });
  const threads = navigator.hardwareConcurrency;
  const t0 = performance.now();
  const model = await LmTrainingModel.create(ckpt, { rank: 8, alpha: 16 }, { device, threads });
  const setupS = (performance.now() - t0) / 1000;
  const config = benchTrainerConfig("lora", 1);
  const trainer = new Trainer(model, new FixedBatch(batch), config, {
    device,
    threads,
    initialFactors: initAdapterFactors(model.adapters, 0),
  });
  try {
    const steps: { total: number; fwdBwd: number }[] = [];
    for (let i = 0; i < SIZES.trainWarm + SIZES.trainSteps; i++) {
      const t = performance.now();
      const r = await trainer.trainStep();
      if (i >= SIZES.trainWarm) steps.push({ total: performance.now() - t, fwdBwd: r.timings.forwardBackward });
    }
    const probeRun = await model.forwardBackward(batch, trainer.factors);
    const stepMs = median(steps.map((s) => s.total));
    const adapterParams = model.adapters.reduce((n, a) => n + a.rank * (a.m + a.n), 0);
    return {
      dtype: "float32",
      batch: `${shape.rows}x${shape.seq}`,
      adapters: model.adapters.length,
      adapter_params: adapterParams,
      setup_s: round(setupS),
      step_ms: round(stepMs),
      fwd_bwd_ms: round(median(steps.map((s) => s.fwdBwd))),
      tokens_per_s: round((shape.rows * shape.seq) / (stepMs / 1000)),
      fwd_bwd_copy_bytes: probeRun.transfer ?? { hostToDevice: 0, deviceToHost: 0 },
    };
  } finally {
    await trainer.release();
    await model.release();
    ckpt.close();
  }
}

function cardName(): string {
  const hw = probe.webgpu.hardware[0]?.name;
  if (hw) return hw;
  if (probe.cuda.driver) return "nvidia";
  return "none";
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

const started = performance.now();
const card = cardName();
const out = values.out ?? `bench/results/gpu-${slug(card)}.json`;
await Deno.mkdir(out.slice(0, out.lastIndexOf("/")) || ".", { recursive: true });
log(`bench:gpu: presets ${presets.join(", ")}; devices ${devices.join(", ")}${quick ? " (quick)" : ""}`);
log("doctor…");
const doctor = await runDoctor({ log });
log(formatDoctor(doctor));

type Num = number | undefined;
const pick = (preset: string, device: string) => runs.find((r) => r.preset === preset && r.device === device);
const TARGETS = { decode: 5, serve_8_streams: 10, train_step: 20, decode_fraction_of_bandwidth_bound: 0.25 };

const runs: Record<string, unknown>[] = [];
const bandwidth: Record<string, number> = {};
for (const device of devices) {
  log(`${device}: bandwidth…`);
  bandwidth[device] = await deviceBandwidth(device, SIZES.bandwidthBytes);
}
for (const preset of presets) {
  log(`${preset}: generating the model (if not cached)…`);
  const { modelDir, dataDir } = await benchModel(preset);
  const ckpt = await openCheckpoint(modelDir);
  const params = parameterCount(ckpt.config);
  ckpt.close();
  for (const device of devices) {
    const entry: Record<string, unknown> = { preset, device, parameters: params };
    for (
      const [name, fn] of [
        ["decode", () => benchDecode(modelDir, dataDir, device)],
        ["serve", () => benchServe(modelDir, dataDir, device)],
        ["train", () => benchTrain(modelDir, device, trainShape(preset))],
      ] as const
    ) {
      if (performance.now() - started > budgetMs) {
        entry[name] = { skipped: `time budget of ${budgetMs / 1000} s spent` };
        continue;
      }
      log(`${preset} on ${device}: ${name}…`);
      const t = performance.now();
      try {
        entry[name] = await fn();
      } catch (e) {
        entry[name] = { error: e instanceof Error ? e.message.split("\n")[0] : String(e) };
      }
      log(`  ${name}: ${JSON.stringify(entry[name])} (${((performance.now() - t) / 1000).toFixed(1)} s)`);
    }
    const decode = entry.decode as { dtype?: ComputeDType; decode_tok_s?: number };
    if (decode.decode_tok_s) {
      const weightBytes = params * (decode.dtype === "float32" ? 4 : 2);
      const bound = bandwidth[device] / weightBytes;
      entry.bandwidth = {
        device_bytes_s: round(bandwidth[device]),
        weight_bytes_per_token: weightBytes,
        bound_tok_s: round(bound),
        fraction_of_bound: round(decode.decode_tok_s / bound),
      };
    }
    runs.push(entry);
    await writeResult();
  }
}

function resultNow() {
  const ratios: Record<string, Record<string, number | null>> = {};
  for (const preset of presets) {
    const cpu = pick(preset, "cpu");
    for (const device of devices.filter((d) => d !== "cpu")) {
      const gpu = pick(preset, device);
      if (!cpu || !gpu) continue;
      const ratio = (a: Num, b: Num) => (a && b ? round(a / b) : null);
      // deno-lint-ignore no-explicit-any
      const g = gpu as any, c = cpu as any;
      ratios[`${preset}/${device}`] = {
        decode: ratio(g.decode?.decode_tok_s, c.decode?.decode_tok_s),
        serve_8_streams: ratio(g.serve?.streams_8_tok_s, c.serve?.streams_8_tok_s),
        train_step: ratio(c.train?.step_ms, g.train?.step_ms),
        decode_fraction_of_bandwidth_bound: g.bandwidth?.fraction_of_bound ?? null,
      };
    }
  }
  const targets = Object.fromEntries(
    Object.entries(ratios).filter(([k]) => k.startsWith("llama3.2-1b/")).map(([k, r]) => [
      k,
      Object.fromEntries(
        Object.entries(TARGETS).map((
          [name, want],
        ) => [name, { value: r[name], target: want, met: (r[name] ?? 0) >= want }]),
      ),
    ]),
  );

  return {
    bench: "gpu",
    card,
    date: new Date().toISOString(),
    quick,
    cpu_cores: navigator.hardwareConcurrency,
    sizes: SIZES,
    wall_s: round((performance.now() - started) / 1000),
    runs,
    ratios,
    targets,
    doctor,
  };
}

async function writeResult() {
  await Deno.writeTextFile(out, JSON.stringify(resultNow(), null, 2) + "\n");
}

await writeResult();
const result = resultNow();
const ratios = result.ratios;
console.log(JSON.stringify(result, null, 2));
const summary = Object.entries(ratios).map(([k, r]) =>
  `${k}: decode ${r.decode ?? "-"}x, 8 streams ${r.serve_8_streams ?? "-"}x, train step ${r.train_step ?? "-"}x, ` +
  `bandwidth ${r.decode_fraction_of_bandwidth_bound ?? "-"}`
).join("; ");
console.log(
  `bench:gpu on ${card} (${devices.join(", ")}), ${result.wall_s} s: ${
    summary || "no GPU device: CPU only"
  }; wrote ${out}`,
);
