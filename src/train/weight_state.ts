/**
 * Where the frozen (but periodically merged) weights of adapted layers live.
 *
 * - `CpuWeightState`: W is a graph input over JS memory (ORT CPU wraps input
 *   buffers without a copy); merges run the Merge kernel and copy the result
 *   back into the same buffer, so the next run sees it.
 * - `DeviceWeightState` (WebGPU): W is a graph input too, but a GPU tensor
 *   that never leaves the device: merges run the Merge kernel on the device
 *   and replace it (no session is rebuilt, nothing is copied per step);
 *   snapshots download it. Same graph and snapshot format as the CPU's.
 * - `BakedWeightState` (CUDA, whose onnxruntime-node binding has no device
 *   tensors): W is a graph initializer, so it stays on the device, and
 *   inputs are copied host→device every run. Merges since the last
 *   bake are carried as low-rank factors `pending.<name>.U/V` (small inputs);
 *   when a layer's pending rank exceeds `maxPendingRank` every layer is
 *   re-baked (Merge kernel) and `generation` increases, telling sessions built
 *   on the old initializers to re-open (see TrainingSession). Runs on CPU too,
 *   which is how it is tested here.
 */
import { MergeKernel } from "../../kernels/merge.ts";
import { DeviceCopier } from "../runtime/device_copy.ts";
import { releaseOnDevice } from "../runtime/device_lock.ts";
import { ort, type OrtTensor } from "../runtime/ort.ts";
import type { Device } from "../runtime/session.ts";
import { type FrozenWeightLayout, loraNames } from "./lora_graph.ts";
import type { LowRankMerge, WeightSnapshot, WeightState } from "./types.ts";

/** A WeightState that a training graph can be built over and fed from. */
export interface GraphWeightState extends WeightState {
  readonly layout: FrozenWeightLayout;
  /** Bumped whenever graph initializers change: sessions opened before are stale. */
  readonly generation: number;
  /** The per-run inputs this state contributes (`weight.*` or `pending.*`). */
  feeds(): Record<string, OrtTensor>;
  release(): Promise<void>;
}

/** A layer's initial frozen weight (row-major m x n). The state takes ownership of `data`. */
export interface FrozenLayer {
  m: number;
  n: number;
  data: Float32Array;
}

export interface WeightStateOptions {
  /** Device the Merge kernel runs on (default "cpu"). */
  device?: Device;
  threads?: number;
  /** Profile the Merge kernel into files with this prefix (onnxruntime's profiler). */
  profilePrefix?: string;
}

export class WeightStateError extends Error {
  override name = "WeightStateError";
}

abstract class BaseWeightState {
  protected readonly layers: Map<string, FrozenLayer>;
  protected readonly merger: MergeKernel;

  constructor(layers: ReadonlyMap<string, FrozenLayer>, opts: WeightStateOptions) {
    for (const [name, l] of layers) {
      if (l.data.length !== l.m * l.n) throw new WeightStateError(`${name}: ${l.data.length} values for ${l.m}x${l.n}`);
    }
    this.layers = new Map([...layers].map(([name, l]) => [name, { ...l }]));
    // No arena (a merge's outputs would stay reserved between events), and runs of at most 64 MiB of
    // output: onnxruntime-node copies every output into a fresh JS buffer, garbage once copied into the
    // state's W, so a merge of a 135M model's 425 MB of adapted weights would otherwise hold ~0.5 GB
    // more until the next collection.
    this.merger = new MergeKernel({
      device: opts.device ?? "cpu",
      threads: opts.threads,
      profilePrefix: opts.profilePrefix,
      cpuMemArena: false,
      maxOutputBytes: 64 * 2 ** 20,
    });
  }

  protected layer(name: string): FrozenLayer {
    const l = this.layers.get(name);
    if (!l) throw new WeightStateError(`no frozen weight "${name}"`);
    return l;
  }

  protected check(mg: LowRankMerge): FrozenLayer {
    const l = this.layer(mg.name);
    if (mg.U.length !== l.m * mg.k || mg.V.length !== l.n * mg.k || (mg.c && mg.c.length !== mg.k)) {
      throw new WeightStateError(`merge into "${mg.name}": factors do not match ${l.m}x${l.n} at rank ${mg.k}`);
    }
    return l;
  }

  mergeLowRank(name: string, U: Float32Array, V: Float32Array, k: number): Promise<void> {
    // The batched form validates and runs; one merge is the batch of one.
    return this.mergeLowRankMany([{ name, U, V, k }]);
  }

