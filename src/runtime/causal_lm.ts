/**
 * A loaded causal LM: the ONNX serving session plus its tokenizer, with a
 * forward step over a KV cache. Batched: rows share one sequence length, and
 * padding is expressed through the attention mask; the graph attends by
 * position (see decoder_graph.ts), so masked cache columns may sit anywhere.
 */
import type { ModelConfig } from "../model/config.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { IO_NAMES } from "../model/decoder_graph.ts";
import type { Device } from "./device.ts";
import { disposeLayers } from "./device_kv.ts";
import { releaseOnDevice } from "./device_lock.ts";
import { ort, type OrtSession, type OrtTensor } from "./ort.ts";
import { createSession, type OutputLocation, type SessionOptions } from "./session.ts";
import { hostBytes, NO_TRANSFER, type TransferBytes } from "./transfer.ts";

export interface KvCache {
  readonly layers: LayerKv[];
  /** Columns held, masked ones included (the past length of the next step). */
  readonly length: number;
  readonly batch: number;
}

export interface ForwardInput {
  /** [batch][seq] token ids; every row has the same length. */
  inputIds: number[][];
  /** [batch][past + seq]: 1 for real tokens, 0 for padding. Default all ones. */
  attentionMask?: number[][];
  /** [batch][seq]; default past.length + i. */
  positionIds?: number[][];
  past?: KvCache | null;
  /** Logits for the last k positions only; 0 (default) = every position. */
  numLogitsToKeep?: number;
}

export interface LayerKv {
  key: OrtTensor;
  value: OrtTensor;
}

interface Logits {
  /** [batch, kept positions, vocab] row-major (kept = seq unless numLogitsToKeep is set). */
  logits: Float32Array;
  /** log Σ exp of each logits row: [batch × kept positions]. */
  logSumExp: Float32Array;
  transfer: TransferBytes;
}

export interface ForwardOutput extends Logits {
  present: KvCache;
}

export interface StepOutput extends Logits {
  /** Per layer, the keys and values of this step's tokens: [batch, kvHeads, seq, headDim]. */
  step: LayerKv[];
}

function int64Tensor(rows: number[][]): OrtTensor {
  const cols = rows[0]?.length ?? 0;
  const data = new BigInt64Array(rows.length * cols);
  rows.forEach((r, i) => {
    if (r.length !== cols) throw new Error("ragged batch: rows must have equal length");
    r.forEach((x, j) => (data[i * cols + j] = BigInt(x)));
  });
  return new ort.Tensor("int64", data, [rows.length, cols]);
}

/**
 * Where a session's outputs land: on WebGPU the keys and values stay in GPU
 * memory (the engine feeds them back as `past`), logits come to the host.
 */
export function servingOutputLocations(config: ModelConfig): Record<string, OutputLocation> {
  const map: Record<string, OutputLocation> = {
    [IO_NAMES.logits]: "cpu",
    [IO_NAMES.logitsLogSumExp]: "cpu",
  };
  for (let i = 0; i < config.numLayers; i++) {
    for (const name of [IO_NAMES.presentKey, IO_NAMES.presentValue, IO_NAMES.stepKey, IO_NAMES.stepValue]) {
      map[name(i)] = "gpu-buffer";
    }
  }
  return map;
}

export class CausalLM {
  /**
   * @param device where the session runs: on "webgpu" its keys and values
   * are GPU tensors (see servingOutputLocations), which the caller must
   * dispose; elsewhere they are host tensors.
   */
  constructor(
    readonly config: ModelConfig,
    readonly session: OrtSession,
    readonly dtype: ComputeDType,
    readonly device: Device = "cpu",
  ) {}

  /** Opens the serving model at `modelPath` on `opts.device`, with the output locations it needs there. */
  static async open(config: ModelConfig, modelPath: string, dtype: ComputeDType, opts: SessionOptions) {
    const outputLocation = opts.device === "webgpu" ? servingOutputLocations(config) : undefined;
    const session = await createSession(modelPath, { ...opts, outputLocation });
    return new CausalLM(config, session, dtype, opts.device);
  }

