/**
 * The causal-LM training graph: the decoder without KV cache (buildDecoder)
 * with LoRA adapters (LoraGraph) on chosen linear layers, masked mean
 * cross-entropy and token accuracy; and `LmTrainingModel`, the
 * `TrainingModel<LmBatch>` the trainer drives.
 *
 * Inputs: `input_ids`, `attention_mask`, `position_ids`, `labels`, all int64
 * [batch, seq] as batching.ts collates them (right padding), plus the adapter
 * factors and the weight state's inputs (lora_graph.ts).
 * Labels are unshifted (HF): the graph shifts, so logits at t are scored
 * against labels[t + 1]; a label < 0 (IGNORE_INDEX) is not counted.
 * Outputs: `loss` (mean over counted tokens; 0 when none), `count` (counted
 * tokens), `correct` (counted tokens whose argmax logit is the label), and
 * `grad.<name>.A/B` (training graph only).
 *
 * Base weights are frozen: adapted layers' W come from the weight state
 * (graph inputs over JS memory on CPU, or baked initializers + pending
 * low-rank merges); every other tensor (embeddings, norms, head, biases,
 * non-target linears) is an initializer read lazily from the checkpoint.
 */
import { z } from "zod";
import type { ModelConfig } from "../model/config.ts";
import { buildDecoder, type ComputeDType } from "../model/decoder_graph.ts";
import { weightLayout } from "../model/layout.ts";
import { Rng } from "../model/rng.ts";
import { convertWeights } from "../model/decoder_graph.ts";
import type { WeightSource } from "../model/serving_graph.ts";
import { GraphBuilder } from "../onnx/builder.ts";
import { linearCrossEntropy } from "../onnx/losses.ts";
import type { Graph, Value } from "../onnx/ir.ts";
import { ort, type OrtTensor } from "../runtime/ort.ts";
import type { Device } from "../runtime/session.ts";
import { type LmBatch, sliceRows } from "./batching.ts";
import { IGNORE_INDEX } from "./dataset.ts";
import { type FrozenWeightLayout, LoraGraph, LOSS_OUTPUT, type TrainingGraphIO } from "./lora_graph.ts";
import { TrainingSession } from "./training_session.ts";
import {
  type AdapterFactors,
  type AdapterGradients,
  type AdapterSpec,
  type EvalResult,
  pooled,
  type StepResult,
  type TrainingModel,
} from "./types.ts";
import { ActivationMemory, DEFAULT_ACTIVATION_BUDGET, LOSS_CHUNKS } from "./activation_memory.ts";
import {
  BakedWeightState,
  CpuWeightState,
  DeviceWeightState,
  type FrozenLayer,
  type GraphWeightState,
} from "./weight_state.ts";

export const TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type TargetModule = typeof TARGET_MODULES[number];

const MODULE_PATHS: Record<TargetModule, string> = {
  q_proj: "self_attn.q_proj",
  k_proj: "self_attn.k_proj",
  v_proj: "self_attn.v_proj",
  o_proj: "self_attn.o_proj",
  gate_proj: "mlp.gate_proj",
  up_proj: "mlp.up_proj",
  down_proj: "mlp.down_proj",
};

export const METRIC_OUTPUTS = { count: "count", correct: "correct" } as const;

export const LoraConfigSchema = z.object({
  rank: z.number().int().min(1),
  alpha: z.number().positive(),
  /** s = alpha / sqrt(r) instead of alpha / r. */
  rsLora: z.boolean().default(false),
  targetModules: z.array(z.enum(TARGET_MODULES)).min(1).default([...TARGET_MODULES]),
  /** Decoder layers to adapt (default all). */
  layers: z.array(z.number().int().min(0)).optional(),
});
export type LoraConfig = z.input<typeof LoraConfigSchema>;
type ParsedLoraConfig = z.output<typeof LoraConfigSchema>;

export class LmTrainingError extends Error {
  override name = "LmTrainingError";
}