  abstract mergeLowRankMany(merges: readonly LowRankMerge[]): Promise<void>;

  release(): Promise<void> {
    return this.merger.release();
  }
}

export class CpuWeightState extends BaseWeightState implements GraphWeightState {
  readonly layout: FrozenWeightLayout = { kind: "input" };
  readonly generation = 0;

  constructor(layers: ReadonlyMap<string, FrozenLayer>, opts: WeightStateOptions = {}) {
    super(layers, opts);
  }

  feeds(): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    for (const [name, l] of this.layers) out[loraNames.weight(name)] = new ort.Tensor("float32", l.data, [l.m, l.n]);
    return out;
  }

  async mergeLowRankMany(merges: readonly LowRankMerge[]): Promise<void> {
    const live = merges.filter((mg) => this.check(mg) && mg.k > 0);
    const inputs = live.map((mg) => {
      const l = this.layer(mg.name);
      return { m: l.m, n: l.n, k: mg.k, W: l.data, A: mg.U, B: mg.V, c: mg.c ?? ones(mg.k), s: mg.scale ?? 1 };
    });
    // In place: the buffer the graph input wraps must stay the same object.
    await this.merger.run(inputs, (i, W) => this.layer(live[i].name).data.set(W));
  }

  dense(name: string): Promise<Float32Array> {
    return settle(() => this.layer(name).data.slice());
  }

  snapshot(): Promise<WeightSnapshot> {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, l] of this.layers) {
      tensors.set(loraNames.weight(name), { shape: [l.m, l.n], data: l.data.slice() });
    }
    return Promise.resolve({ kind: "input", tensors });
  }

  restore(snapshot: WeightSnapshot): Promise<void> {
    return settle(() => {
      if (snapshot.kind !== "input") {
        throw new WeightStateError(`cannot restore a "${snapshot.kind}" snapshot on CPU weights`);
      }
      // Validate every tensor before touching any buffer.
      const data = [...this.layers].map(([name, l]) => snapshotTensor(snapshot, loraNames.weight(name), l.m * l.n));
      [...this.layers.values()].forEach((l, i) => l.data.set(data[i]));
    });
  }
}

/**
 * Frozen weights as device tensors (WebGPU): uploaded once, merged on the
 * device, fed to every run as gpu-buffer inputs, downloaded only for
 * snapshots and dense copies.
 */
export class DeviceWeightState implements GraphWeightState {
  readonly layout: FrozenWeightLayout = { kind: "input" };
  readonly generation = 0;
  readonly #shapes: Map<string, { m: number; n: number }>;
  readonly #tensors = new Map<string, OrtTensor>();
  readonly #merger: MergeKernel;
  readonly #copier = new DeviceCopier();

