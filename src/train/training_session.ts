/**
 * Runs a finished training graph (LoraGraph.finish): feeds the adapter
 * factors, the weight state's inputs and the batch, reads back the loss,
 * adapter gradients and metrics. Re-opens the session when a baked weight
 * state re-bakes (its initializers changed).
 */
import type { Graph } from "../onnx/ir.ts";
import { hostBytes, NO_TRANSFER, type TransferBytes } from "../runtime/transfer.ts";
import { ort, type OrtSession, type OrtTensor } from "../runtime/ort.ts";
import { openGraphSession, type SessionOptions } from "../runtime/session.ts";
import { loraNames, type TrainingGraphIO } from "./lora_graph.ts";
import type { AdapterFactors, AdapterGradients } from "./types.ts";
import type { GraphWeightState } from "./weight_state.ts";

export interface TrainingRun {
  loss: number;
  /** Bytes copied between host and device (0 on the CPU). */
  transfer: TransferBytes;
  /** Empty when run without gradients. */
  grads: Map<string, AdapterGradients>;
  metrics: Record<string, OrtTensor>;
}

export class TrainingSessionError extends Error {
  override name = "TrainingSessionError";
}

export class TrainingSession {
  #session: OrtSession;
  #generation: number;

  private constructor(
    readonly graph: Graph,
    readonly io: TrainingGraphIO,
    readonly weights: GraphWeightState,
    readonly options: SessionOptions,
    session: OrtSession,
  ) {
    this.#session = session;
    this.#generation = weights.generation;
  }

  static async create(
    graph: Graph,
    io: TrainingGraphIO,
    weights: GraphWeightState,
    options: SessionOptions,
  ): Promise<TrainingSession> {
    if (io.layout !== weights.layout.kind) {
      throw new TrainingSessionError(`graph built for "${io.layout}" weights, state is "${weights.layout.kind}"`);
    }
    const generation = weights.generation;
    const session = await openGraphSession(graph, options);
    const ts = new TrainingSession(graph, io, weights, options, session);
    ts.#generation = generation;
    return ts;
  }

  /** Forward (+ backward unless `grads` is false) on `inputs` (the batch tensors). */
  async run(
    factors: ReadonlyMap<string, AdapterFactors>,
    inputs: Record<string, OrtTensor>,
    opts: { grads?: boolean } = {},
  ): Promise<TrainingRun> {
    await this.#refresh();
    const feeds: Record<string, OrtTensor> = { ...inputs, ...this.weights.feeds() };
    for (const a of this.io.adapters) {
      const f = factors.get(a.name);
      if (!f) throw new TrainingSessionError(`no factors for adapter "${a.name}"`);
      feeds[loraNames.A(a.name)] = new ort.Tensor("float32", f.A, [a.m, a.rank]);
      feeds[loraNames.B(a.name)] = new ort.Tensor("float32", f.B, [a.n, a.rank]);
    }
    const wantGrads = opts.grads ?? true;
    const fetches = [this.io.loss, ...this.io.metrics];
    if (wantGrads) { for (const g of this.io.grads.values()) fetches.push(g.A, g.B); }
    const out = await this.#session.run(feeds, fetches);
    const transfer = this.options.device === "cpu"
      ? NO_TRANSFER
      : { hostToDevice: hostBytes(Object.values(feeds)), deviceToHost: hostBytes(fetches.map((f) => out[f])) };
    const grads = new Map<string, AdapterGradients>();
    if (wantGrads) {
      for (const [name, g] of this.io.grads) {
        grads.set(name, { gA: out[g.A].data as Float32Array, gB: out[g.B].data as Float32Array });
      }
    }
    const metrics: Record<string, OrtTensor> = {};
    for (const m of this.io.metrics) metrics[m] = out[m];
    return { loss: (out[this.io.loss].data as Float32Array)[0], grads, metrics, transfer };
  }

  async #refresh(): Promise<void> {
    if (this.#generation === this.weights.generation) return;
    const generation = this.weights.generation;
    const next = await openGraphSession(this.graph, this.options);
    await this.#session.release();
    this.#session = next;
    this.#generation = generation;
  }

  release(): Promise<void> {
    return this.#session.release();
  }
}
