/**
 * Reverse-mode automatic differentiation over a GraphBuilder's recorded nodes.
 * The backward pass is emitted into the same builder as ordinary ONNX ops
 * (see grad_rules.ts), so one session runs forward and backward together.
 */
import type { GraphBuilder } from "./builder.ts";
import { gradRules } from "./grad_rules.ts";
import {
  type GradContext,
  type GradRule,
  negativeZeroAfter,
  onesLike,
  tiedAfter,
  withShapeOf,
  zerosLike,
} from "./grad_rules.ts";
import { GraphError, isFloat, type Node, type Value } from "./ir.ts";
import { sameShape } from "./shape.ts";

export interface GradientResult {
  /** `wrt` value name -> its gradient (same dtype and shape). */
  grads: Map<string, Value>;
}

export interface BackwardOptions {
  /** dL/dloss, shaped like `loss` (default: ones, i.e. the gradient of sum(loss)). */
  seed?: Value;
  /** Name scope of the emitted nodes (default "grad"). */
  scope?: string;
}

/**
 * Emits the gradient of `loss` with respect to each of `wrt` (graph inputs,
 * initializers or intermediate values, all floating point). Only nodes on a
 * path from some `wrt` to `loss` are differentiated; integer and bool values
 * (shapes, indices, masks) carry no gradient, so shape-only subgraphs are
 * skipped. A `wrt` value the loss does not depend on gets zeros.
 */
export function addBackward(
  g: GraphBuilder,
  loss: Value,
  wrt: Value[],
  opts: BackwardOptions = {},
): GradientResult {
  for (const w of wrt) {
    if (!isFloat(w.dtype)) throw new GraphError(`cannot differentiate with respect to ${w.dtype} value "${w.name}"`);
  }
  if (!isFloat(loss.dtype)) throw new GraphError(`loss "${loss.name}" is ${loss.dtype}, not floating point`);
  if (opts.seed && (opts.seed.dtype !== loss.dtype)) {
    throw new GraphError(`seed is ${opts.seed.dtype}, loss is ${loss.dtype}`);
  }
  const forward = g.nodes.slice(); // the backward nodes appended below are not walked

  // Values that depend on some wrt through float values.
  const active = new Set(wrt.map((w) => w.name));
  for (const node of forward) {
    if (!node.inputs.some((n) => active.has(n))) continue;
    for (const out of node.outputs) if (isFloat(valueOf(g, out).dtype)) active.add(out);
  }
  // ...and of those, the ones the loss depends on.
  const useful = new Set<string>(active.has(loss.name) ? [loss.name] : []);
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i];
    if (!node.outputs.some((o) => useful.has(o))) continue;
    for (const n of node.inputs) if (active.has(n)) useful.add(n);
  }

  return g.scoped(opts.scope ?? "grad", () => {
    // Gradient contributions per value, summed when the value's producer is reached.
    const parts = new Map<string, Value[]>();
    const total = (name: string): Value | null => {
      const list = parts.get(name);
      if (!list?.length) return null;
      const sum = list.length === 1 ? list[0] : list.length === 2 ? g.add(list[0], list[1]) : g.op1("Sum", list);
      parts.set(name, [sum]);
      return sum;
    };
    if (useful.has(loss.name)) {
      parts.set(loss.name, [opts.seed ?? (loss.shape?.length === 0 ? g.scalar(1, loss.dtype) : onesLike(g, loss))]);
    }

    const regions = new RegionCopies(g, forward);
    const ends = new TerminalValues(forward, wrt);
    for (let i = forward.length - 1; i >= 0; i--) {
      const node = forward[i];
      const needs = node.inputs.map((n) => n !== "" && useful.has(n));
      if (!needs.some(Boolean)) continue;
      const dOut = node.outputs.map((o) => useful.has(o) ? total(o) : null);
      if (dOut.every((d) => d === null)) continue;
      const rule = node.domain === "" ? gradRules[node.op] : undefined;
      if (!rule) {
        throw new GraphError(
          `no gradient rule for ${node.domain ? `${node.domain}.` : ""}${node.op} (node "${node.name}")`,
        );
      }
      // In a recomputed region the rule reads the region's copy, made now (see GraphBuilder.recomputed).
      const copy = regions.copyFor(i, dOut.find((d) => d !== null)!);
      const inputs = node.inputs.map((n) => n === "" ? null : copy(n));
      const outputs = node.outputs.map(copy);
      const terminal = node.inputs.map((n, j) => needs[j] && ends.has(n));
      let grads: (Value | null | undefined)[];
      if (terminal.some(Boolean) && needs.some((n, j) => n && !terminal[j])) {
        grads = orderedGrads(g, rule, { g, node, inputs, outputs, dOut, needs }, terminal);
      } else grads = rule({ g, node, inputs, outputs, dOut, needs });
      node.inputs.forEach((name, j) => {
        const d = grads[j];
        if (!needs[j] || !d) return;
        const x = inputs[j]!;
        if (d.dtype !== x.dtype) {
          throw new GraphError(`${node.op} rule gave a ${d.dtype} gradient for ${x.dtype} "${name}"`);
        }
        // Re-declare the input's shape where inference lost track of it (fresh symbols).
        const part = sameShape(d.shape, x.shape) ? d : withShapeOf(g, d, x);
        parts.set(name, [...(parts.get(name) ?? []), part]);
      });
    }

    const grads = new Map<string, Value>();
    for (const w of wrt) grads.set(w.name, total(w.name) ?? zerosLike(g, w));
    return { grads };
  });
}