  private constructor(layers: ReadonlyMap<string, FrozenLayer>, opts: WeightStateOptions) {
    this.#shapes = new Map([...layers].map(([name, l]) => [name, { m: l.m, n: l.n }]));
    this.#merger = new MergeKernel({
      device: "webgpu",
      threads: opts.threads,
      outputLocation: "gpu-buffer",
      profilePrefix: opts.profilePrefix,
    });
  }

  /** Uploads every layer (the host arrays are not kept). */
  static async create(layers: ReadonlyMap<string, FrozenLayer>, opts: WeightStateOptions = {}) {
    for (const [name, l] of layers) {
      if (l.data.length !== l.m * l.n) throw new WeightStateError(`${name}: ${l.data.length} values for ${l.m}x${l.n}`);
    }
    const state = new DeviceWeightState(layers, opts);
    try {
      for (const [name, l] of layers) state.#tensors.set(name, await state.#copier.upload(l.data, [l.m, l.n]));
    } catch (e) {
      await state.release();
      throw e;
    }
    return state;
  }

  #shape(name: string): { m: number; n: number } {
    const s = this.#shapes.get(name);
    if (!s) throw new WeightStateError(`no frozen weight "${name}"`);
    return s;
  }

  feeds(): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    for (const [name, t] of this.#tensors) out[loraNames.weight(name)] = t;
    return out;
  }

  mergeLowRank(name: string, U: Float32Array, V: Float32Array, k: number): Promise<void> {
    return this.mergeLowRankMany([{ name, U, V, k }]);
  }

  async mergeLowRankMany(merges: readonly LowRankMerge[]): Promise<void> {
    const live = merges.filter((mg) => {
      const { m, n } = this.#shape(mg.name);
      if (mg.U.length !== m * mg.k || mg.V.length !== n * mg.k || (mg.c && mg.c.length !== mg.k)) {
        throw new WeightStateError(`merge into "${mg.name}": factors do not match ${m}x${n} at rank ${mg.k}`);
      }
      return mg.k > 0;
    });
    const inputs = live.map((mg) => ({
      ...this.#shape(mg.name),
      k: mg.k,
      W: this.#tensors.get(mg.name)!,
      A: mg.U,
      B: mg.V,
      c: mg.c ?? ones(mg.k),
      s: mg.scale ?? 1,
    }));
    await this.#merger.runTensors(inputs, (i, W) => {
      releaseOnDevice(this.#tensors.get(live[i].name)!);
      this.#tensors.set(live[i].name, W);
    });
  }

  async dense(name: string): Promise<Float32Array> {
    this.#shape(name);
    return await this.#copier.download(this.#tensors.get(name)!);
  }

  async snapshot(): Promise<WeightSnapshot> {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, t] of this.#tensors) {
      const { m, n } = this.#shape(name);
      tensors.set(loraNames.weight(name), { shape: [m, n], data: await this.#copier.download(t) });
    }
    return { kind: "input", tensors };
  }

  async restore(snapshot: WeightSnapshot): Promise<void> {
    if (snapshot.kind !== "input") {
      throw new WeightStateError(`cannot restore a "${snapshot.kind}" snapshot on device weights`);
    }
    // Validate every tensor before replacing any.
    const data = [...this.#shapes].map(([name, s]) =>
      [name, snapshotTensor(snapshot, loraNames.weight(name), s.m * s.n)] as const
    );
    for (const [name, d] of data) {
      const { m, n } = this.#shape(name);
      const t = await this.#copier.upload(d, [m, n]);
      const old = this.#tensors.get(name);
      if (old) releaseOnDevice(old);
      this.#tensors.set(name, t);
    }
  }

  async release(): Promise<void> {
    for (const t of this.#tensors.values()) releaseOnDevice(t);
    this.#tensors.clear();
    await this.#merger.release();
    await this.#copier.release();
  }
}

interface Pending {
  k: number;
  /** m x k and n x k, row-major. */
  U: Float32Array;
  V: Float32Array;
}

export interface BakedWeightStateOptions extends WeightStateOptions {
  /**
   * Re-bake once a layer carries more than this many pending columns
   * (default 32). Higher: fewer session re-creations (each re-uploads the
   * weights); lower: less per-run host→device traffic ((m + n)·k floats per
   * layer) and pending compute.
   */
  maxPendingRank?: number;
}

export class BakedWeightState extends BaseWeightState implements GraphWeightState {
  readonly layout: FrozenWeightLayout;
  readonly #pending = new Map<string, Pending>();
  readonly #maxPending: number;
  #generation = 0;
  /** Bakes done so far (observability). */
  bakes = 0;

  constructor(layers: ReadonlyMap<string, FrozenLayer>, opts: BakedWeightStateOptions = {}) {
    super(layers, opts);
    this.#maxPending = opts.maxPendingRank ?? 32;
    for (const [name, l] of this.layers) this.#pending.set(name, emptyPending(l));
    this.layout = { kind: "baked", data: (name) => this.layer(name).data };
  }

  get generation(): number {
    return this.#generation;
  }

  pendingRank(name: string): number {
    return this.#pending.get(name)?.k ?? 0;
  }

