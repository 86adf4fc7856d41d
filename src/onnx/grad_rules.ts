/**
 * Reverse-mode gradient rules, one per ONNX op, written with standard opset-21
 * inference ops only (this onnxruntime build has no *Grad / training ops).
 *
 * A rule gets the forward node, its input/output values and the gradients of
 * its outputs, and returns one gradient per input (null: none or zero). Every
 * op a rule emits has ORT CPU kernels for float32 and float64 (checked by
 * tests/autodiff.test.ts); Erf, for one, has no double kernel, so it has no rule.
 */
import type { GraphBuilder } from "./builder.ts";
import { float } from "./builder.ts";
import {
  type Attribute,
  type DType,
  elementBytes,
  GraphError,
  isFloat,
  type Node,
  type Shape,
  type TensorArray,
  type Value,
} from "./ir.ts";
import { broadcastShapes, normAxis, sameShape } from "./shape.ts";

export interface GradContext {
  readonly g: GraphBuilder;
  readonly node: Node;
  /** Forward inputs (null where an optional input is omitted). */
  readonly inputs: (Value | null)[];
  readonly outputs: Value[];
  /** Gradient of each output; null where the output does not reach the loss. */
  readonly dOut: (Value | null)[];
  /** Which inputs need a gradient (float, and on a path from `wrt` to the loss). */
  readonly needs: boolean[];
}

/** Returns one gradient per forward input (null/undefined: no gradient). */
export type GradRule = (ctx: GradContext) => (Value | null | undefined)[];

// ---- attribute readers -------------------------------------------------------

function attr(node: Node, name: string): Attribute | undefined {
  return node.attributes[name];
}
export function intAttr(node: Node, name: string, dflt: number): number {
  const a = attr(node, name);
  return a && a.kind === "int" ? a.value : dflt;
}
function floatAttr(node: Node, name: string, dflt: number): number {
  const a = attr(node, name);
  return a && (a.kind === "float" || a.kind === "int") ? a.value : dflt;
}
function intsAttr(node: Node, name: string): number[] | null {
  const a = attr(node, name);
  return a && a.kind === "ints" ? a.value : null;
}

// ---- graph helpers -----------------------------------------------------------

function isStatic(shape: Shape | null): shape is number[] {
  return shape !== null && shape.every((d) => typeof d === "number" && d > 0);
}

function rankOf(v: Value, op: string): number {
  if (!v.shape) throw new GraphError(`gradient of ${op} needs the rank of "${v.name}"`);
  return v.shape.length;
}

/**
 * The shape of `x` as an int64 tensor: a constant when static (foldable);
 * else, when each symbolic dim is a dim of some graph input, assembled from
 * those inputs' shapes; else Shape(x). A backward node reading Shape(x) keeps
 * all of x alive until it runs (onnxruntime frees a tensor after its last
 * reader): a [batch, seq, vocab] logits tensor, an attention score tensor per
 * layer. Graph inputs are alive anyway.
 */
export function shapeOf(g: GraphBuilder, x: Value): Value {
  if (isStatic(x.shape)) return g.constant(x.shape);
  return (x.shape && shapeFromInputs(g, x.shape)) ?? g.shapeOf(x);
}

const inputShapes = new WeakMap<GraphBuilder, Map<string, Value>>();

function shapeFromInputs(g: GraphBuilder, shape: Shape): Value | null {
  const key = shape.join(",");
  let cache = inputShapes.get(g);
  const hit = cache?.get(key);
  if (hit) return hit;
  const parts: Value[] = [];
  for (const d of shape) {
    if (typeof d === "number") {
      parts.push(g.constant([d]));
      continue;
    }
    // A symbol, or a product of symbols and numbers ("3*sequence_length").
    if (/[+()]/.test(d)) return null;
    let dim: Value | null = null;
    for (const f of d.split("*")) {
      let part: Value;
      if (/^\d+$/.test(f)) part = g.constant([Number(f)]);
      else {
        const source = g.inputs.find((v) => v.shape?.includes(f));
        if (!source) return null;
        part = g.gather(g.shapeOf(source), g.constant([source.shape!.indexOf(f)]));
      }
      dim = dim ? g.mul(dim, part) : part;
    }
    parts.push(dim!);
  }
  const out = g.concat(parts, 0);
  if (!cache) inputShapes.set(g, cache = new Map());
  cache.set(key, out);
  return out;
}

