/**
 * W_final − W_base of every adapted layer as low-rank terms (the registry's
 * LayerDelta): `MergeLog` wraps a model's WeightState and records every merge
 * the trainer performs (ScaLoRA: W += s·A·diag(1 − α∘β)·Bᵀ) before passing it
 * on; `deltas()` adds the live adapter term (s·A, B).
 *
 * The log rides in the weight snapshot (`mergelog.*` tensors), so training
 * checkpoints carry it and a resumed run yields bit-identical deltas. Each
 * merge is kept as the trainer asked for it (A, B, c, s), so the weights can
 * also be rebuilt from the base weights by replaying the merges through the
 * same weight state, bit for bit: while a layer's merges take fewer floats
 * than its dense weight, its snapshot holds the merges and not the weight
 * (given the base weights, `MergeLogOptions.base`). That keeps a training
 * checkpoint near the size of its adapters and optimizer state instead of
 * the model's.
 *
 * Memory stays bounded: once a layer's logged columns take more floats than
 * its dense delta ((m + n)·k > m·n), they are folded into a dense part D
 * (Merge kernel), exported as one exact term of rank min(m, n) (D·I or I·Dᵀ);
 * from then on its snapshot holds its dense weight again.
 */
import { MergeKernel } from "../../kernels/merge.ts";
import type { LayerDelta, LowRankTerm } from "./layer_delta.ts";
import type { Device } from "../runtime/session.ts";
import type {
  AdapterFactors,
  AdapterSpec,
  LowRankMerge,
  StepResult,
  TrainingModel,
  WeightSnapshot,
  WeightState,
} from "./types.ts";

const PREFIX = "mergelog.";
const names = {
  /** Format 1: merges folded (U = s·A·diag(c)); format 2 holds them as given (A, B, c, s). */
  U: (layer: string) => `${PREFIX}${layer}.U`,
  V: (layer: string) => `${PREFIX}${layer}.V`,
  D: (layer: string) => `${PREFIX}${layer}.D`,
  A: (layer: string) => `${PREFIX}${layer}.A`,
  B: (layer: string) => `${PREFIX}${layer}.B`,
  c: (layer: string) => `${PREFIX}${layer}.c`,
  /** Per merge: scale, width, event. */
  s: (layer: string) => `${PREFIX}${layer}.s`,
  k: (layer: string) => `${PREFIX}${layer}.k`,
  event: (layer: string) => `${PREFIX}${layer}.event`,
  /** [1]: 1 when the snapshot rebuilds this layer's weight from the base by replay (its weight left out). */
  replayed: (layer: string) => `${PREFIX}${layer}.replayed`,
  /** [1]: merge events so far. */
  events: `${PREFIX}events`,
};
/** The weight state's tensor holding a layer's weight (lora_graph.ts loraNames.weight). */
const weightName = (layer: string) => `weight.${layer}`;

export class MergeLogError extends Error {
  override name = "MergeLogError";
}

/** One merge as the trainer gave it (copies): W += s·A·diag(c)·Bᵀ. */
interface LoggedMerge {
  A: Float32Array;
  B: Float32Array;
  /** null: all ones. */
  c: Float32Array | null;
  s: number;
  k: number;
  /** Which mergeLowRankMany call (0, 1, …): replay repeats the calls in order. */
  event: number;
}

/** One layer's recorded merges; merges and D are never mutated once stored (views may share them). */
interface LayerLog {
  m: number;
  n: number;
  /** Folded merges (m x n, row-major), or null while none were folded. */
  dense: Float32Array | null;
  /** Merges since the last fold, in order. */
  merges: LoggedMerge[];
  /** Columns in `merges`. */
  k: number;
  /** `merges` are every merge since the base weights (nothing folded): replaying them rebuilds the weight. */
  replayable: boolean;
}

/** An immutable view of the log at one point (plus the adapter then), turned into deltas on demand. */
export interface MergeLogView {
  layers: ReadonlyMap<string, { m: number; n: number; dense: Float32Array | null; chunks: readonly LowRankTerm[] }>;
}

