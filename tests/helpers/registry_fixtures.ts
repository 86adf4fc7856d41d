/**
 * Fixtures for the registry tests: a tiny generated model on disk, a PGlite
 * store with a job row (versions reference jobs), synthetic ScaLoRA-like
 * deltas (random low-rank terms), and the registry stack wired together.
 */
import { openCheckpoint } from "../../src/model/checkpoint.ts";
import type { ModelConfig } from "../../src/model/config.ts";
import type { ComputeDType } from "../../src/model/decoder_graph.ts";
import type { Device } from "../../src/runtime/device.ts";
import { Rng } from "../../src/model/rng.ts";
import { generateTinyModel } from "../../src/model/tiny_model.ts";
import { BaseModels } from "../../src/registry/base_models.ts";
import { AliasCoordinator, type AliasEvent } from "../../src/registry/hot_swap.ts";
import { ModelRegistry, type ModelRegistryOptions } from "../../src/registry/model_registry.ts";
import type { NewVersion } from "../../src/registry/types.ts";
import type { LayerDelta } from "../../src/train/layer_delta.ts";
import { VersionService, type VersionServiceOptions } from "../../src/registry/versions.ts";
import { openStore, type Store } from "../../src/store/store.ts";
import { resetStore } from "../../src/store/testing.ts";

/** Runs `fn` with one store for a whole test file (PGlite takes seconds to open). */
export async function withSharedStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "scalora-registry-db-" });
  const store = await openStore({ dataDir: dir, databaseUrl: null });
  try {
    await fn(store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

export const LINEARS = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
];

/** [m, n] of a linear layer of `config`. */
export function linearShape(config: ModelConfig, linear: string): [number, number] {
  const H = config.hiddenSize, I = config.intermediateSize;
  const q = config.numHeads * config.headDim, kv = config.numKvHeads * config.headDim;
  switch (linear) {
    case "self_attn.q_proj":
      return [q, H];
    case "self_attn.k_proj":
    case "self_attn.v_proj":
      return [kv, H];
    case "self_attn.o_proj":
      return [H, q];
    case "mlp.down_proj":
      return [H, I];
    default:
      return [I, H];
  }
}

export interface DeltaSpec {
  seed: number;
  /** Rank of each term. */
  rank: number;
  /** Terms per layer (merges + final adapter). */
  terms: number;
  /** Std of U and V entries. */
  scale: number;
  /** Which layers (default: every linear of every layer). */
  layers?: number[];
  linears?: string[];
}

/** Random low-rank terms on the chosen linear layers. */
export function randomDeltas(config: ModelConfig, spec: DeltaSpec): LayerDelta[] {
  const out: LayerDelta[] = [];
  const layers = spec.layers ?? Array.from({ length: config.numLayers }, (_, i) => i);
  for (const l of layers) {
    for (const linear of spec.linears ?? LINEARS) {
      const name = `model.layers.${l}.${linear}`;
      const [m, n] = linearShape(config, linear);
      const rng = new Rng(spec.seed, name);
      const terms = Array.from({ length: spec.terms }, () => ({
        U: rng.fillNormal(new Float32Array(m * spec.rank), spec.scale),
        V: rng.fillNormal(new Float32Array(n * spec.rank), spec.scale),
        k: spec.rank,
      }));
      out.push({ name, m, n, terms });
    }
  }
  return out;
}

export async function createJob(store: Store, model: string): Promise<string> {
  const file = await store.files.create({
    filename: "train.jsonl",
    purpose: "fine-tune",
    bytes: 1,
    sha256: "c".repeat(64),
  });
  const job = await store.jobs.create({
    model,
    trainingFile: file.id,
    suffix: "t",
    seed: 1,
    method: { type: "supervised" },
    hyperparameters: {},
  });
  return job.id;
}

export interface RegistryFixture {
  root: string;
  dataDir: string;
  modelDir: string;
  baseId: string;
  config: ModelConfig;
  store: Store;
  bases: BaseModels;
  versions: VersionService;
  registry: ModelRegistry;
  coordinator: AliasCoordinator;
  events: AliasEvent[];
  jobId: string;
  /** A NewVersion on the fixture's base and job. */
  version(suffix: string, deltas: LayerDelta[], kind?: NewVersion["kind"]): NewVersion;
  close(): Promise<void>;
}

export interface FixtureOptions {
  /** Reused store (PGlite takes seconds to open): emptied, not closed. Default: a fresh one. */
  store?: Store;
  arch?: "llama" | "qwen3";
  seed?: number;
  registry?: Partial<ModelRegistryOptions>;
  versions?: Partial<VersionServiceOptions>;
  /** Reuse a generated model directory (shared across tests in one file). */
  modelDir?: string;
  /** Device of every engine (default "cpu"), and its compute dtype (default: the device's). */
  device?: Device;
  dtype?: ComputeDType;
}

/** A generated tiny model (bytes tokenizer) in `dir`. */
export async function tinyModel(dir: string, arch: "llama" | "qwen3" = "llama", seed = 3) {
  return await generateTinyModel({ out: dir, arch, preset: "tiny", tokenizer: "bytes", seed });
}

async function configOf(dir: string): Promise<ModelConfig> {
  const ckpt = await openCheckpoint(dir);
  ckpt.close();
  return ckpt.config;
}

export async function openRegistryFixture(opts: FixtureOptions = {}): Promise<RegistryFixture> {
  const root = await Deno.makeTempDir({ prefix: "scalora-registry-" });
  const dataDir = `${root}/data`;
  const modelDir = opts.modelDir ?? `${root}/model`;
  const config = opts.modelDir ? await configOf(modelDir) : (await tinyModel(modelDir, opts.arch, opts.seed)).config;
  const baseId = "tiny-base";
  const store = opts.store ?? await openStore({ dataDir, databaseUrl: null });
  if (opts.store) await resetStore(store);
  const bases = new BaseModels([{ id: baseId, source: modelDir }], {
    dataDir,
    device: opts.device ?? "cpu",
    dtype: opts.dtype,
  });
  const versions = new VersionService({ store, bases, ...opts.versions });
  const registry = new ModelRegistry({ versions, threads: 1, ...opts.registry });
  await registry.refresh();
  const events: AliasEvent[] = [];
  const coordinator = new AliasCoordinator({ store, registry, onEvent: (e) => events.push(e) });
  await coordinator.start();
  const jobId = await createJob(store, baseId);
  return {
    root,
    dataDir,
    modelDir,
    baseId,
    config,
    store,
    bases,
    versions,
    registry,
    coordinator,
    events,
    jobId,
    version: (suffix, deltas, kind = "final") => ({
      name: `ft:${baseId}:${suffix}:${jobId}`,
      kind,
      jobId,
      baseModel: baseId,
      deltas,
    }),
    close: async () => {
      await coordinator.close();
      await registry.close();
      if (!opts.store) await store.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}
