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
 * its dense delta ((m + n)·k > m·n), they are folded into a dense part D,
 * exported as one exact term of rank min(m, n) (D·I or I·Dᵀ). With the base
 * weights, D is the held weight's own difference from the base,
 * D = fl(W − W₀), and the few entries where fl(W₀ + D) is not W bit for bit
 * are kept beside it (fixups): the snapshot then holds D, the fixups and the
 * merges since the fold instead of the weight, and restore rebuilds W from
 * W₀ + D and replays the rest. Such a layer folds again once its new merges
 * take a quarter of its dense size, so its snapshot stays within ~1.25 dense
 * matrices. Without the base weights the merges are summed into D (Merge
 * kernel) and the snapshot holds the dense weight as well.
 */
import { MergeKernel } from "../../kernels/merge.ts";
import type { LayerDelta, LowRankTerm } from "./layer_delta.ts";
import { loraNames } from "./lora_graph.ts";
import type { Device } from "../runtime/session.ts";
import type {
  AdapterFactors,
  AdapterSpec,
  EvalResult,
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
  /**
   * [1]: the snapshot leaves this layer's weight out and rebuilds it: 1 from the base weight, 2 from the base
   * weight + D and its fixups; then replays the merges. 0: the weight is in the snapshot.
   */
  replayed: (layer: string) => `${PREFIX}${layer}.replayed`,
  /** [1]: 2 when D is fl(W − W₀) at the last fold (with fixups), so W can be rebuilt from it; absent or 0: a sum of merges. */
  origin: (layer: string) => `${PREFIX}${layer}.origin`,
  /** [2, F]: fixup positions as (⌊i / 65536⌋, i mod 65536), exact in float32; [F]: the weight's values there. */
  fixIndex: (layer: string) => `${PREFIX}${layer}.fix_index`,
  fixValue: (layer: string) => `${PREFIX}${layer}.fix_value`,
  /** [1]: merge events so far. */
  events: `${PREFIX}events`,
};
/** The weight state's tensor holding a layer's weight. */
const weightName = loraNames.weight;

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

/** The weight at a fold where fl(W₀ + D) differs from it: positions and exact values. */
interface Fixups {
  index: Uint32Array;
  value: Float32Array;
}

/**
 * Where replaying a layer's `merges` starts: the base weight (nothing folded), the base weight + D (+ fixups:
 * D came from the weight itself), or nowhere (D is a sum of merges: the weight must be stored).
 */
type ReplayStart = "base" | "dense" | null;