export interface MergeLogOptions {
  device?: Device;
  threads?: number;
  /** Profile the log's Merge kernel (its dense folds) into files with this prefix. */
  profilePrefix?: string;
  /**
   * A layer's base weight (m x n, before any merge). With it, snapshots of
   * an "input" weight state (CPU, WebGPU) leave out the weights that
   * replaying the logged merges rebuilds; without it they hold every weight.
   */
  base?: (layer: string) => Promise<Float32Array>;
}

export class MergeLog implements WeightState {
  readonly #layers = new Map<string, LayerLog>();
  readonly #kernel: MergeKernel;
  readonly #base: ((layer: string) => Promise<Float32Array>) | null;
  #events = 0;

  constructor(readonly inner: WeightState, adapters: readonly AdapterSpec[], opts: MergeLogOptions = {}) {
    for (const a of adapters) {
      this.#layers.set(a.name, { m: a.m, n: a.n, dense: null, merges: [], k: 0, replayable: true });
    }
    this.#kernel = new MergeKernel({
      device: opts.device ?? "cpu",
      threads: opts.threads,
      profilePrefix: opts.profilePrefix,
      cpuMemArena: false,
    });
    this.#base = opts.base ?? null;
  }

  mergeLowRank(name: string, U: Float32Array, V: Float32Array, k: number): Promise<void> {
    return this.mergeLowRankMany([{ name, U, V, k }]);
  }

  async mergeLowRankMany(merges: readonly LowRankMerge[]): Promise<void> {
    // Copy now: the trainer rescales A and B in place right after merging.
    const event = this.#events;
    const recorded = merges.filter((mg) => mg.k > 0).map((mg) => {
      this.#log(mg);
      const copy: LoggedMerge = {
        A: mg.U.slice(),
        B: mg.V.slice(),
        c: mg.c ? mg.c.slice() : null,
        s: mg.scale ?? 1,
        k: mg.k,
        event,
      };
      return { name: mg.name, copy };
    });
    await this.inner.mergeLowRankMany(merges);
    if (recorded.length) this.#events++;
    for (const { name, copy } of recorded) {
      const log = this.#layers.get(name)!;
      log.merges.push(copy);
      log.k += copy.k;
    }
    await this.#compact(recorded.map((r) => r.name));
  }

  dense(name: string): Promise<Float32Array> {
    return this.inner.dense(name);
  }

  /** Columns currently held as low-rank terms, and whether a dense part exists (observability, tests). */
  stats(name: string): { k: number; dense: boolean } {
    const log = this.#layers.get(name);
    if (!log) throw new MergeLogError(`no adapted layer "${name}"`);
    return { k: log.k, dense: log.dense !== null };
  }

  /**
   * The inner state's tensors and the log; with base weights and an "input"
   * state, a layer whose merges can be replayed is stored as its merges
   * only (its weight is left out, marked `replayed`).
   */
  async snapshot(): Promise<WeightSnapshot> {
    const snap = await this.inner.snapshot();
    const tensors = new Map(snap.tensors);
    const compact = this.#base !== null && snap.kind === "input";
    for (const [name, log] of this.#layers) {
      if (tensors.has(names.A(name))) throw new MergeLogError(`weight state already has a "${names.A(name)}" tensor`);
      const replayed = compact && log.replayable && tensors.has(weightName(name));
      if (replayed) tensors.delete(weightName(name));
      for (const [key, t] of Object.entries(logTensors(log)) as [LogKey, SnapshotTensor][]) {
        tensors.set(names[key](name), t);
      }
      tensors.set(names.replayed(name), { shape: [1], data: Float32Array.of(replayed ? 1 : 0) });
      if (log.dense) tensors.set(names.D(name), { shape: [log.m, log.n], data: log.dense.slice() });
    }
    tensors.set(names.events, { shape: [1], data: Float32Array.of(this.#events) });
    return { kind: snap.kind, tensors };
  }

  async restore(snapshot: WeightSnapshot): Promise<void> {
    const inner = new Map([...snapshot.tensors].filter(([name]) => !name.startsWith(PREFIX)));
    // Validate the log before touching any state.
    const next = new Map<string, LayerLog>();
    const replay: string[] = [];
    for (const [name, log] of this.#layers) {
      const read = readLog(snapshot, name, log.m, log.n);
      next.set(name, read.log);
      if (read.replayed) replay.push(name);
    }
    if (replay.length && !this.#base) {
      throw new MergeLogError(`snapshot leaves out weights to be rebuilt by replay, but no base weights were given`);
    }
    for (const name of replay) {
      const { m, n } = next.get(name)!;
      const W = await this.#base!(name);
      if (W.length !== m * n) throw new MergeLogError(`base weight of "${name}" does not match ${m}x${n}`);
      inner.set(weightName(name), { shape: [m, n], data: W });
    }
    await this.inner.restore({ kind: snapshot.kind, tensors: inner });
    // Replay: the same mergeLowRankMany calls, in order, on the restored base weights.
    const byEvent = new Map<number, LowRankMerge[]>();
    for (const name of replay) {
      for (const mg of next.get(name)!.merges) {
        if (!byEvent.has(mg.event)) byEvent.set(mg.event, []);
        byEvent.get(mg.event)!.push({ name, U: mg.A, V: mg.B, k: mg.k, ...(mg.c ? { c: mg.c } : {}), scale: mg.s });
      }
    }
    for (const event of [...byEvent.keys()].sort((a, b) => a - b)) {
      await this.inner.mergeLowRankMany(byEvent.get(event)!);
    }
    for (const [name, log] of next) this.#layers.set(name, log);
    const events = snapshot.tensors.get(names.events)?.data[0];
    this.#events = events ?? Math.max(0, ...[...next.values()].flatMap((l) => l.merges.map((m) => m.event + 1)));
  }

  /** The log as it stands; later merges do not change it. */
  view(): MergeLogView {
    return {
      layers: new Map([...this.#layers].map(([name, l]) => [name, {
        m: l.m,
        n: l.n,
        dense: l.dense,
        chunks: l.merges.map((mg) => foldTerm(l, mg)),
      }])),
    };
  }

  release(): Promise<void> {
    return this.#kernel.release();
  }

  #log(mg: LowRankMerge): LayerLog {
    const log = this.#layers.get(mg.name);
    if (!log) throw new MergeLogError(`merge into "${mg.name}", which is not an adapted layer`);
    if (mg.U.length !== log.m * mg.k || mg.V.length !== log.n * mg.k || (mg.c && mg.c.length !== mg.k)) {
      throw new MergeLogError(`merge into "${mg.name}": factors do not match ${log.m}x${log.n} at rank ${mg.k}`);
    }
    return log;
  }

  /** Folds the logs of `touched` layers that outgrew their dense size into D (one kernel run). */
  async #compact(touched: readonly string[]): Promise<void> {
    const due = [...new Set(touched)].filter((name) => {
      const l = this.#layers.get(name)!;
      return (l.m + l.n) * l.k > l.m * l.n;
    });
    if (due.length === 0) return;
    const inputs = due.map((name) => {
      const l = this.#layers.get(name)!;
      const { U, V } = concatTerms(l.merges.map((mg) => foldTerm(l, mg)), l.m, l.n);
      return { m: l.m, n: l.n, k: l.k, W: l.dense ?? new Float32Array(l.m * l.n), A: U, B: V, c: ones(l.k), s: 1 };
    });
    const folded = await this.#kernel.run(inputs);
    due.forEach((name, i) => {
      // A new buffer, not an in-place update: views taken earlier keep the old D.
      this.#layers.set(name, { ...this.#layers.get(name)!, dense: folded[i], merges: [], k: 0, replayable: false });
    });
  }
}