  feeds(): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    for (const [name, l] of this.layers) {
      const p = this.#pending.get(name)!;
      // No pending merges: one zero column, not an empty one (WebGPU's MatMul crashes on an inner size of 0).
      const k = Math.max(p.k, 1);
      out[loraNames.pendingU(name)] = new ort.Tensor("float32", p.k ? p.U : new Float32Array(l.m), [l.m, k]);
      out[loraNames.pendingV(name)] = new ort.Tensor("float32", p.k ? p.V : new Float32Array(l.n), [l.n, k]);
    }
    return out;
  }

  async mergeLowRankMany(merges: readonly LowRankMerge[]): Promise<void> {
    for (const mg of merges) {
      const l = this.check(mg);
      if (mg.k === 0) continue;
      const p = this.#pending.get(mg.name)!;
      // Fold scale·diag(c) into U on the host: O(m k), and the graph keeps one product per layer.
      const s = mg.scale ?? 1;
      const U = new Float32Array(mg.U.length);
      for (let i = 0; i < l.m; i++) {
        for (let j = 0; j < mg.k; j++) U[i * mg.k + j] = s * (mg.c ? mg.c[j] : 1) * mg.U[i * mg.k + j];
      }
      this.#pending.set(mg.name, {
        k: p.k + mg.k,
        U: appendColumns(p.U, l.m, p.k, U, mg.k),
        V: appendColumns(p.V, l.n, p.k, mg.V, mg.k),
      });
    }
    if ([...this.#pending.values()].some((p) => p.k > this.#maxPending)) await this.rebake();
  }

  /** Folds every pending merge into the baked weights. */
  async rebake(): Promise<void> {
    const names = [...this.#pending].filter(([, p]) => p.k > 0).map(([name]) => name);
    if (names.length === 0) return;
    const inputs = names.map((name) => {
      const l = this.layer(name), p = this.#pending.get(name)!;
      return { m: l.m, n: l.n, k: p.k, W: l.data, A: p.U, B: p.V, c: ones(p.k), s: 1 };
    });
    await this.merger.run(inputs, (i, W) => {
      const l = this.layer(names[i]);
      l.data = W;
      this.#pending.set(names[i], emptyPending(l));
    });
    this.bakes++;
    this.#generation++;
  }

  async dense(name: string): Promise<Float32Array> {
    const l = this.layer(name), p = this.#pending.get(name)!;
    if (p.k === 0) return l.data.slice();
    const [W] = await this.merger.run([{ m: l.m, n: l.n, k: p.k, W: l.data, A: p.U, B: p.V, c: ones(p.k), s: 1 }]);
    return W;
  }

  snapshot(): Promise<WeightSnapshot> {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, l] of this.layers) {
      const p = this.#pending.get(name)!;
      tensors.set(loraNames.weight(name), { shape: [l.m, l.n], data: l.data.slice() });
      tensors.set(loraNames.pendingU(name), { shape: [l.m, p.k], data: p.U.slice() });
      tensors.set(loraNames.pendingV(name), { shape: [l.n, p.k], data: p.V.slice() });
    }
    return Promise.resolve({ kind: "baked", tensors });
  }

  restore(snapshot: WeightSnapshot): Promise<void> {
    return settle(() => {
      if (snapshot.kind !== "baked") {
        throw new WeightStateError(`cannot restore a "${snapshot.kind}" snapshot on baked weights`);
      }
      // Validate every tensor before touching any state.
      const next = [...this.layers].map(([name, l]) => {
        const k = snapshot.tensors.get(loraNames.pendingU(name))?.shape[1] ?? 0;
        return {
          name,
          W: snapshotTensor(snapshot, loraNames.weight(name), l.m * l.n).slice(),
          pending: {
            k,
            U: snapshotTensor(snapshot, loraNames.pendingU(name), l.m * k).slice(),
            V: snapshotTensor(snapshot, loraNames.pendingV(name), l.n * k).slice(),
          },
        };
      });
      for (const { name, W, pending } of next) {
        this.layer(name).data = W;
        this.#pending.set(name, pending);
      }
      this.#generation++;
    });
  }
}

/** Runs `fn` now; its throw becomes a rejection, as callers of async methods expect. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

function ones(k: number): Float32Array {
  return new Float32Array(k).fill(1);
}

function emptyPending(_l: FrozenLayer): Pending {
  return { k: 0, U: new Float32Array(0), V: new Float32Array(0) };
}

/** [X | Y] for row-major X (rows x kx) and Y (rows x ky). */
function appendColumns(X: Float32Array, rows: number, kx: number, Y: Float32Array, ky: number): Float32Array {
  const k = kx + ky, out = new Float32Array(rows * k);
  for (let i = 0; i < rows; i++) {
    out.set(X.subarray(i * kx, (i + 1) * kx), i * k);
    out.set(Y.subarray(i * ky, (i + 1) * ky), i * k + kx);
  }
  return out;
}

function snapshotTensor(s: WeightSnapshot, name: string, size: number): Float32Array {
  const t = s.tensors.get(name);
  if (!t || t.data.length !== size) {
    throw new WeightStateError(
      `snapshot tensor "${name}" is ${t ? `${t.data.length} values` : "missing"}, expected ${size}`,
    );
  }
  return t.data;
}