/**
 * −0 of `dtype` computed from `after`'s first element (|a·0| is +0 for any
 * finite a, negated): adding it to x changes no bit of x (x + −0 = x, −0
 * included), but makes x wait for `after` and look new to onnxruntime, which
 * then neither merges what reads it with an equal computation elsewhere
 * (common-subexpression elimination) nor runs it earlier. A scalar.
 */
export function negativeZeroAfter(g: GraphBuilder, after: Value, dtype: DType): Value {
  const first = g.reshape(g.slice(g.reshape(after, [-1]), [0], [1], [0]), []); // a scalar: broadcasts to any shape
  return g.cast(g.neg(g.op1("Abs", [g.mul(first, g.scalar(0, after.dtype))])), dtype);
}

/** x, computed only after `after` (see negativeZeroAfter); bit for bit x. */
export function tiedAfter(g: GraphBuilder, x: Value, after: Value): Value {
  return withShapeOf(g, g.add(x, negativeZeroAfter(g, after, x.dtype)), x);
}

/** `v` re-declared with `x`'s shape: the caller knows they agree at runtime. */
export function withShapeOf(g: GraphBuilder, v: Value, x: Value): Value {
  if (x.shape === null || sameShape(v.shape, x.shape)) return v;
  return g.op1("Identity", [v], {}, { types: [{ dtype: v.dtype, shape: x.shape }] });
}

export function reshapeLike(g: GraphBuilder, v: Value, x: Value): Value {
  if (sameShape(v.shape, x.shape)) return v;
  return g.reshape(v, shapeOf(g, x), x.shape);
}

/** ConstantOfShape filled with 0 (all-zero bits: any dtype) or 1 (int64/float32/float64). */
function filled(g: GraphBuilder, shape: Value, dtype: DType, outShape: Shape | null, value: 0 | 1 = 0): Value {
  let data: TensorArray;
  if (value === 0) data = new Uint8Array(elementBytes[dtype]);
  else if (dtype === "int64") data = BigInt64Array.from([1n]);
  else if (dtype === "float64") data = Float64Array.from([1]);
  else if (dtype === "float32") data = Float32Array.from([1]);
  else throw new GraphError(`ones of ${dtype} are not supported`);
  return g.op1("ConstantOfShape", [shape], { value: { kind: "tensor", value: { dtype, shape: [1], data } } }, {
    types: [{ dtype, shape: outShape }],
  });
}

/**
 * Zeros shaped like `x`. ORT constant-folds a ConstantOfShape of a static shape
 * into an initializer (an embedding-sized one would stay resident), so when
 * x's shape is static but `anchor` (a runtime gradient) has symbolic dims, the
 * shape is tied to Shape(anchor) through an empty slice to keep it a runtime op.
 */
function zeros(g: GraphBuilder, dtype: DType, dims: Shape | null, runtime: () => Value, anchor?: Value): Value {
  if (!isStatic(dims)) return filled(g, runtime(), dtype, dims);
  let shape = g.constant(dims);
  if (anchor && !isStatic(anchor.shape)) shape = g.concat([g.slice(g.shapeOf(anchor), [0], [0], [0]), shape], 0);
  return filled(g, shape, dtype, dims);
}

export function zerosLike(g: GraphBuilder, x: Value, anchor?: Value): Value {
  return zeros(g, x.dtype, x.shape, () => shapeOf(g, x), anchor);
}

/** Ones shaped like `x` (the default seed of a non-scalar loss). */
export function onesLike(g: GraphBuilder, x: Value): Value {
  return g.expand(g.scalar(1, x.dtype), shapeOf(g, x), x.shape);
}

function scalarOf(g: GraphBuilder, value: number, like: Value): Value {
  return g.scalar(value, like.dtype);
}

