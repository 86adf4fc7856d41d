/**
 * What a graph costs at given input sizes, read from the IR alone: the
 * floating-point work of its matrix products (MatMul, Gemm, com.microsoft
 * FusedMatMul; batched attention products included) and the bytes of the
 * values one part of the graph keeps for another (a training graph's
 * forward activations that its backward pass reads).
 *
 * Shapes come from the builder's inference with the symbolic dims bound
 * (`batch_size` = 4, …); dims the builder had to invent (a Reshape to -1 of a
 * symbolic size) are solved from element counts, which Reshape, Flatten,
 * Squeeze, Unsqueeze and Identity preserve.
 */
import { type Dim, elementBytes, type Graph, type Node, type Value } from "./ir.ts";
import { evalDim } from "./shape.ts";

export interface MatMulCost {
  node: string;
  op: string;
  /** Product of the batch dims (1 for a plain matrix product). */
  batch: number;
  /** Ranks of the two operands (a rank-2 right operand is one matrix shared by the batch, e.g. a weight). */
  ranks: [number, number];
  m: number;
  k: number;
  n: number;
  /** 2·batch·m·k·n. */
  flops: number;
}

export interface GraphCost {
  matmuls: MatMulCost[];
  /** Σ flops of `matmuls`. */
  flops: number;
  /** Matrix products whose size stayed unknown (their flops are not counted). */
  unresolved: string[];
}

/** Resolves every value's shape at the given dims; null where a dim stays unknown. */
export class ShapeResolver {
  readonly #dims: Map<string, number>;
  readonly #values: Map<string, Value>;

  constructor(readonly graph: Graph, dims: Record<string, number>) {
    this.#dims = new Map(Object.entries(dims));
    this.#values = new Map(graph.values);
    for (const v of [...graph.inputs, ...graph.outputs]) this.#values.set(v.name, v);
    for (const i of graph.initializers) {
      if (!this.#values.has(i.name)) this.#values.set(i.name, { name: i.name, dtype: i.dtype, shape: i.shape });
    }
    this.#solve();
  }

  value(name: string): Value | undefined {
    return this.#values.get(name);
  }

  dim(d: Dim): number | null {
    return evalDim(d, (s) => this.#dims.get(s));
  }

  shape(name: string): number[] | null {
    const s = this.#values.get(name)?.shape;
    if (!s) return null;
    const out: number[] = [];
    for (const d of s) {
      const v = this.dim(d);
      if (v === null) return null;
      out.push(v);
    }
    return out;
  }

  bytes(name: string): number | null {
    const v = this.#values.get(name), s = this.shape(name);
    return v && s ? s.reduce((a, b) => a * b, 1) * elementBytes[v.dtype] : null;
  }

  /** Binds invented dims from element counts across shape-only ops, until nothing more follows. */
  #solve(): void {
    const sizePreserving = new Set(["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"]);
    const pairs = this.graph.nodes.filter((n) => sizePreserving.has(n.op) && n.domain === "")
      .map((n) => [n.inputs[0], n.outputs[0]] as const);
    for (let changed = true; changed;) {
      changed = false;
      for (const [a, b] of pairs) {
        const sa = this.#values.get(a)?.shape, sb = this.#values.get(b)?.shape;
        if (!sa || !sb) continue;
        changed = this.#unify(sa, sb) || this.#unify(sb, sa) || changed;
      }
    }
  }

  /** If `known` is fully bound and `other` has exactly one unbound symbol, binds it. */
  #unify(known: readonly Dim[], other: readonly Dim[]): boolean {
    const total = productOf(known.map((d) => this.dim(d)));
    if (total === null) return false;
    const unknown = other.filter((d) => this.dim(d) === null);
    if (unknown.length !== 1 || typeof unknown[0] !== "string" || /[*+()]/.test(unknown[0])) return false;
    const rest = productOf(other.filter((d) => d !== unknown[0]).map((d) => this.dim(d)));
    if (rest === null || rest === 0 || total % rest !== 0) return false;
    this.#dims.set(unknown[0], total / rest);
    return true;
  }
}

function productOf(xs: (number | null)[]): number | null {
  let p = 1;
  for (const x of xs) {
    if (x === null) return null;
    p *= x;
  }
  return p;
}

function intAttr(node: Node, name: string): number {
  const a = node.attributes[name];
  return a && a.kind === "int" ? a.value : 0;
}

/** batch, m, k, n of a matrix product node, or null when a shape is unknown. */
function productDims(node: Node, r: ShapeResolver): Omit<MatMulCost, "node" | "op" | "flops"> | null {
  const a = r.shape(node.inputs[0]), b = r.shape(node.inputs[1]), y = r.shape(node.outputs[0]);
  if (!a || !b || !y) return null;
  const transA = intAttr(node, "transA"), transB = intAttr(node, "transB");
  // 1-D operands as matrices (MatMul's numpy rules): [K] is [1, K] on the left, [K, 1] on the right.
  const a2 = a.length === 1 ? [1, a[0]] : a;
  const b2 = b.length === 1 ? [b[0], 1] : b;
  const m = transA ? a2.at(-1)! : a2.at(-2)!;
  const k = transA ? a2.at(-2)! : a2.at(-1)!;
  const n = transB ? b2.at(-2)! : b2.at(-1)!;
  const batch = y.reduce((p, d) => p * d, 1) / Math.max(1, (a.length === 1 ? 1 : m) * (b.length === 1 ? 1 : n));
  return { batch, m, k, n, ranks: [a.length, b.length] };
}