/**
 * Values whose gradient flows to `wrt` values only (a `wrt` value, or a
 * Transpose, Cast, Reshape or Identity of one): its gradient ends in a graph
 * output, not in more backward work.
 */
class TerminalValues {
  readonly #set: Set<string>;

  constructor(forward: readonly Node[], wrt: readonly Value[]) {
    this.#set = new Set(wrt.map((w) => w.name));
    const passThrough = new Set(["Transpose", "Cast", "Reshape", "Identity"]);
    for (const node of forward) {
      if (node.domain === "" && passThrough.has(node.op) && this.#set.has(node.inputs[0])) {
        this.#set.add(node.outputs[0]);
      }
    }
  }

  has(name: string): boolean {
    return this.#set.has(name);
  }
}

/**
 * A node with both terminal inputs (an adapter factor) and others: the other
 * inputs' gradients are made to wait for the terminal ones. onnxruntime
 * orders nodes by a depth-first walk from the graph outputs, so a product
 * that only feeds an output (dA = (x·B)ᵀ·dY of every adapter) would run at
 * the very end of the step and keep what it reads (dY, per adapter and
 * layer) alive through the whole backward pass. Tied with a −0 (bit for bit
 * the same values) on the smaller of the incoming gradient and the outgoing
 * ones, so the tie costs a pass over an adapter-rank-wide tensor, not a
 * layer-wide one.
 */
function orderedGrads(
  g: GraphBuilder,
  rule: GradRule,
  ctx: GradContext,
  terminal: boolean[],
): (Value | null | undefined)[] {
  const ends = rule({ ...ctx, needs: ctx.needs.map((n, j) => n && terminal[j]) });
  const after = ends.find((d, j) => terminal[j] && d);
  if (!after) return rule(ctx);
  const others = ctx.needs.map((n, j) => n && !terminal[j]);
  // Tie the incoming gradient when it is narrower than what the other inputs get back.
  const width = (v: Value | null | undefined) => {
    const d = v?.shape?.at(-1);
    return typeof d === "number" ? d : Infinity;
  };
  const dOut = ctx.dOut.find((d) => d !== null);
  const widest = Math.max(...ctx.inputs.filter((_, j) => others[j]).map(width));
  let rest: (Value | null | undefined)[];
  if (width(dOut) <= widest) {
    const tied = ctx.dOut.map((d) => d && tiedAfter(g, d, after));
    rest = rule({ ...ctx, dOut: tied, needs: others });
  } else {
    rest = rule({ ...ctx, needs: others }).map((d, j) => others[j] && d ? tiedAfter(g, d, after) : d);
  }
  return ctx.inputs.map((_, j) => terminal[j] ? ends[j] : rest[j]);
}