function range(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

/**
 * Sums `grad` (the gradient of a broadcast result of shape `ref`) back to the
 * shape of `x`: over leading extra axes, and over axes where x has 1 and the
 * result does not. Decided statically when the shapes tell (literal 1s, equal
 * dims); when a symbolic dim of x meets a different dim, the axes are found at
 * runtime from Shape(x) (ReduceSum takes its axes as an input).
 */
export function unbroadcast(g: GraphBuilder, grad: Value, x: Value, ref: Shape | null): Value {
  const xs = x.shape;
  if (xs && ref && sameShape(xs, ref)) return grad;
  if (xs && ref && ref.length >= xs.length) {
    const lead = ref.length - xs.length;
    const keep: number[] = [];
    let decidable = true;
    xs.forEach((t, i) => {
      const d = ref[i + lead];
      if (t === d || d === 1 || (typeof t === "number" && t !== 1)) return;
      if (t === 1) keep.push(i + lead);
      else decidable = false; // symbolic t against another dim: t may be 1 at runtime
    });
    if (decidable) {
      let r = grad;
      if (keep.length) r = g.reduceSum(r, keep, true);
      if (lead) r = g.reduceSum(r, range(lead), false);
      return withShapeOf(g, r, x);
    }
  }
  // Runtime axes: pad Shape(x) with leading 1s to grad's rank, sum where it is 1.
  const sx = shapeOf(g, x);
  const sg = g.shapeOf(grad);
  const extra = g.sub(g.shapeOf(sg), g.shapeOf(sx));
  const padded = g.concat([filled(g, extra, "int64", null, 1), sx], 0);
  const isOne = g.equal(padded, g.constant(1, "int64", []));
  const nz = g.op1("NonZero", [isOne], {}, { types: [{ dtype: "int64", shape: [1, g.freshSymbol()] }] });
  const axes = g.reshape(nz, [-1]);
  const summed = g.op1("ReduceSum", [grad, axes], { keepdims: 1, noop_with_empty_axes: 1 });
  return g.reshape(summed, sx, xs);
}

/** Flips the last two axes of a value of rank >= 2. */
function swapLast(g: GraphBuilder, v: Value, op: string): Value {
  const r = rankOf(v, op);
  const perm = range(r);
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return g.transpose(v, perm);
}

/** Indices with negatives wrapped (Scatter* then sees only in-range ones). */
function wrapIndices(g: GraphBuilder, idx: Value, data: Value, axis: number): Value {
  const d = data.shape?.[axis];
  const dim = typeof d === "number"
    ? g.constant(d, idx.dtype, [])
    : g.cast(g.gather(g.shapeOf(data), g.constant(axis, "int64", [])), idx.dtype);
  const zero = g.constant(0, idx.dtype, []);
  return g.where(g.less(idx, zero), g.add(idx, dim), idx);
}

// ---- rules -------------------------------------------------------------------

type Unary = (g: GraphBuilder, dy: Value, x: Value, y: Value) => Value;
const unary = (f: Unary): GradRule => ({ g, inputs, outputs, dOut }) => [f(g, dOut[0]!, inputs[0]!, outputs[0])];

/** Elementwise binary op: `f` gives input `i`'s gradient before it is unbroadcast to that input's shape. */
type Binary = (g: GraphBuilder, i: 0 | 1, dy: Value, a: Value, b: Value, y: Value) => Value;
const binary = (f: Binary): GradRule => ({ g, inputs, outputs, dOut, needs }) => {
  const [a, b] = inputs as Value[];
  const y = outputs[0], dy = dOut[0]!;
  return ([0, 1] as const).map((i) => needs[i] ? unbroadcast(g, f(g, i, dy, a, b, y), inputs[i]!, y.shape) : null);
};

/** Max/Min: the gradient goes to the inputs equal to the result; ties split it evenly (as torch.maximum). */
const extremum: GradRule = ({ g, inputs, outputs, dOut, needs }) => {
  const y = outputs[0], dy = dOut[0]!;
  const xs = inputs as Value[];
  if (xs.length === 1) return [dy];
  const masks = xs.map((x) => g.cast(g.equal(y, x), y.dtype));
  const count = masks.slice(1).reduce((acc, m) => g.add(acc, m), masks[0]);
  const share = g.div(dy, count);
  return xs.map((x, i) => needs[i] ? unbroadcast(g, g.mul(share, masks[i]), x, y.shape) : null);
};

/** ReduceSum / ReduceMean: broadcast dy back over the reduced axes. */
const reduction = (mean: boolean): GradRule => ({ g, node, inputs, outputs, dOut }) => {
  const [x, axesV] = inputs as [Value, Value | null];
  const y = outputs[0];
  let d = dOut[0]!;
  if (!axesV && intAttr(node, "noop_with_empty_axes", 0) === 1) return [d];
  if (intAttr(node, "keepdims", 1) === 0 && axesV) {
    d = g.op1("Unsqueeze", [d, axesV], {}, { types: [{ dtype: d.dtype, shape: null }] });
  }
  let dx = g.expand(d, shapeOf(g, x), x.shape);
  if (mean) {
    // The count is static when the reduced dims are, even if other dims are symbolic.
    const axes = axesV ? g.constantValues(axesV) : x.shape?.map((_, i) => i) ?? null;
    const dims = axes && x.shape ? axes.map((a) => x.shape![normAxis(a, x.shape!.length)]) : null;
    let count: Value;
    if (dims && dims.every((d) => typeof d === "number")) {
      count = scalarOf(g, (dims as number[]).reduce((a, b) => a * b, 1), x);
    } else {
      const size = (v: Value) => g.cast(g.size(v), x.dtype);
      count = g.div(size(x), size(y));
    }
    dx = g.div(dx, count);
  }
  return [dx];
};

const matmul: GradRule = ({ g, inputs, outputs, dOut, needs }) => {
  const [a, b] = inputs as Value[];
  const ra = rankOf(a, "MatMul"), rb = rankOf(b, "MatMul");
  let dy = dOut[0]!;
  if (ra === 1 && rb === 1) return [needs[0] ? g.mul(dy, b) : null, needs[1] ? g.mul(dy, a) : null];
  // 1-D operands as matrices: a [K] -> [1, K], b [K] -> [K, 1]; dy gains the dropped axis back.
  const a2 = ra === 1 ? g.unsqueeze(a, [0]) : a;
  const b2 = rb === 1 ? g.unsqueeze(b, [1]) : b;
  if (ra === 1) dy = g.unsqueeze(dy, [-2]);
  if (rb === 1) dy = g.unsqueeze(dy, [-1]);
  const batch = broadcastShapes(a2.shape!.slice(0, -2), b2.shape!.slice(0, -2));
  let da: Value | null = null, db: Value | null = null;
  if (needs[0]) {
    da = unbroadcast(g, g.matmul(dy, swapLast(g, b2, "MatMul")), a2, [...batch, ...a2.shape!.slice(-2)]);
    if (ra === 1) da = reshapeLike(g, da, a);
  }
  if (needs[1]) {
    const k = a2.shape![a2.shape!.length - 1], n = outputs[0].shape?.at(-1);
    if (rb === 2 && ra > 2) {
      // Shared weight (x [..., K] @ W [K, N]): fold the batch into rows, one [K, N] product.
      const rows = (v: Value, last: Shape[number] | undefined) =>
        typeof last === "number"
          ? g.reshape(v, [-1, last])
          : g.reshape(v, g.concat([g.constant([-1]), g.gather(g.shapeOf(v), g.constant([-1]))], 0));
      db = withShapeOf(g, g.matmul(g.transpose(rows(a2, k), [1, 0]), rows(dy, n)), b2);
    } else {
      db = unbroadcast(g, g.matmul(swapLast(g, a2, "MatMul"), dy), b2, [...batch, ...b2.shape!.slice(-2)]);
    }
    if (rb === 1) db = reshapeLike(g, db, b);
  }
  return [da, db];
};

/** Y = alpha·op(A)·op(B) + beta·C. The gradients are Gemms with the transposes folded in. */
const gemm: GradRule = ({ g, node, inputs, outputs, dOut, needs }) => {
  const [a, b, c] = inputs;
  const dy = dOut[0]!;
  const alpha = floatAttr(node, "alpha", 1), beta = floatAttr(node, "beta", 1);
  const tA = intAttr(node, "transA", 0), tB = intAttr(node, "transB", 0);
  const gm = (x: Value, w: Value, transA: number, transB: number, like: Value) =>
    g.op1("Gemm", [x, w], { alpha: float(alpha), transA, transB }, {
      types: [{ dtype: like.dtype, shape: like.shape }],
    });
  // dA = alpha·dy·op(B)ᵀ (transposed when transA); dB = alpha·op(A)ᵀ·dy (transposed when transB).
  const da = !needs[0] ? null : tA ? gm(b!, dy, tB, 1, a!) : gm(dy, b!, 0, tB ? 0 : 1, a!);
  const db = !needs[1] ? null : tB ? gm(dy, a!, 1, tA, b!) : gm(a!, dy, tA ? 0 : 1, 0, b!);
  let dc: Value | null = null;
  if (c && needs[2]) dc = unbroadcast(g, beta === 1 ? dy : g.mul(dy, scalarOf(g, beta, dy)), c, outputs[0].shape);
  return [da, db, dc];
};

/** Gather: scatter-add dy into zeros (ScatterND reduction=add, so repeated indices accumulate). */
const gather: GradRule = ({ g, node, inputs, dOut }) => {
  const [data, indices] = inputs as Value[];
  const r = rankOf(data, "Gather"), q = rankOf(indices, "Gather");
  const axis = normAxis(intAttr(node, "axis", 0), r);
  const idx = g.unsqueeze(wrapIndices(g, indices, data, axis), [-1]);
  let dy = dOut[0]!;
  if (axis === 0) {
    return [g.scatterND(zerosLike(g, data, dy), idx, dy, "add")];
  }
  // Move the gathered axis first, scatter along it, move it back.
  const dataPerm = [axis, ...range(axis), ...range(r - axis - 1, axis + 1)];
  dy = g.transpose(dy, [...range(q, axis), ...range(axis), ...range(r - axis - 1, axis + q)]);
  const permDims = dataPerm.map((p) => data.shape![p]);
  const base = zeros(g, data.dtype, permDims, () => g.gather(g.shapeOf(data), g.constant(dataPerm)), dy);
  const scattered = g.scatterND(base, idx, dy, "add");
  const inverse = range(r).map((i) => dataPerm.indexOf(i));
  return [withShapeOf(g, g.transpose(scattered, inverse), data)];
};

const gatherElements: GradRule = ({ g, node, inputs, dOut }) => {
  const [data, indices] = inputs as Value[];
  const axis = normAxis(intAttr(node, "axis", 0), rankOf(data, "GatherElements"));
  const idx = wrapIndices(g, indices, data, axis);
  return [g.op1("ScatterElements", [zerosLike(g, data, dOut[0]!), idx, dOut[0]!], { axis, reduction: "add" })];
};

/**
 * Slice: dy back into zeros. Unit steps with static bounds are a Pad; anything
 * else (steps, dynamic bounds) scatters through the flat indices of the slice,
 * found by slicing an iota of x's shape with the same parameters.
 */
const slice: GradRule = ({ g, inputs, dOut }) => {
  const [x, startsV, endsV, axesV, stepsV] = inputs;
  const dy = dOut[0]!;
  const starts = g.constantValues(startsV!), ends = g.constantValues(endsV!);
  const axes = axesV ? g.constantValues(axesV) : starts?.map((_, i) => i) ?? null;
  const steps = stepsV ? g.constantValues(stepsV) : starts?.map(() => 1) ?? null;
  const xs = x!.shape;
  if (starts && ends && axes && steps && xs && steps.every((s) => s === 1)) {
    const r = xs.length;
    const pads = new Array<number>(2 * r).fill(0);
    const ok = axes.every((axis, i) => {
      const a = normAxis(axis, r), d = xs[a];
      if (typeof d !== "number") return false;
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
      const s = clamp(starts[i]), e = Math.max(clamp(ends[i]), s);
      pads[a] = s;
      pads[a + r] = d - e;
      return true;
    });
    if (ok) return [g.op1("Pad", [dy, g.constant(pads)], {}, { types: [{ dtype: dy.dtype, shape: xs }] })];
  }
  const size = g.size(x!);
  const iota = g.op1("Range", [g.constant(0, "int64", []), size, g.constant(1, "int64", [])]);
  const params = [startsV, endsV, axesV ?? null, stepsV ?? null];
  while (params.at(-1) === null) params.pop(); // omitted optional inputs must not leave empty names
  const picked = g.op1("Slice", [reshapeLike(g, iota, x!), ...params], {}, {
    types: [{ dtype: "int64", shape: null }],
  });
  const flatIdx = g.reshape(picked, [-1, 1]);
  const numel = isStatic(xs) ? [xs.reduce((a, b) => a * b, 1)] : null;
  const base = zeros(g, x!.dtype, numel, () => g.reshape(size, [1]), dy);
  const flat = g.scatterND(base, flatIdx, g.reshape(dy, [-1]));
  return [reshapeLike(g, flat, x!)];
};

/** Concat: Split dy at the inputs' sizes along the axis. */
const concat: GradRule = ({ g, node, inputs, dOut }) => {
  const xs = inputs as Value[];
  if (xs.length === 1) return [dOut[0]];
  const axis = normAxis(intAttr(node, "axis", 0), rankOf(xs[0], "Concat"));
  const dims = xs.map((x) => x.shape?.[axis]);
  const sizes = dims.every((d) => typeof d === "number")
    ? g.constant(dims as number[])
    : g.concat(xs.map((x) => g.gather(g.shapeOf(x), g.constant([axis]))), 0);
  return g.op("Split", [dOut[0]!, sizes], { axis }, { types: xs.map((x) => ({ dtype: x.dtype, shape: x.shape })) });
};

/** Split: Concat the output gradients, zeros for outputs that do not reach the loss. */
const split: GradRule = ({ g, node, inputs, outputs, dOut }) => {
  const x = inputs[0]!;
  const axis = normAxis(intAttr(node, "axis", 0), rankOf(x, "Split"));
  const parts = outputs.map((y, i) => dOut[i] ?? zerosLike(g, y));
  return [withShapeOf(g, g.concat(parts, axis), x)];
};

const transpose: GradRule = ({ g, node, dOut }) => {
  const perm = intsAttr(node, "perm");
  if (!perm) return [g.transpose(dOut[0]!)]; // reversal is its own inverse
  return [g.transpose(dOut[0]!, range(perm.length).map((i) => perm.indexOf(i)))];
};

const shapeOnly: GradRule = ({ g, inputs, dOut }) => [reshapeLike(g, dOut[0]!, inputs[0]!)];

const cast: GradRule = ({ g, inputs, outputs, dOut }) => {
  const x = inputs[0]!;
  if (!isFloat(x.dtype) || !isFloat(outputs[0].dtype)) return [null];
  return [g.cast(dOut[0]!, x.dtype)];
};

const where: GradRule = ({ g, inputs, outputs, dOut, needs }) => {
  const [c, a, b] = inputs as Value[];
  const dy = dOut[0]!, zero = scalarOf(g, 0, dy), ref = outputs[0].shape;
  return [
    null,
    needs[1] ? unbroadcast(g, g.where(c, dy, zero), a, ref) : null,
    needs[2] ? unbroadcast(g, g.where(c, zero, dy), b, ref) : null,
  ];
};

/** Pow(x, e): dx = dy·e·x^(e-1); de = dy·y·ln(x) (defined for x > 0 only). */
const pow: GradRule = ({ g, inputs, outputs, dOut, needs }) => {
  const [x, e] = inputs as Value[];
  const y = outputs[0], dy = dOut[0]!;
  let dx: Value | null = null, de: Value | null = null;
  if (needs[0]) {
    const k = g.constantValues(e);
    if (k && k.length === 1 && e.shape?.length === 0) {
      const p = k[0] - 1;
      const xp = p === 0 ? null : p === 1 ? x : g.pow(x, scalarOf(g, p, x));
      const coeff = xp ? g.mul(xp, scalarOf(g, k[0], x)) : scalarOf(g, k[0], x);
      dx = g.mul(dy, coeff);
    } else {
      const ef = g.cast(e, x.dtype);
      dx = g.mul(dy, g.mul(ef, g.pow(x, g.sub(ef, scalarOf(g, 1, x)))));
    }
    dx = unbroadcast(g, dx, x, y.shape);
  }
  if (needs[1]) de = unbroadcast(g, g.mul(dy, g.mul(y, g.log(x))), e, y.shape);
  return [dx, de];
};

const softmax: GradRule = ({ g, node, outputs, dOut }) => {
  const y = outputs[0], dy = dOut[0]!;
  const axis = intAttr(node, "axis", -1);
  return [g.mul(y, g.sub(dy, g.reduceSum(g.mul(dy, y), [axis], true)))];
};

const logSoftmax: GradRule = ({ g, node, outputs, dOut }) => {
  const y = outputs[0], dy = dOut[0]!;
  const axis = intAttr(node, "axis", -1);
  return [g.sub(dy, g.mul(g.exp(y), g.reduceSum(dy, [axis], true)))];
};

const expand: GradRule = ({ g, inputs, outputs, dOut }) => [unbroadcast(g, dOut[0]!, inputs[0]!, outputs[0].shape)];

const variadicSum: GradRule = ({ g, inputs, outputs, dOut, needs }) =>
  inputs.map((x, i) => needs[i] ? unbroadcast(g, dOut[0]!, x!, outputs[0].shape) : null);

const zeroGrad: GradRule = ({ inputs }) => inputs.map(() => null);

export const gradRules: Record<string, GradRule> = {
  Add: binary((_g, _i, dy) => dy),
  Sub: binary((g, i, dy) => i === 0 ? dy : g.neg(dy)),
  Mul: binary((g, i, dy, a, b) => g.mul(dy, i === 0 ? b : a)),
  // d(a/b)/db = -a/b² = -y/b.
  Div: binary((g, i, dy, _a, b, y) => i === 0 ? g.div(dy, b) : g.neg(g.div(g.mul(dy, y), b))),
  Sum: variadicSum,
  Max: extremum,
  Min: extremum,
  Pow: pow,
  Neg: unary((g, dy) => g.neg(dy)),
  Identity: unary((_g, dy) => dy),
  Sqrt: unary((g, dy, _x, y) => g.div(dy, g.mul(y, scalarOf(g, 2, y)))),
  Reciprocal: unary((g, dy, _x, y) => g.neg(g.mul(dy, g.mul(y, y)))),
  Exp: unary((g, dy, _x, y) => g.mul(dy, y)),
  Log: unary((g, dy, x) => g.div(dy, x)),
  Sigmoid: unary((g, dy, _x, y) => g.mul(dy, g.mul(y, g.sub(scalarOf(g, 1, y), y)))),
  Tanh: unary((g, dy, _x, y) => g.mul(dy, g.sub(scalarOf(g, 1, y), g.mul(y, y)))),
  // Relu'(0) = 0, Abs'(0) = 0 (subgradient choices, as PyTorch).
  Relu: unary((g, dy, x) => g.where(g.greater(x, scalarOf(g, 0, x)), dy, scalarOf(g, 0, dy))),
  Abs: unary((g, dy, x) => g.mul(dy, g.sign(x))),
  Cos: unary((g, dy, x) => g.neg(g.mul(dy, g.sin(x)))),
  Sin: unary((g, dy, x) => g.mul(dy, g.cos(x))),
  Softmax: softmax,
  LogSoftmax: logSoftmax,
  ReduceSum: reduction(false),
  ReduceMean: reduction(true),
  MatMul: matmul,
  Gemm: gemm,
  Gather: gather,
  GatherElements: gatherElements,
  Reshape: shapeOnly,
  Unsqueeze: shapeOnly,
  Squeeze: shapeOnly,
  Flatten: shapeOnly,
  Transpose: transpose,
  Concat: concat,
  Split: split,
  Slice: slice,
  Expand: expand,
  Where: where,
  Cast: cast,
  // Piecewise constant: zero gradient almost everywhere.
  Sign: zeroGrad,
  Floor: zeroGrad,
  Ceil: zeroGrad,
  Round: zeroGrad,
};