type LogKey = "A" | "B" | "c" | "s" | "k" | "event";
type SnapshotTensor = { shape: number[]; data: Float32Array };

/** A layer's merges as snapshot tensors (format 2). */
function logTensors(log: LayerLog): Record<LogKey, SnapshotTensor> {
  const K = log.k, E = log.merges.length;
  const cat = (rows: number, pick: (mg: LoggedMerge) => Float32Array) =>
    concatColumns(log.merges.map((mg) => ({ X: pick(mg), k: mg.k })), rows);
  const c = new Float32Array(K);
  let col = 0;
  for (const mg of log.merges) {
    c.set(mg.c ?? ones(mg.k), col);
    col += mg.k;
  }
  return {
    A: { shape: [log.m, K], data: cat(log.m, (mg) => mg.A) },
    B: { shape: [log.n, K], data: cat(log.n, (mg) => mg.B) },
    c: { shape: [K], data: c },
    s: { shape: [E], data: Float32Array.from(log.merges, (mg) => mg.s) },
    k: { shape: [E], data: Float32Array.from(log.merges, (mg) => mg.k) },
    event: { shape: [E], data: Float32Array.from(log.merges, (mg) => mg.event) },
  };
}

/** A layer's log from a snapshot (format 2, or format 1's folded terms, which cannot be replayed). */
function readLog(snapshot: WeightSnapshot, name: string, m: number, n: number): { log: LayerLog; replayed: boolean } {
  const get = (key: string) => snapshot.tensors.get(key);
  const D = get(names.D(name));
  if (D && D.data.length !== m * n) {
    throw new MergeLogError(`snapshot dense delta of "${name}" does not match ${m}x${n}`);
  }
  const dense = D ? D.data.slice() : null;
  const A = get(names.A(name));
  if (!A) {
    // Format 1: folded terms U = s·A·diag(c), V = B, one chunk; logged as A = U with c = 1, s = 1 (the same delta).
    const U = get(names.U(name)), V = get(names.V(name));
    if (!U || !V) throw new MergeLogError(`snapshot has no merge log for "${name}" (written without one?)`);
    const k = U.shape[1] ?? 0;
    if (U.data.length !== m * k || V.data.length !== n * k) {
      throw new MergeLogError(`snapshot merge log of "${name}" does not match ${m}x${n}`);
    }
    const merges = k > 0 ? [{ A: U.data.slice(), B: V.data.slice(), c: null, s: 1, k, event: 0 }] : [];
    return { log: { m, n, dense, merges, k, replayable: false }, replayed: false };
  }
  const B = get(names.B(name)), c = get(names.c(name)), s = get(names.s(name)), ks = get(names.k(name));
  const events = get(names.event(name)), replayed = get(names.replayed(name));
  if (!B || !c || !s || !ks || !events) throw new MergeLogError(`snapshot merge log of "${name}" is incomplete`);
  const K = A.shape[1] ?? 0, E = ks.data.length;
  const widths = Array.from(ks.data);
  if (
    A.data.length !== m * K || B.data.length !== n * K || c.data.length !== K || s.data.length !== E ||
    events.data.length !== E || widths.reduce((a, b) => a + b, 0) !== K
  ) {
    throw new MergeLogError(`snapshot merge log of "${name}" does not match ${m}x${n}`);
  }
  const merges: LoggedMerge[] = [];
  let col = 0;
  widths.forEach((k, i) => {
    const cs = c.data.slice(col, col + k);
    merges.push({
      A: takeColumns(A.data, m, K, col, k),
      B: takeColumns(B.data, n, K, col, k),
      c: cs.every((v) => v === 1) ? null : cs,
      s: s.data[i],
      k,
      event: events.data[i],
    });
    col += k;
  });
  const rebuild = (replayed?.data[0] ?? 0) === 1;
  if (rebuild && snapshot.tensors.has(weightName(name))) {
    throw new MergeLogError(`snapshot both holds and replays the weight of "${name}"`);
  }
  return { log: { m, n, dense, merges, k: K, replayable: dense === null }, replayed: rebuild };
}

