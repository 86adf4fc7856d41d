/**
 * deno task bench:swap [--preset smollm2-135m|tiny] [--runs N] [--no-full]
 *                      [--cross-runs N] [--cross-preset P] [--no-cross-replica] [--cross-replica-only]
 *
 * Time from "version created" (≈ the job succeeded) to the first token
 * streamed from the new version through an alias switch, on CPU: a
 * realistic ScaLoRA delta (r = 8 on every linear layer plus 10 merge terms of
 * rank 8 each: total rank 88 per layer), then PUT-alias semantics
 * (coordinator.set: compile if needed, load the engine, validate, switch),
 * then resolve the alias and stream. Variants:
 *
 * - cold: nothing prepared at creation; the switch compiles, loads, validates.
 * - precompiled: createVersion also compiled the serving graph patch.
 * - warmed: the job runner's sink also loaded + validated the engine at
 *   creation (off the switch path: reported separately as warm_ms).
 * - full: the merged-weights compile (buildServingGraph over the version
 *   WeightSource: computes W + U Vᵀ in JS and writes the whole model),
 *   i.e. what the patch avoids.
 *
 * - cross_replica (bench/swap_replicas.ts): two replicas (src/main.ts) on one
 *   PostgreSQL and an S3-compatible store; an alias switch through replica A,
 *   timed until replica B serves the new target (median, p99). Needs a
 *   PostgreSQL server (BENCH_DATABASE_URL or TEST_DATABASE_URL); skipped
 *   without one. `--cross-replica-only` runs just this part and keeps the
 *   other results of bench/results/swap.json.
 *
 * Prints a JSON result, then a one-line summary; writes bench/results/swap.json.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { parameterCount } from "../src/model/layout.ts";
import { Rng } from "../src/model/rng.ts";
import type { TinyPreset } from "../src/model/tiny_model.ts";
import { benchModel } from "./bench_model.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { BaseModels } from "../src/registry/base_models.ts";
import { AliasCoordinator } from "../src/registry/hot_swap.ts";
import { ModelRegistry } from "../src/registry/model_registry.ts";
import type { LayerDelta } from "../src/train/layer_delta.ts";
import { type CompileMode, versionMetadata, VersionService } from "../src/registry/versions.ts";
import { openStore, type Store } from "../src/store/store.ts";
import { type CrossReplicaResult, crossReplicaSwitch, databaseUrlForBench } from "./swap_replicas.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "smollm2-135m" },
    runs: { type: "string", default: "2" },
    "no-full": { type: "boolean", default: false },
    "cross-runs": { type: "string", default: "30" },
    "cross-preset": { type: "string" },
    "no-cross-replica": { type: "boolean", default: false },
    "cross-replica-only": { type: "boolean", default: false },
  },
});
const preset = values.preset as TinyPreset;
const runs = Number(values.runs);
const RANK = 8, MERGES = 10, SCALE = 0.02;
/** The machine's 1/5/15-minute load (others' work on shared cores skews timings). */
const loadAvg = async () => (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ").slice(0, 3).join(" ");
const loadAtStart = await loadAvg();

// The decode bench's data dir: its compiled base model is reused (a served base is compiled already).
const { modelDir, dataDir } = await benchModel(preset);
for (const stale of ["versions", "compiled/patched", "compiled/full", "exports"]) {
  await Deno.remove(`${dataDir}/${stale}`, { recursive: true }).catch(() => {});
}
const dbDir = await Deno.makeTempDir({ prefix: "bench-swap-db-" });
const store = await openStore({ dataDir: dbDir, databaseUrl: null });
const baseId = preset;
const bases = new BaseModels([{ id: baseId, source: modelDir }], { dataDir, device: "cpu" });
const file = await store.files.create({ filename: "t.jsonl", purpose: "fine-tune", bytes: 1, sha256: "0".repeat(64) });
const job = await store.jobs.create({ model: baseId, trainingFile: file.id, seed: 0, method: {}, hyperparameters: {} });

function linearShapes(c: ModelConfig): [string, number, number][] {
  const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, H = c.hiddenSize, I = c.intermediateSize;
  return [
    ["self_attn.q_proj", q, H],
    ["self_attn.k_proj", kv, H],
    ["self_attn.v_proj", kv, H],
    [
      "self_attn.o_proj",
      H,
      q,
    ],
    ["mlp.gate_proj", I, H],
    ["mlp.up_proj", I, H],
    ["mlp.down_proj", H, I],
  ];
}

/** The final adapter plus MERGES merge terms, each of rank RANK, on every linear layer. */
function scaloraDelta(c: ModelConfig, seed: number): LayerDelta[] {
  const out: LayerDelta[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    for (const [linear, m, n] of linearShapes(c)) {
      const name = `model.layers.${l}.${linear}`;
      const rng = new Rng(seed, name);
      const terms = Array.from({ length: MERGES + 1 }, () => ({
        U: rng.fillNormal(new Float32Array(m * RANK), SCALE),
        V: rng.fillNormal(new Float32Array(n * RANK), SCALE),
        k: RANK,
      }));
      out.push({ name, m, n, terms });
    }
  }
  return out;
}

interface Stack {
  versions: VersionService;
  registry: ModelRegistry;
  coordinator: AliasCoordinator;
}

async function stack(s: Store, compileOnCreate: boolean, compileMode: CompileMode): Promise<Stack> {
  const versions = new VersionService({ store: s, bases, compileOnCreate, compileMode });
  const registry = new ModelRegistry({ versions });
  const coordinator = new AliasCoordinator({ store: s, registry });
  await coordinator.start();
  return { versions, registry, coordinator };
}

const ms = (t: number) => Math.round(t);
const promptIds = Array.from({ length: 16 }, (_, i) => 32 + ((i * 7919) % 90));

/** Resolve the alias and stream; returns when the first token arrived (the rest is drained after). */
async function firstToken(registry: ModelRegistry, alias: string): Promise<{ at: number; ms: number; id: string }> {
  const t = performance.now();
  const served = await registry.resolve(alias);
  if (!served) throw new Error(`alias ${alias} did not resolve`);
  const it = served.engine.generate({
    promptIds,
    maxTokens: 8,
    sampling: { temperature: 0, topP: 1, topK: 0 },
    stop: [],
    stopTokenIds: [],
  })[Symbol.asyncIterator]();
  await it.next();
  const at = performance.now();
  for (let r = await it.next(); !r.done; r = await it.next());
  return { at, ms: at - t, id: served.id };
}

let seed = 1;
let seq = 0;
async function variant(
  st: Stack,
  alias: string,
  prepare: "none" | "warm" | "compile",
): Promise<Record<string, number>> {
  const deltas = scaloraDelta(config, seed++);
  const name = `ft:${baseId}:bench${seq++}:${job.id}`;
  const tc = performance.now();
  const record = await st.versions.createVersion({ name, kind: "final", jobId: job.id, baseModel: baseId, deltas });
  const createMs = performance.now() - tc;
  let warmMs = 0;
  if (prepare === "warm") {
    const tw = performance.now();
    await st.registry.warm(record.name);
    warmMs = performance.now() - tw;
  }
  // t0: the version exists (the job would report success here).
  const t0 = performance.now();
  let compileMs = 0;
  if (prepare !== "warm") {
    const tcomp = performance.now();
    await st.versions.servingDir(record); // a cache hit when createVersion compiled it
    compileMs = performance.now() - tcomp;
  }
  const ts = performance.now();
  const sw = await st.coordinator.set(alias, record.name);
  const switchMs = performance.now() - ts;
  const ft = await firstToken(st.registry, alias);
  const total = ft.at - t0;
  if (ft.id !== record.name) throw new Error(`served ${ft.id}, expected ${record.name}`);
  // Keep memory flat between variants: the previous target drains and closes.
  for (const e of st.registry.pool.ready()) {
    if (e.key !== record.name && e.key !== baseId) st.registry.pool.evict(e.key);
  }
  return {
    total_ms: ms(total),
    create_version_ms: ms(createMs),
    ...(prepare === "warm" ? { warm_ms: ms(warmMs) } : {}),
    compile_ms: ms(compileMs),
    switch_ms: ms(switchMs),
    load_ms: ms(sw.event?.loadMs ?? 0),
    validate_ms: ms(sw.event?.validateMs ?? 0),
    first_token_ms: ms(ft.ms),
    artifact_bytes: record.sizeBytes,
    dense_layers: versionMetadata(record).layers.filter((l) => l.format === "dense").length,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function summarize(rows: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(rows[0])) out[k] = median(rows.map((r) => r[k]));
  return out;
}

const ckpt = await bases.openCheckpoint(baseId);
const config = ckpt.config;
ckpt.close();

/** The cross-replica switch (null: no PostgreSQL server to run it on, or turned off). */
async function crossReplica(): Promise<CrossReplicaResult | { skipped: string }> {
  const databaseUrl = databaseUrlForBench();
  if (!databaseUrl) return { skipped: "no PostgreSQL server (set BENCH_DATABASE_URL or TEST_DATABASE_URL)" };
  const crossPreset = (values["cross-preset"] ?? preset) as TinyPreset;
  const model = crossPreset === preset ? modelDir : (await benchModel(crossPreset)).modelDir;
  const cfgCkpt = await bases.openCheckpoint(model);
  const cfg = cfgCkpt.config;
  cfgCkpt.close();
  return {
    preset: crossPreset,
    ...await crossReplicaSwitch({
      modelDir: model,
      deltas: (s) => scaloraDelta(cfg, 1000 + s),
      runs: Number(values["cross-runs"]),
      databaseUrl,
    }),
  } as CrossReplicaResult;
}

const crossSummary = (x: CrossReplicaResult | { skipped: string }) =>
  "skipped" in x
    ? `cross-replica skipped (${x.skipped})`
    : `cross-replica alias switch A -> B: median ${x.warm.median_ms} ms, p99 ${x.warm.p99_ms} ms over ${x.runs} ` +
      `(cold ${x.cold_ms.map((v) => `${(v / 1000).toFixed(2)} s`).join(", ")})`;

if (values["cross-replica-only"]) {
  const cross = await crossReplica();
  await store.close();
  await Deno.remove(dbDir, { recursive: true });
  const previous = JSON.parse(await Deno.readTextFile("bench/results/swap.json").catch(() => "{}"));
  const merged = { ...previous, bench: "swap", cross_replica: cross };
  console.log(JSON.stringify(cross, null, 2));
  await Deno.mkdir("bench/results", { recursive: true });
  await Deno.writeTextFile("bench/results/swap.json", JSON.stringify(merged, null, 2) + "\n");
  console.log(`swap: ${crossSummary(cross)}`);
  Deno.exit(0);
}

const main = await stack(store, false, "patch");
const tb = performance.now();
await main.coordinator.set("prod", baseId);
const baseLoadMs = performance.now() - tb;
await firstToken(main.registry, "prod");

const results: Record<string, Record<string, number>[]> = { cold: [], precompiled: [], warmed: [] };
for (let r = 0; r < runs; r++) {
  results.cold.push(await variant(main, "prod", "none"));
  const pre = await stack(store, true, "patch");
  results.precompiled.push(await variant({ ...main, versions: pre.versions }, "prod", "compile"));
  await pre.coordinator.close();
  await pre.registry.close();
  results.warmed.push(await variant(main, "prod", "warm"));
}
await main.coordinator.close();
await main.registry.close();

let full: Record<string, number> | null = null;
if (!values["no-full"]) {
  const st = await stack(store, false, "full");
  await st.coordinator.set("prod-full", baseId);
  full = await variant(st, "prod-full", "none");
  await st.coordinator.close();
  await st.registry.close();
}
await store.close();
await Deno.remove(dbDir, { recursive: true });
const cross = values["no-cross-replica"] ? { skipped: "--no-cross-replica" } : await crossReplica();

const variants = {
  cold: summarize(results.cold),
  precompiled: summarize(results.precompiled),
  warmed: summarize(results.warmed),
  ...(full ? { full_compile: full } : {}),
};
const result = {
  bench: "swap",
  preset,
  device: "cpu",
  cores: navigator.hardwareConcurrency,
  runs,
  parameters: parameterCount(config),
  delta: {
    layers: config.numLayers * 7,
    terms_per_layer: MERGES + 1,
    rank_per_term: RANK,
    total_rank: RANK * (MERGES + 1),
    dense_layers: variants.cold.dense_layers,
    artifact_bytes: variants.cold.artifact_bytes,
  },
  base_load_ms: ms(baseLoadMs),
  target_ms: 2000,
  variants,
  load_average: { start: loadAtStart, end: await loadAvg() },
  cross_replica: cross,
  runs_detail: results,
  method:
    "total_ms = version row exists -> alias switch (compile if needed + engine load + validation) -> resolve -> first streamed token; per-field medians over runs (so fields need not add up; runs_detail has each run; full: 1 run). warm_ms is spent at job end, off the switch path.",
};
console.log(JSON.stringify(result, null, 2));
await Deno.mkdir("bench/results", { recursive: true });
await Deno.writeTextFile("bench/results/swap.json", JSON.stringify(result, null, 2) + "\n");
const s = (x: number) => `${(x / 1000).toFixed(2)} s`;
const c = variants.cold, p = variants.precompiled, w = variants.warmed;
console.log(
  `swap ${preset} (rank ${RANK * (MERGES + 1)} x ${config.numLayers * 7} layers, ${
    (c.artifact_bytes / 1e6).toFixed(0)
  } MB delta): ` +
    `version -> first token via alias: cold ${s(c.total_ms)} (compile ${s(c.compile_ms)}, load ${
      s(c.load_ms)
    }, validate ${s(c.validate_ms)}), precompiled ${s(p.total_ms)} (+${
      s(p.create_version_ms - c.create_version_ms)
    } in createVersion), warmed ${s(w.total_ms)} (+${s(w.warm_ms)} warm at job end)` +
    (full ? `, full merged compile ${s(full.total_ms)} (compile ${s(full.compile_ms)})` : "") + `; target 2 s; ` +
    crossSummary(cross),
);