function parseLora(lora: LoraConfig, config: ModelConfig): ParsedLoraConfig {
  const r = LoraConfigSchema.safeParse(lora);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new LmTrainingError(`invalid LoRA config ${first.path.join(".")}: ${first.message}`);
  }
  const bad = r.data.layers?.find((l) => l >= config.numLayers);
  if (bad !== undefined) throw new LmTrainingError(`LoRA layer ${bad} out of range (model has ${config.numLayers})`);
  return r.data;
}

export function loraScale(lora: Pick<LoraConfig, "rank" | "alpha" | "rsLora">): number {
  return lora.rsLora ? lora.alpha / Math.sqrt(lora.rank) : lora.alpha / lora.rank;
}

/** The adapters a LoRA config puts on a model, in layer then module order; names are HF module paths. */
export function lmAdapterSpecs(config: ModelConfig, lora: LoraConfig): AdapterSpec[] {
  const p = parseLora(lora, config);
  const shapes = new Map(weightLayout(config).map((t) => [t.name, t.shape]));
  const layers = p.layers ?? [...Array(config.numLayers).keys()];
  const scale = loraScale(p);
  const specs: AdapterSpec[] = [];
  for (const l of [...new Set(layers)].sort((a, b) => a - b)) {
    for (const mod of TARGET_MODULES) {
      if (!p.targetModules.includes(mod)) continue;
      const name = `model.layers.${l}.${MODULE_PATHS[mod]}`;
      const [m, n] = shapes.get(`${name}.weight`)!;
      specs.push({ name, m, n, rank: p.rank, scale });
    }
  }
  return specs;
}

export interface LmGraphOptions {
  /** Compute dtype (default float32); adapters, W and the loss stay float32 at the edges. */
  dtype?: ComputeDType;
  /** false: forward only (loss and metrics, no gradients), for evaluation. Default true. */
  gradients?: boolean;
  /**
   * Recompute each layer's activations in the backward pass from the layer's
   * input (activation checkpointing): activation memory falls from every
   * layer's intermediates to one layer's plus each layer's input, for one
   * more forward pass of compute. For long batches.
   */
  recompute?: boolean;
}

export interface LmTrainingGraph {
  graph: Graph;
  io: TrainingGraphIO;
}

/**
 * Builds the graph. `source` supplies the non-adapted tensors (read when the
 * graph is serialised); `layout` says how adapted W enter (the weight state's).
 */