/** s·A·diag(c) (a copy) and B: the merge as a low-rank term of the delta. */
function foldTerm(log: LayerLog, mg: LoggedMerge): LowRankTerm {
  const { s, k } = mg;
  const U = new Float32Array(log.m * k);
  for (let i = 0; i < log.m; i++) {
    for (let j = 0; j < k; j++) U[i * k + j] = s * (mg.c ? mg.c[j] : 1) * mg.A[i * k + j];
  }
  return { U, V: mg.B, k };
}

/** [X₁ | X₂ | …] for row-major Xᵢ (rows x kᵢ). */
function concatColumns(parts: readonly { X: Float32Array; k: number }[], rows: number): Float32Array {
  const k = parts.reduce((s, p) => s + p.k, 0);
  const out = new Float32Array(rows * k);
  let col = 0;
  for (const p of parts) {
    for (let i = 0; i < rows; i++) out.set(p.X.subarray(i * p.k, (i + 1) * p.k), i * k + col);
    col += p.k;
  }
  return out;
}

/** Columns [col, col + k) of a row-major rows x K matrix. */
function takeColumns(X: Float32Array, rows: number, K: number, col: number, k: number): Float32Array {
  const out = new Float32Array(rows * k);
  for (let i = 0; i < rows; i++) out.set(X.subarray(i * K + col, i * K + col + k), i * k);
  return out;
}