  /** Keys and values live in device memory between steps (WebGPU). */
  get kvOnDevice(): boolean {
    return this.device === "webgpu";
  }

  /** Frees a cache this model returned once it is no longer fed back (GPU memory is not garbage-collected). */
  releaseCache(cache: KvCache | null): void {
    if (cache && this.kvOnDevice) disposeLayers(cache.layers);
  }

  emptyCache(batch: number): KvCache {
    const { numKvHeads, headDim, numLayers } = this.config;
    const empty = (): OrtTensor =>
      this.dtype === "float32"
        ? new ort.Tensor("float32", new Float32Array(0), [batch, numKvHeads, 0, headDim])
        : new ort.Tensor("float16", new Uint16Array(0), [batch, numKvHeads, 0, headDim]);
    return { layers: Array.from({ length: numLayers }, () => ({ key: empty(), value: empty() })), length: 0, batch };
  }

  /** One step that returns the grown cache (`present`). */
  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const { kv, length, ...out } = await this.#run(input, "present");
    return { ...out, present: { layers: kv, length, batch: input.inputIds.length } };
  }

  /**
   * One step that returns only its own tokens' keys and values: for callers
   * that keep the cache themselves (the batch engine). onnxruntime-node copies
   * every fetched output into a fresh buffer, so not fetching `present` saves
   * a copy of the whole cache per step.
   */
  async forwardStep(input: ForwardInput): Promise<StepOutput> {
    const { kv, length: _, ...out } = await this.#run(input, "step");
    return { ...out, step: kv };
  }

  async #run(input: ForwardInput, fetch: "present" | "step") {
    const batch = input.inputIds.length;
    const seq = input.inputIds[0]?.length ?? 0;
    if (batch === 0 || seq === 0) throw new Error("forward needs at least one token");
    const past = input.past ?? this.emptyCache(batch);
    if (past.batch !== batch) throw new Error(`KV cache batch ${past.batch} != input batch ${batch}`);
    const total = past.length + seq;
    const mask = input.attentionMask ?? input.inputIds.map(() => new Array(total).fill(1));
    const positions = input.positionIds ??
      input.inputIds.map(() => Array.from({ length: seq }, (_, i) => past.length + i));
    const feeds: Record<string, OrtTensor> = {
      [IO_NAMES.inputIds]: int64Tensor(input.inputIds),
      [IO_NAMES.attentionMask]: int64Tensor(mask),
      [IO_NAMES.positionIds]: int64Tensor(positions),
      [IO_NAMES.numLogitsToKeep]: new ort.Tensor("int64", BigInt64Array.of(BigInt(input.numLogitsToKeep ?? 0)), []),
    };
    past.layers.forEach((l, i) => {
      feeds[IO_NAMES.pastKey(i)] = l.key;
      feeds[IO_NAMES.pastValue(i)] = l.value;
    });
    const [keyName, valueName] = fetch === "present"
      ? [IO_NAMES.presentKey, IO_NAMES.presentValue]
      : [IO_NAMES.stepKey, IO_NAMES.stepValue];
    const wanted = [
      IO_NAMES.logits,
      IO_NAMES.logitsLogSumExp,
      ...past.layers.flatMap((_, i) => [keyName(i), valueName(i)]),
    ];
    // With per-output locations every output is fetched, in the session's order (see SessionOptions).
    const out = await this.session.run(feeds, this.kvOnDevice ? this.session.outputNames : wanted);
    const keep = new Set(wanted);
    for (const [name, t] of Object.entries(out)) if (!keep.has(name) && t.location === "gpu-buffer") releaseOnDevice(t);
    const fetched = wanted.map((name) => out[name]);
    return {
      logits: out[IO_NAMES.logits].data as Float32Array,
      logSumExp: out[IO_NAMES.logitsLogSumExp].data as Float32Array,
      kv: past.layers.map((_, i) => ({ key: out[keyName(i)], value: out[valueName(i)] })),
      length: total,
      transfer: this.device === "cpu"
        ? NO_TRANSFER
        : { hostToDevice: hostBytes(Object.values(feeds)), deviceToHost: hostBytes(fetched) },
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