export function buildLmTrainingGraph(
  source: WeightSource,
  adapters: readonly AdapterSpec[],
  layout: FrozenWeightLayout,
  opts: LmGraphOptions = {},
): LmTrainingGraph {
  const config = source.config;
  const dtype = opts.dtype ?? "float32";
  const g = new GraphBuilder(opts.gradients === false ? "lm_eval" : "lm_train");
  const lora = new LoraGraph(g, layout);
  const specs = new Map(adapters.map((a) => [a.name, a]));
  const shapes = new Map(weightLayout(config).map((t) => [t.name, t.shape]));
  const created = new Map<string, Value>();
  const weight = (name: string): Value => {
    const hit = created.get(name);
    if (hit) return hit;
    const shape = shapes.get(name);
    if (!shape) throw new LmTrainingError(`the decoder asked for unknown weight "${name}"`);
    const v = g.initializer(name, dtype, shape, async () => convertWeights(await source.read(name), dtype));
    created.set(name, v);
    return v;
  };
  const hasBias = (name: string) => config.attentionBias && /\.self_attn\.[qkv]_proj$/.test(name);
  const linear = (x: Value, name: string, base: () => Value): Value => {
    const spec = specs.get(name);
    if (!spec) return base();
    return lora.linear(x, spec, { bias: hasBias(name) ? weight(`${name}.bias`) : undefined });
  };
  const dec = buildDecoder(g, config, {
    dtype,
    kvCache: false,
    weight,
    linear,
    head: false,
    recompute: opts.recompute === true && opts.gradients !== false,
  });
  const missing = adapters.filter((a) => !lora.adapters.some((b) => b.name === a.name));
  if (missing.length) throw new LmTrainingError(`no linear layer "${missing[0].name}" in the decoder`);

  const gradients = opts.gradients !== false;
  const hidden = g.reshape(dec.hidden, [-1, config.hiddenSize]); // [tokens, hidden]
  const { loss, count, correct, dHidden } = g.scoped("loss", () => {
    const labels = g.input("labels", "int64", ["batch_size", "sequence_length"]);
    // Shift: position t predicts token t + 1; the last position predicts nothing. The labels are
    // shifted (an ignored label appended), not the hidden states or logits (a slice would copy them).
    const firstColumn = g.slice(labels, [0], [1], [1]);
    const ignored = g.add(g.mul(firstColumn, g.constant(0, "int64", [])), g.constant(IGNORE_INDEX, "int64", []));
    const targets = g.reshape(g.concat([g.slice(labels, [1], [Number.MAX_SAFE_INTEGER], [1]), ignored], 1), [-1]);
    const weights = g.cast(g.greaterOrEqual(targets, g.constant(0, "int64", [])), "float32");
    // The vocabulary projection lives in the loss: logits and their gradient exist only there.
    return linearCrossEntropy(g, hidden, dec.headWeight, targets, weights, {
      gradient: gradients,
      chunks: LOSS_CHUNKS,
    });
  });
  const metrics = { [METRIC_OUTPUTS.count]: count, [METRIC_OUTPUTS.correct]: correct };
  if (gradients) return { graph: g.build(), io: lora.finish(loss, metrics, { from: hidden, seed: dHidden! }) };

  // Forward only: the same inputs and outputs minus gradients (ORT runs every node of a graph
  // whatever is fetched, so evaluation gets its own graph without the backward pass).
  g.output(g.cast(loss, "float32"), LOSS_OUTPUT);
  for (const [key, v] of Object.entries(metrics)) g.output(v, key);
  const io: TrainingGraphIO = {
    adapters: lora.adapters.map((a) => ({ ...a })),
    layout: layout.kind,
    loss: LOSS_OUTPUT,
    grads: new Map(),
    metrics: Object.keys(metrics),
  };
  return { graph: g.build(), io };
}

/** Batch → graph feeds. */
export function lmBatchFeeds(batch: LmBatch): Record<string, OrtTensor> {
  const dims = [batch.batchSize, batch.seqLen];
  return {
    input_ids: new ort.Tensor("int64", batch.inputIds, dims),
    attention_mask: new ort.Tensor("int64", batch.attentionMask, dims),
    position_ids: new ort.Tensor("int64", batch.positionIds, dims),
    labels: new ort.Tensor("int64", batch.labels, dims),
  };
}

/**
 * PEFT's initialisation: A (its lora_B) zeros, B (its lora_A) Kaiming-uniform
 * U(-1/sqrt(n), 1/sqrt(n)), each adapter from its own seeded stream.
 */
export function initAdapterFactors(adapters: readonly AdapterSpec[], seed: number): Map<string, AdapterFactors> {
  return new Map(adapters.map((a) => {
    const bound = 1 / Math.sqrt(a.n);
    const B = new Rng(seed, `lora/${a.name}/B`).fillUniform(new Float32Array(a.n * a.rank), -bound, bound);
    return [a.name, { A: new Float32Array(a.m * a.rank), B }];
  }));
}

export interface LmTrainingModelOptions {
  device?: Device;
  /** Intra-op threads of the training sessions (default 1, see openGraphSession in runtime/session.ts). */
  threads?: number;
  /**
   * Profile the training session into files with this prefix (see
   * runtime/placement.ts), and the weight state's Merge kernel into
   * `<prefix>.merge`.
   */
  profilePrefix?: string;
  dtype?: ComputeDType;
  /**
   * How adapted W are held: "input" (default on the CPU, host memory; and on
   * WebGPU, device tensors merged on the device) or "baked" (default on CUDA:
   * initializers plus pending low-rank merges).
   */
  weightLayout?: "input" | "baked";
  /** BakedWeightState's re-bake threshold. */
  maxPendingRank?: number;
  /**
   * Activation checkpointing per layer (LmGraphOptions.recompute). Default:
   * only when one row of `maxLength` tokens would not fit the activation
   * budget without it.
   */
  recompute?: boolean;
  /** The longest sequence the model will see (decides `recompute`). */
  maxLength?: number;
  /**
   * Activation memory per run (default DEFAULT_ACTIVATION_BUDGET): a bigger
   * batch runs as micro-batches of whole rows (activation_memory.ts).
   */
  activationBudgetBytes?: number;
  /**
   * false: an evaluation-only model (scoring a model's weights): only the
   * forward graph is built and opened; `forwardBackward` refuses. Default true.
   */
  gradients?: boolean;
}