/** One layer's recorded merges; merges and D are never mutated once stored (views may share them). */
interface LayerLog {
  m: number;
  n: number;
  /** W − W_base up to the last fold (m x n, row-major), or null while none were folded. */
  dense: Float32Array | null;
  /** With a D taken from the weight: where fl(W₀ + D) is not the weight at that fold. */
  fixups: Fixups | null;
  /** Merges since the last fold, in order. */
  merges: LoggedMerge[];
  /** Columns in `merges`. */
  k: number;
  start: ReplayStart;
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
      this.#layers.set(a.name, { m: a.m, n: a.n, dense: null, fixups: null, merges: [], k: 0, start: "base" });
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
      const replayed = compact && log.start !== null && tensors.has(weightName(name));
      if (replayed) tensors.delete(weightName(name));
      for (const [key, t] of Object.entries(logTensors(log)) as [LogKey, SnapshotTensor][]) {
        tensors.set(names[key](name), t);
      }
      const code = !replayed ? 0 : log.start === "base" ? 1 : 2;
      tensors.set(names.replayed(name), { shape: [1], data: Float32Array.of(code) });
      if (log.dense) tensors.set(names.D(name), { shape: [log.m, log.n], data: log.dense.slice() });
      if (log.start === "dense") {
        tensors.set(names.origin(name), { shape: [1], data: Float32Array.of(2) });
        const f = log.fixups!, count = f.value.length;
        if (count > 0) {
          const index = new Float32Array(2 * count);
          f.index.forEach((i, j) => {
            index[j] = Math.floor(i / 65536);
            index[count + j] = i % 65536;
          });
          tensors.set(names.fixIndex(name), { shape: [2, count], data: index });
          tensors.set(names.fixValue(name), { shape: [count], data: f.value.slice() });
        }
      }
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
      const log = next.get(name)!;
      const W0 = await this.#base!(name);
      if (W0.length !== log.m * log.n) {
        throw new MergeLogError(`base weight of "${name}" does not match ${log.m}x${log.n}`);
      }
      const W = log.start === "dense" ? weightAtFold(W0, log.dense!, log.fixups!) : W0;
      inner.set(weightName(name), { shape: [log.m, log.n], data: W });
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
      layers: new Map([...this.#layers].map(([name, l]) => {
        // The merges themselves never change, only the list grows: a copy of the list freezes the view, and
        // the terms are folded when read (deltasOf), not at every checkpoint.
        const merges = l.merges.slice();
        return [name, {
          m: l.m,
          n: l.n,
          dense: l.dense,
          get chunks() {
            return merges.map((mg) => foldTerm(l, mg));
          },
        }];
      })),
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

  /**
   * Folds the logs of `touched` layers that outgrew their dense size (a quarter of it once D comes from the
   * weight): with the base weights, D = the weight's difference from the base; else the merges summed into D
   * (one kernel run).
   */
  async #compact(touched: readonly string[]): Promise<void> {
    const due = [...new Set(touched)].filter((name) => {
      const l = this.#layers.get(name)!;
      return foldDue(l.m, l.n, l.k, l.start === "dense");
    });
    if (due.length === 0) return;
    if (this.#base) {
      for (const name of due) {
        const l = this.#layers.get(name)!;
        const { dense, fixups } = foldWeight(await this.inner.dense(name), await this.#base(name));
        this.#layers.set(name, { ...l, dense, fixups, merges: [], k: 0, start: "dense" });
      }
      return;
    }
    const inputs = due.map((name) => {
      const l = this.#layers.get(name)!;
      const { U, V } = concatTerms(l.merges.map((mg) => foldTerm(l, mg)), l.m, l.n);
      return { m: l.m, n: l.n, k: l.k, W: l.dense ?? new Float32Array(l.m * l.n), A: U, B: V, c: ones(l.k), s: 1 };
    });
    const folded = await this.#kernel.run(inputs);
    due.forEach((name, i) => {
      // A new buffer, not an in-place update: views taken earlier keep the old D.
      this.#layers.set(name, { ...this.#layers.get(name)!, dense: folded[i], merges: [], k: 0, start: null });
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
    return { log: { m, n, dense, fixups: null, merges, k, start: null }, replayed: false };
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
  const fromWeight = (get(names.origin(name))?.data[0] ?? 0) === 2;
  if (fromWeight && !dense) throw new MergeLogError(`snapshot merge log of "${name}" has no D to rebuild from`);
  const start: ReplayStart = fromWeight ? "dense" : dense === null ? "base" : null;
  const fixups = fromWeight ? readFixups(get(names.fixIndex(name)), get(names.fixValue(name)), m * n, name) : null;
  const code = replayed?.data[0] ?? 0;
  if (code !== 0 && code !== (start === "base" ? 1 : start === "dense" ? 2 : -1)) {
    throw new MergeLogError(`snapshot merge log of "${name}": cannot rebuild its weight (replayed = ${code})`);
  }
  if (code !== 0 && snapshot.tensors.has(weightName(name))) {
    throw new MergeLogError(`snapshot both holds and replays the weight of "${name}"`);
  }
  return { log: { m, n, dense, fixups, merges, k: K, start }, replayed: code !== 0 };
}

function readFixups(
  index: SnapshotTensor | undefined,
  value: SnapshotTensor | undefined,
  size: number,
  name: string,
): Fixups {
  if (!index && !value) return { index: new Uint32Array(0), value: new Float32Array(0) };
  const count = value?.data.length ?? -1;
  if (!index || !value || index.data.length !== 2 * count) {
    throw new MergeLogError(`snapshot fixups of "${name}" are incomplete`);
  }
  const at = new Uint32Array(count);
  for (let j = 0; j < count; j++) {
    const i = index.data[j] * 65536 + index.data[count + j];
    if (!(Number.isInteger(i) && i >= 0 && i < size)) {
      throw new MergeLogError(`snapshot fixups of "${name}": bad index`);
    }
    at[j] = i;
  }
  return { index: at, value: value.data.slice() };
}

/** After a fold from the weight, new merges fold again once they take this share of the dense size. */
const REFOLD_SHARE = 0.25;

/**
 * Whether a layer's log of k columns (m x n weight) is folded: once it takes more floats than the dense
 * weight, or a quarter of it after a fold that took D from the weight (`refold`).
 */
export function foldDue(m: number, n: number, k: number, refold: boolean): boolean {
  return (m + n) * k > (refold ? REFOLD_SHARE : 1) * m * n;
}

/** fl(W₀ + D) with the fixups applied: the weight at the fold, bit for bit. */
function weightAtFold(W0: Float32Array, D: Float32Array, fixups: Fixups): Float32Array {
  const W = new Float32Array(W0.length);
  for (let i = 0; i < W.length; i++) W[i] = W0[i] + D[i];
  fixups.index.forEach((i, j) => W[i] = fixups.value[j]);
  return W;
}

/** D = fl(W − W₀) and the entries where fl(W₀ + D) is not W (compared bit for bit, −0 included). */
function foldWeight(W: Float32Array, W0: Float32Array): { dense: Float32Array; fixups: Fixups } {
  const D = new Float32Array(W.length);
  for (let i = 0; i < D.length; i++) D[i] = W[i] - W0[i];
  const rebuilt = weightAtFold(W0, D, { index: new Uint32Array(0), value: new Float32Array(0) });
  const at: number[] = [];
  for (let i = 0; i < W.length; i++) if (!Object.is(rebuilt[i], W[i])) at.push(i);
  return { dense: D, fixups: { index: Uint32Array.from(at), value: Float32Array.from(at, (i) => W[i]) } };
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
  return {
    U: concatColumns(terms.map((t) => ({ X: t.U, k: t.k })), m),
    V: concatColumns(terms.map((t) => ({ X: t.V, k: t.k })), n),
  };
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

  evaluate(batch: Batch, factors: ReadonlyMap<string, AdapterFactors>): Promise<EvalResult> {
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
