/**
 * Reverse-mode automatic differentiation over a GraphBuilder's recorded nodes.
 * The backward pass is emitted into the same builder as ordinary ONNX ops
 * (see grad_rules.ts), so one session runs forward and backward together.
 */
import type { GraphBuilder } from "./builder.ts";
import { gradRules } from "./grad_rules.ts";
import { onesLike, withShapeOf, zerosLike } from "./grad_rules.ts";
import { GraphError, isFloat, type Value } from "./ir.ts";
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
      const inputs = node.inputs.map((n) => n === "" ? null : valueOf(g, n));
      const grads = rule({ g, node, inputs, outputs: node.outputs.map((o) => valueOf(g, o)), dOut, needs });
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

function valueOf(g: GraphBuilder, name: string): Value {
  const v = g.values.get(name);
  if (!v) throw new GraphError(`value "${name}" is not defined in the builder`);
  return v;
}