const PRODUCTS = new Set(["MatMul", "Gemm", "FusedMatMul"]);

/** The matrix products of `graph` at `dims` (symbol → size), each with its flops. */
export function graphCost(graph: Graph, dims: Record<string, number>): GraphCost {
  const r = new ShapeResolver(graph, dims);
  const matmuls: MatMulCost[] = [];
  const unresolved: string[] = [];
  for (const node of graph.nodes) {
    if (!PRODUCTS.has(node.op)) continue;
    const d = productDims(node, r);
    if (!d) {
      unresolved.push(node.name);
      continue;
    }
    matmuls.push({ node: node.name, op: node.op, ...d, flops: 2 * d.batch * d.m * d.k * d.n });
  }
  return { matmuls, flops: matmuls.reduce((s, c) => s + c.flops, 0), unresolved };
}

/**
 * Bytes of the values produced by nodes `isFirst` accepts and read by nodes
 * it does not (a training graph's saved activations: forward values the
 * backward pass reads). Graph inputs and initializers are not counted, nor
 * views of them (a Transpose, Reshape, … of a weight: onnxruntime folds the
 * transpose into the product that reads it, or aliases the buffer).
 */
export function carriedBytes(
  graph: Graph,
  dims: Record<string, number>,
  isFirst: (node: Node) => boolean,
): { bytes: number; values: number; unresolved: string[] } {
  const r = new ShapeResolver(graph, dims);
  const producedFirst = new Set<string>();
  const sources = new Set([...graph.inputs.map((v) => v.name), ...graph.initializers.map((i) => i.name)]);
  const VIEWS = new Set(["Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"]);
  for (const n of graph.nodes) {
    if (VIEWS.has(n.op) && sources.has(n.inputs[0])) {
      sources.add(n.outputs[0]);
      continue;
    }
    if (isFirst(n)) { for (const o of n.outputs) producedFirst.add(o); }
  }
  const carried = new Set<string>();
  for (const n of graph.nodes) {
    if (isFirst(n)) continue;
    for (const i of n.inputs) if (producedFirst.has(i)) carried.add(i);
  }
  let bytes = 0;
  const unresolved: string[] = [];
  for (const name of carried) {
    const b = r.bytes(name);
    if (b === null) unresolved.push(name);
    else bytes += b;
  }
  return { bytes, values: carried.size, unresolved };
}

/**
 * The most bytes alive at once when the nodes run in the graph's order (the
 * order they were built in: for a training graph, the forward pass and then
 * the backward pass as autodiff emitted it, which onnxruntime follows where
 * the data dependencies say so). A value lives from its producer to its last
 * reader; graph outputs to the end. Views (Reshape, Squeeze, Unsqueeze,
 * Identity, Flatten) share their input's buffer, and inputs, initializers
 * and views of them are not counted.
 */
export function peakLiveBytes(graph: Graph, dims: Record<string, number>): { bytes: number; at: number } {
  const r = new ShapeResolver(graph, dims);
  const VIEWS = new Set(["Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"]);
  // Every value's buffer: itself, or the buffer it is a view of.
  const buffer = new Map<string, string>();
  const sources = new Set([...graph.inputs.map((v) => v.name), ...graph.initializers.map((i) => i.name)]);
  for (const n of graph.nodes) {
    const viewOf = VIEWS.has(n.op) ? buffer.get(n.inputs[0]) ?? n.inputs[0] : null;
    for (const o of n.outputs) buffer.set(o, viewOf ?? o);
    if ((VIEWS.has(n.op) || n.op === "Transpose") && sources.has(n.inputs[0])) sources.add(n.outputs[0]);
  }
  const born = new Map<string, number>(), dies = new Map<string, number>();
  graph.nodes.forEach((n, i) => {
    for (const o of n.outputs) if (buffer.get(o) === o && !sources.has(o)) born.set(o, i);
    for (const x of n.inputs) {
      const b = buffer.get(x);
      if (b !== undefined) dies.set(b, Math.max(dies.get(b) ?? i, i));
    }
  });
  const end = graph.nodes.length;
  for (const o of graph.outputs) {
    const b = buffer.get(o.name);
    if (b !== undefined) dies.set(b, end);
  }
  const delta = new Float64Array(end + 2);
  for (const [name, i] of born) {
    const bytes = r.bytes(name) ?? 0;
    delta[i] += bytes;
    delta[(dies.get(name) ?? i) + 1] -= bytes;
  }
  let live = 0, peak = 0, at = 0;
  for (let i = 0; i <= end; i++) {
    live += delta[i];
    if (live > peak) [peak, at] = [live, i];
  }
  return { bytes: peak, at };
}