export class LmTrainingModel implements TrainingModel<LmBatch> {
  #evalSession: TrainingSession | null = null;

  private constructor(
    readonly source: WeightSource,
    readonly adapters: readonly AdapterSpec[],
    readonly weights: GraphWeightState,
    readonly options: LmTrainingModelOptions,
    private readonly train: TrainingSession,
    /** The training graph's activation estimate (the forward graph's for an evaluation-only model). */
    readonly memory: ActivationMemory,
  ) {
    if (options.gradients === false) this.#evalSession = train;
  }

  /** Whether the backward pass recomputes each layer's activations. */
  get recompute(): boolean {
    return this.memory.recompute;
  }

  /** Activation bytes one run may take (micro-batches are cut to fit). */
  get activationBudget(): number {
    return this.options.activationBudgetBytes ?? DEFAULT_ACTIVATION_BUDGET;
  }

  /** Reads the adapted layers' W from `source` into a weight state and opens the training session. */
  static async create(
    source: WeightSource,
    lora: LoraConfig,
    opts: LmTrainingModelOptions = {},
  ): Promise<LmTrainingModel> {
    const adapters = lmAdapterSpecs(source.config, lora);
    const device = opts.device ?? "cpu";
    const layers = new Map<string, FrozenLayer>();
    for (const a of adapters) {
      // A copy: the state merges in place, and a source may hand out buffers it keeps (tests' memory models).
      layers.set(a.name, { m: a.m, n: a.n, data: (await source.read(`${a.name}.weight`)).slice() });
    }
    const kind = opts.weightLayout ?? (device === "cuda" ? "baked" : "input");
    const stateOpts = {
      device,
      threads: opts.threads,
      ...(opts.profilePrefix ? { profilePrefix: `${opts.profilePrefix}.merge` } : {}),
    };
    const weights: GraphWeightState = kind === "baked"
      ? new BakedWeightState(layers, { ...stateOpts, maxPendingRank: opts.maxPendingRank })
      : device === "webgpu"
      ? await DeviceWeightState.create(layers, stateOpts)
      : new CpuWeightState(layers, stateOpts);
    try {
      const build = (recompute: boolean) =>
        buildLmTrainingGraph(source, adapters, weights.layout, {
          dtype: opts.dtype,
          recompute,
          gradients: opts.gradients,
        });
      let built = build(opts.recompute === true);
      let memory = new ActivationMemory(built.graph, opts.recompute === true);
      const budget = opts.activationBudgetBytes ?? DEFAULT_ACTIVATION_BUDGET;
      if (opts.recompute === undefined && opts.maxLength !== undefined && !memory.fits(opts.maxLength, budget)) {
        built = build(true);
        memory = new ActivationMemory(built.graph, true);
      }
      const session = await TrainingSession.create(built.graph, built.io, weights, {
        device,
        threads: opts.threads,
        profilePrefix: opts.profilePrefix,
        cpuMemArena: false,
      });
      return new LmTrainingModel(source, adapters, weights, { ...opts, device }, session, memory);
    } catch (e) {
      await weights.release();
      throw e;
    }
  }

  /** A layer's weight as the checkpoint holds it (the merges' base). */
  async baseWeight(name: string): Promise<Float32Array> {
    return (await this.source.read(`${name}.weight`)).slice();
  }

  /** Rows per run for a batch: all of them unless their activations would pass the budget. */
  rowsPerRun(batch: Pick<LmBatch, "batchSize" | "seqLen">): number {
    return this.memory.rowsPerRun(batch.batchSize, batch.seqLen, this.activationBudget);
  }

