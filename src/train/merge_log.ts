/**
 * W_final − W_base of every adapted layer as low-rank terms (the registry's
 * LayerDelta): `MergeLog` wraps a model's WeightState and records every merge
 * the trainer performs (ScaLoRA: U = s·A·diag(1 − α∘β), V = B) before passing
 * it on; `deltas()` adds the live adapter term (s·A, B).
 *
 * The log rides in the weight snapshot (`mergelog.*` tensors), so training
 * checkpoints carry it and a resumed run yields bit-identical deltas.
 *
 * Memory stays bounded: once a layer's logged columns take more floats than
 * its dense delta ((m + n)·k > m·n), they are folded into a dense part D
 * (Merge kernel), exported as one exact term of rank min(m, n) (D·I or I·Dᵀ).
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
  U: (layer: string) => `${PREFIX}${layer}.U`,
  V: (layer: string) => `${PREFIX}${layer}.V`,
  D: (layer: string) => `${PREFIX}${layer}.D`,
};

export class MergeLogError extends Error {
  override name = "MergeLogError";
}

/** One layer's recorded merges; chunks and D are never mutated once stored (views may share them). */
interface LayerLog {
  m: number;
  n: number;
  /** Folded merges (m x n, row-major), or null while none were folded. */
  dense: Float32Array | null;
  /** Merges since the last fold, in order. */
  chunks: LowRankTerm[];
  /** Columns in `chunks`. */
  k: number;
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
}

export class MergeLog implements WeightState {
  readonly #layers = new Map<string, LayerLog>();
  readonly #kernel: MergeKernel;

  constructor(readonly inner: WeightState, adapters: readonly AdapterSpec[], opts: MergeLogOptions = {}) {
    for (const a of adapters) this.#layers.set(a.name, { m: a.m, n: a.n, dense: null, chunks: [], k: 0 });
    this.#kernel = new MergeKernel({
      device: opts.device ?? "cpu",
      threads: opts.threads,
      profilePrefix: opts.profilePrefix,
      cpuMemArena: false,
    });
  }

  mergeLowRank(name: string, U: Float32Array, V: Float32Array, k: number): Promise<void> {
    return this.mergeLowRankMany([{ name, U, V, k }]);
  }

  async mergeLowRankMany(merges: readonly LowRankMerge[]): Promise<void> {
    // Copy now: the trainer rescales A and B in place right after merging.
    const recorded = merges.filter((mg) => mg.k > 0).map((mg) => ({
      name: mg.name,
      term: foldTerm(this.#log(mg), mg),
    }));
    await this.inner.mergeLowRankMany(merges);
    for (const { name, term } of recorded) {
      const log = this.#layers.get(name)!;
      log.chunks.push(term);
      log.k += term.k;
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

  async snapshot(): Promise<WeightSnapshot> {
    const snap = await this.inner.snapshot();
    const tensors = new Map(snap.tensors);
    for (const [name, log] of this.#layers) {
      if (tensors.has(names.U(name))) throw new MergeLogError(`weight state already has a "${names.U(name)}" tensor`);
      const { U, V } = concatTerms(log.chunks, log.m, log.n);
      tensors.set(names.U(name), { shape: [log.m, log.k], data: U });
      tensors.set(names.V(name), { shape: [log.n, log.k], data: V });
      if (log.dense) tensors.set(names.D(name), { shape: [log.m, log.n], data: log.dense.slice() });
    }
    return { kind: snap.kind, tensors };
  }

  async restore(snapshot: WeightSnapshot): Promise<void> {
    const inner = new Map([...snapshot.tensors].filter(([name]) => !name.startsWith(PREFIX)));
    // Validate the log before touching any state.
    const next = new Map<string, LayerLog>();
    for (const [name, log] of this.#layers) {
      const U = snapshot.tensors.get(names.U(name)), V = snapshot.tensors.get(names.V(name));
      if (!U || !V) throw new MergeLogError(`snapshot has no merge log for "${name}" (written without one?)`);
      const k = U.shape[1] ?? 0;
      if (U.data.length !== log.m * k || V.data.length !== log.n * k) {
        throw new MergeLogError(`snapshot merge log of "${name}" does not match ${log.m}x${log.n}`);
      }
      const D = snapshot.tensors.get(names.D(name));
      if (D && D.data.length !== log.m * log.n) {
        throw new MergeLogError(`snapshot dense delta of "${name}" does not match ${log.m}x${log.n}`);
      }
      next.set(name, {
        m: log.m,
        n: log.n,
        dense: D ? D.data.slice() : null,
        chunks: k > 0 ? [{ U: U.data.slice(), V: V.data.slice(), k }] : [],
        k,
      });
    }
    await this.inner.restore({ kind: snapshot.kind, tensors: inner });
    for (const [name, log] of next) this.#layers.set(name, log);
  }

  /** The log as it stands; later merges do not change it. */
  view(): MergeLogView {
    return {
      layers: new Map([...this.#layers].map(([name, l]) => [name, { ...l, chunks: [...l.chunks] }])),
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
      const l = this.#layers.get(name)!, { U, V } = concatTerms(l.chunks, l.m, l.n);
      return { m: l.m, n: l.n, k: l.k, W: l.dense ?? new Float32Array(l.m * l.n), A: U, B: V, c: ones(l.k), s: 1 };
    });
    const folded = await this.#kernel.run(inputs);
    due.forEach((name, i) => {
      // A new buffer, not an in-place update: views taken earlier keep the old D.
      this.#layers.set(name, { ...this.#layers.get(name)!, dense: folded[i], chunks: [], k: 0 });
    });
  }
}

/** U = scale·U·diag(c) (a copy), V copied. */
function foldTerm(log: LayerLog, mg: LowRankMerge): LowRankTerm {
  const s = mg.scale ?? 1, k = mg.k;
  const U = new Float32Array(log.m * k);
  for (let i = 0; i < log.m; i++) {
    for (let j = 0; j < k; j++) U[i * k + j] = s * (mg.c ? mg.c[j] : 1) * mg.U[i * k + j];
  }
  return { U, V: mg.V.slice(), k };
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
    this.weights = new MergeLog(inner.weights, inner.adapters, opts);
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