/**
 * The backward pass's copies of recomputed regions. The first time the
 * backward walk reaches a node of a region, the values its rule reads are
 * recomputed: their producers in the region are copied, on demand, so only
 * what some gradient rule reads is computed again (a layer's last product,
 * whose output no rule reads, is not). The region's inputs that are
 * intermediate float values used by this region alone (a decoder layer's
 * residual stream) enter the copy as x + z, with z a negative zero computed
 * from a gradient that reaches the region. x + (−0) is x bit for bit, so the
 * copy computes exactly what the forward pass did, but onnxruntime can
 * neither merge it with the forward nodes (common-subexpression elimination)
 * nor run it before that gradient exists: the copy runs when the backward
 * pass needs it, and the forward pass keeps only the region's inputs.
 */
class RegionCopies {
  readonly #regionOf: (number | undefined)[];
  readonly #copies = new Map<number, (name: string) => Value>();
  readonly #producer = new Map<string, number>();
  readonly #consumers = new Map<string, Set<number>>();

  constructor(readonly g: GraphBuilder, readonly forward: readonly Node[]) {
    this.#regionOf = new Array(forward.length);
    g.recomputeRegions.forEach((r, k) => {
      for (let i = r.start; i < Math.min(r.end, forward.length); i++) this.#regionOf[i] = k;
    });
    forward.forEach((node, i) => {
      for (const o of node.outputs) this.#producer.set(o, i);
      const region = this.#regionOf[i] ?? -1;
      for (const n of node.inputs) {
        if (!this.#consumers.has(n)) this.#consumers.set(n, new Set());
        this.#consumers.get(n)!.add(region);
      }
    });
  }

  /** Maps a forward value name to what node `i`'s rule should read (its region's copy, if any). */
  copyFor(i: number, gradient: Value): (name: string) => Value {
    const k = this.#regionOf[i];
    if (k === undefined) return (name: string) => valueOf(this.g, name);
    let copy = this.#copies.get(k);
    if (!copy) {
      copy = this.#copier(k, gradient);
      this.#copies.set(k, copy);
    }
    return copy;
  }

  #copier(k: number, gradient: Value): (name: string) => Value {
    const { g } = this;
    const values = new Map<string, Value>();
    const emitted = new Map<number, Value[]>();
    // One −0 per region, from the gradient that reached it.
    let zero: Value | null = null;
    const negativeZero = (dtype: Value["dtype"]) => {
      zero ??= negativeZeroAfter(g, gradient, gradient.dtype);
      return g.cast(zero, dtype);
    };
    // Node p of the region, copied once (its inputs copied as they are read).
    const emit = (p: number): Value[] => {
      let outs = emitted.get(p);
      if (!outs) {
        const node = this.forward[p];
        outs = g.op(node.op, node.inputs.map((n) => n === "" ? null : copy(n)), node.attributes, {
          domain: node.domain,
          types: node.outputs.map((o) => ({ dtype: valueOf(g, o).dtype, shape: valueOf(g, o).shape })),
        });
        emitted.set(p, outs);
      }
      return outs;
    };
    const copy = (name: string): Value => {
      const hit = values.get(name);
      if (hit) return hit;
      const v = valueOf(g, name);
      const p = this.#producer.get(name);
      if (p === undefined || !isFloat(v.dtype) && this.#regionOf[p] !== k) return v;
      let make: () => Value;
      if (this.#regionOf[p] !== k) {
        // A region input: tied to the gradient when only this region reads it, else (weights, masks,
        // tables shared by all layers) read as it is.
        if (![...this.#consumers.get(name) ?? []].every((r) => r === k)) return v;
        make = () => withShapeOf(g, g.add(v, negativeZero(v.dtype)), v);
      } else {
        const j = this.forward[p].outputs.indexOf(name);
        make = () => emit(p)[j];
      }
      // Copied when a node first reads it (takes its name), not when a rule merely holds it: rules get
      // every input and output of their node, and most read few of them (an Add's rule reads none).
      let real: Value | null = null;
      const lazy: Value = {
        dtype: v.dtype,
        shape: v.shape,
        get name() {
          real ??= make();
          return real.name;
        },
      };
      values.set(name, lazy);
      return lazy;
    };
    return copy;
  }
}

function valueOf(g: GraphBuilder, name: string): Value {
  const v = g.values.get(name);
  if (!v) throw new GraphError(`value "${name}" is not defined in the builder`);
  return v;
}