/** [U₁ | U₂ | …] and [V₁ | V₂ | …] (row-major m x Σk and n x Σk). */
export function concatTerms(terms: readonly LowRankTerm[], m: number, n: number): { U: Float32Array; V: Float32Array } {
  const k = terms.reduce((s, t) => s + t.k, 0);
  const cat = (rows: number, pick: (t: LowRankTerm) => Float32Array) => {
    const out = new Float32Array(rows * k);
    let col = 0;
    for (const t of terms) {
      const src = pick(t);
      for (let i = 0; i < rows; i++) out.set(src.subarray(i * t.k, (i + 1) * t.k), i * k + col);
      col += t.k;
    }
    return out;
  };
  return { U: cat(m, (t) => t.U), V: cat(n, (t) => t.V) };
}

/** A dense m x n matrix D as one exact term U Vᵀ: (D, Iₙ) when n ≤ m, else (Iₘ, Dᵀ); rank min(m, n). */
export function denseAsTerm(D: Float32Array, m: number, n: number): LowRankTerm {
  if (n <= m) return { U: D.slice(), V: identity(n), k: n };
  const Dt = new Float32Array(n * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) Dt[j * m + i] = D[i * n + j];
  return { U: identity(m), V: Dt, k: m };
}

/**
 * The deltas of a log view plus the adapters `factors` (scale from `adapters`):
 * per layer, [dense part] + [merges, concatenated] + [s·A, B]; empty parts are left out.
 */
export function deltasOf(
  view: MergeLogView,
  adapters: readonly AdapterSpec[],
  factors: ReadonlyMap<string, AdapterFactors>,
): LayerDelta[] {
  return adapters.map((a) => {
    const log = view.layers.get(a.name);
    if (!log) throw new MergeLogError(`no merge log for "${a.name}"`);
    const terms: LowRankTerm[] = [];
    if (log.dense) terms.push(denseAsTerm(log.dense, a.m, a.n));
    const k = log.chunks.reduce((s, t) => s + t.k, 0);
    if (k > 0) terms.push({ ...concatTerms(log.chunks, a.m, a.n), k });
    const f = factors.get(a.name);
    if (!f) throw new MergeLogError(`no adapter factors for "${a.name}"`);
    if (!allZero(f.A) && !allZero(f.B)) terms.push({ U: f.A.map((v) => a.scale * v), V: f.B.slice(), k: a.rank });
    return { name: a.name, m: a.m, n: a.n, terms };
  });
}

/** A training model whose weight state records its merges (everything else passes through). */
export class RecordingModel<Batch> implements TrainingModel<Batch> {
  readonly adapters: readonly AdapterSpec[];
  readonly weights: MergeLog;

  constructor(readonly inner: TrainingModel<Batch>, opts: MergeLogOptions = {}) {
    this.adapters = inner.adapters;
    const base = opts.base ?? inner.baseWeight?.bind(inner);
    this.weights = new MergeLog(inner.weights, inner.adapters, { ...opts, ...(base ? { base } : {}) });
  }

  forwardBackward(batch: Batch, factors: ReadonlyMap<string, AdapterFactors>): Promise<StepResult> {
    return this.inner.forwardBackward(batch, factors);
  }

  evaluate(batch: Batch, factors: ReadonlyMap<string, AdapterFactors>): Promise<Omit<StepResult, "grads">> {
    return this.inner.evaluate(batch, factors);
  }

  async release(): Promise<void> {
    await this.weights.release();
    await this.inner.release();
  }
}

function identity(n: number): Float32Array {
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  return out;
}

function ones(k: number): Float32Array {
  return new Float32Array(k).fill(1);
}

function allZero(x: Float32Array): boolean {
  for (let i = 0; i < x.length; i++) if (x[i] !== 0) return false;
  return true;
}