  /**
   * Loss, metrics and adapter gradients of `batch`. A batch over the
   * activation budget runs as micro-batches of whole rows: gradients and
   * loss are combined weighted by each one's counted tokens (the mean over
   * the whole batch, up to float rounding).
   */
  async forwardBackward(batch: LmBatch, factors: ReadonlyMap<string, AdapterFactors>): Promise<StepResult> {
    if (this.options.gradients === false) throw new Error("an evaluation-only model has no gradients");
    const parts: StepResult[] = [];
    for (const part of microBatches(batch, this.rowsPerRun(batch))) {
      const run = await this.train.run(factors, lmBatchFeeds(part));
      parts.push({ loss: run.loss, grads: run.grads, ...metricsOf(run.metrics), transfer: run.transfer });
    }
    return parts.length === 1 ? parts[0] : combineParts(parts);
  }

  async evaluate(batch: LmBatch, factors: ReadonlyMap<string, AdapterFactors>): Promise<EvalResult> {
    this.#evalSession ??= await this.#openEval();
    const parts: EvalResult[] = [];
    for (const part of microBatches(batch, this.rowsPerRun(batch))) {
      const run = await this.#evalSession.run(factors, lmBatchFeeds(part), { grads: false });
      parts.push({ loss: run.loss, ...metricsOf(run.metrics) });
    }
    return pooled(parts);
  }

  async #openEval(): Promise<TrainingSession> {
    const { graph, io } = buildLmTrainingGraph(this.source, this.adapters, this.weights.layout, {
      dtype: this.options.dtype,
      gradients: false,
    });
    return await TrainingSession.create(graph, io, this.weights, {
      device: this.options.device ?? "cpu",
      threads: this.options.threads,
      cpuMemArena: false,
    });
  }

  async release(): Promise<void> {
    await this.train.release();
    if (this.#evalSession !== this.train) await this.#evalSession?.release();
    this.#evalSession = null;
    await this.weights.release();
  }
}

/** `batch` as runs of at most `rows` rows (itself when it fits). */
function microBatches(batch: LmBatch, rows: number): LmBatch[] {
  if (batch.batchSize <= rows) return [batch];
  const out: LmBatch[] = [];
  for (let r = 0; r < batch.batchSize; r += rows) out.push(sliceRows(batch, r, Math.min(batch.batchSize, r + rows)));
  return out;
}

/** Micro-batch results as one: loss and gradients weighted by counted tokens, counts summed. */
function combineParts(parts: readonly StepResult[]): StepResult {
  const count = parts.reduce((s, p) => s + p.count, 0);
  const weight = (p: StepResult) => count > 0 ? p.count / count : 0;
  const grads = new Map<string, AdapterGradients>();
  for (const name of parts[0].grads.keys()) {
    const sum = (pick: (g: AdapterGradients) => Float32Array) => {
      const acc = new Float64Array(pick(parts[0].grads.get(name)!).length);
      for (const p of parts) {
        const w = weight(p), g = pick(p.grads.get(name)!);
        if (w !== 0) { for (let i = 0; i < acc.length; i++) acc[i] += w * g[i]; }
      }
      return Float32Array.from(acc);
    };
    grads.set(name, { gA: sum((g) => g.gA), gB: sum((g) => g.gB) });
  }
  const transfer = parts.reduce((t, p) => ({
    hostToDevice: t.hostToDevice + (p.transfer?.hostToDevice ?? 0),
    deviceToHost: t.deviceToHost + (p.transfer?.deviceToHost ?? 0),
  }), { hostToDevice: 0, deviceToHost: 0 });
  return {
    loss: parts.reduce((s, p) => s + weight(p) * p.loss, 0),
    count,
    correct: parts.reduce((s, p) => s + (p.correct ?? 0), 0),
    grads,
    transfer,
  };
}

function metricsOf(metrics: Record<string, OrtTensor>): { count: number; correct: number } {
  const scalar = (name: string) => Number((metrics[name].data as Float32Array)[0]);
  return { count: scalar(METRIC_OUTPUTS.count), correct: scalar(METRIC_OUTPUTS.correct) };
}
