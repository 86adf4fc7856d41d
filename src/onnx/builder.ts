/**
 * GraphBuilder: records nodes into the IR and infers each output's dtype and
 * shape, so graph builders (and autodiff) know what they hold without running.
 */
import {
  type Attribute,
  type DType,
  type FunctionDef,
  type Graph,
  GraphError,
  type Initializer,
  type Node,
  type Shape,
  type TensorArray,
  type TensorSource,
  type Value,
} from "./ir.ts";
import { addDims, broadcastShapes, divDims, mulDims, normAxis } from "./shape.ts";

export const MS_DOMAIN = "com.microsoft";
export const DEFAULT_OPSET = 21;

export type AttrInput = number | string | number[] | string[] | Attribute;
export type Attrs = Record<string, AttrInput | undefined>;

export interface OpOptions {
  domain?: string;
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Explicit output types, when inference does not know the op or is not precise enough. */
  types?: { dtype: DType; shape: Shape | null }[];
  /** Output names (default: generated from the scope). */
  names?: string[];
}

/** Marks a JS number as a float attribute (plain numbers are ints when integral). */
export function float(value: number): Attribute {
  return { kind: "float", value };
}
export function floats(value: number[]): Attribute {
  return { kind: "floats", value };
}

function toAttribute(v: AttrInput): Attribute {
  if (typeof v === "number") {
    return Number.isInteger(v) ? { kind: "int", value: v } : { kind: "float", value: v };
  }
  if (typeof v === "string") return { kind: "string", value: v };
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === "string") return { kind: "strings", value: v as string[] };
    const nums = v as number[];
    return nums.every(Number.isInteger) ? { kind: "ints", value: nums } : { kind: "floats", value: nums };
  }
  return v;
}

function typedArrayFor(dtype: DType, values: number[]): TensorArray {
  switch (dtype) {
    case "float32":
      return Float32Array.from(values);
    case "float64":
      return Float64Array.from(values);
    case "int64":
      return BigInt64Array.from(values.map((x) => BigInt(x)));
    case "int32":
      return Int32Array.from(values);
    case "int8":
      return Int8Array.from(values);
    case "uint8":
    case "bool":
      return Uint8Array.from(values);
    default:
      throw new GraphError(`constants of dtype ${dtype} need explicit data`);
  }
}

type Infer = (b: GraphBuilder, ins: Value[], attrs: Record<string, Attribute>) => {
  dtype: DType;
  shape: Shape | null;
}[];

function intAttr(attrs: Record<string, Attribute>, name: string, dflt: number): number {
  const a = attrs[name];
  return a && a.kind === "int" ? a.value : dflt;
}
function intsAttr(attrs: Record<string, Attribute>, name: string): number[] | null {
  const a = attrs[name];
  return a && a.kind === "ints" ? a.value : null;
}

const same: Infer = (_b, ins) => [{ dtype: ins[0].dtype, shape: ins[0].shape }];
const broadcast = (dtype?: DType): Infer => (_b, ins) => {
  let shape: Shape | null = ins[0].shape;
  for (const v of ins.slice(1)) shape = shape && v.shape ? broadcastShapes(shape, v.shape) : null;
  return [{ dtype: dtype ?? ins[0].dtype, shape }];
};
const reduce: Infer = (b, ins, attrs) => {
  const x = ins[0];
  const keep = intAttr(attrs, "keepdims", 1) === 1;
  const axesVals = ins[1] ? b.constantValues(ins[1]) : null;
  if (!x.shape || (ins[1] && !axesVals)) return [{ dtype: x.dtype, shape: null }];
  const rank = x.shape.length;
  const axes = new Set((axesVals ?? x.shape.map((_, i) => i)).map((a) => normAxis(a, rank)));
  const shape = x.shape.flatMap((d, i) => axes.has(i) ? (keep ? [1] : []) : [d]);
  return [{ dtype: x.dtype, shape }];
};

const inference: Record<string, Infer> = {
  Add: broadcast(),
  Sub: broadcast(),
  Mul: broadcast(),
  Div: broadcast(),
  Pow: broadcast(),
  Max: broadcast(),
  Min: broadcast(),
  Equal: broadcast("bool"),
  Less: broadcast("bool"),
  LessOrEqual: broadcast("bool"),
  Greater: broadcast("bool"),
  GreaterOrEqual: broadcast("bool"),
  And: broadcast("bool"),
  Or: broadcast("bool"),
  Not: same,
  Where: (_b, ins) => {
    const s = [ins[0], ins[1], ins[2]].reduce<Shape | null>(
      (acc, v) => acc && v.shape ? broadcastShapes(acc, v.shape) : null,
      [],
    );
    return [{ dtype: ins[1].dtype, shape: s }];
  },
  Neg: same,
  Sqrt: same,
  Reciprocal: same,
  Exp: same,
  Cos: same,
  Sin: same,
  Log: same,
  Abs: same,
  Sigmoid: same,
  Tanh: same,
  Relu: same,
  Identity: same,
  Softmax: same,
  LogSoftmax: same,
  Cast: (_b, ins, attrs) => [{ dtype: onnxToDType(intAttr(attrs, "to", 1)), shape: ins[0].shape }],
  ReduceMean: reduce,
  ReduceSum: reduce,
  ReduceMax: reduce,
  MatMul: (_b, ins) => {
    const [a, c] = ins;
    if (!a.shape || !c.shape) return [{ dtype: a.dtype, shape: null }];
    const as = a.shape.length === 1 ? [1, a.shape[0]] : a.shape;
    const cs = c.shape.length === 1 ? [c.shape[0], 1] : c.shape;
    const batch = broadcastShapes(as.slice(0, -2), cs.slice(0, -2));
    const shape: Shape = [...batch];
    if (a.shape.length > 1) shape.push(as[as.length - 2]);
    if (c.shape.length > 1) shape.push(cs[cs.length - 1]);
    return [{ dtype: a.dtype, shape }];
  },
  Gemm: (_b, ins, attrs) => {
    const [a, c] = ins;
    if (!a.shape || !c.shape) return [{ dtype: a.dtype, shape: null }];
    const m = intAttr(attrs, "transA", 0) ? a.shape[1] : a.shape[0];
    const n = intAttr(attrs, "transB", 0) ? c.shape[0] : c.shape[1];
    return [{ dtype: a.dtype, shape: [m, n] }];
  },
  Gather: (_b, ins, attrs) => {
    const [data, idx] = ins;
    if (!data.shape || !idx.shape) return [{ dtype: data.dtype, shape: null }];
    const axis = normAxis(intAttr(attrs, "axis", 0), data.shape.length);
    return [{
      dtype: data.dtype,
      shape: [...data.shape.slice(0, axis), ...idx.shape, ...data.shape.slice(axis + 1)],
    }];
  },
  Transpose: (_b, ins, attrs) => {
    const x = ins[0];
    if (!x.shape) return [{ dtype: x.dtype, shape: null }];
    const perm = intsAttr(attrs, "perm") ?? x.shape.map((_, i) => x.shape!.length - 1 - i);
    return [{ dtype: x.dtype, shape: perm.map((p) => x.shape![p]) }];
  },
  Concat: (_b, ins, attrs) => {
    if (ins.some((v) => !v.shape)) return [{ dtype: ins[0].dtype, shape: null }];
    const rank = ins[0].shape!.length;
    const axis = normAxis(intAttr(attrs, "axis", 0), rank);
    const shape = [...ins[0].shape!];
    shape[axis] = ins.slice(1).reduce((acc, v) => {
      const d = v.shape![axis];
      return addDims(acc, d);
    }, shape[axis]);
    return [{ dtype: ins[0].dtype, shape }];
  },
  Unsqueeze: (b, ins) => {
    const x = ins[0];
    const axes = b.constantValues(ins[1]);
    if (!x.shape || !axes) return [{ dtype: x.dtype, shape: null }];
    const rank = x.shape.length + axes.length;
    const norm = new Set(axes.map((a) => normAxis(a, rank)));
    const shape: Shape = [];
    let j = 0;
    for (let i = 0; i < rank; i++) shape.push(norm.has(i) ? 1 : x.shape[j++]);
    return [{ dtype: x.dtype, shape }];
  },
  Squeeze: (b, ins) => {
    const x = ins[0];
    const axes = ins[1] ? b.constantValues(ins[1]) : null;
    if (!x.shape || !axes) return [{ dtype: x.dtype, shape: null }];
    const norm = new Set(axes.map((a) => normAxis(a, x.shape!.length)));
    return [{ dtype: x.dtype, shape: x.shape.filter((_, i) => !norm.has(i)) }];
  },
  Reshape: (b, ins) => {
    const x = ins[0];
    const target = b.constantValues(ins[1]);
    if (!target) return [{ dtype: x.dtype, shape: null }];
    const shape: Shape = target.map((d, i) => d === 0 && x.shape ? x.shape[i] : d);
    const inferred = shape.indexOf(-1);
    if (inferred >= 0) {
      const known = shape.filter((_, i) => i !== inferred);
      const total = x.shape?.reduce<Shape[number]>((a, d) => mulDims(a, d), 1);
      const rest = known.reduce<Shape[number]>((a, d) => mulDims(a, d), 1);
      shape[inferred] = (total === undefined ? null : divDims(total, rest)) ?? b.freshSymbol();
    }
    return [{ dtype: x.dtype, shape }];
  },
  Expand: (b, ins) => {
    const x = ins[0];
    const target = b.constantValues(ins[1]);
    if (!target || !x.shape) return [{ dtype: x.dtype, shape: null }];
    return [{ dtype: x.dtype, shape: broadcastShapes(x.shape, target) }];
  },
  Shape: (b, ins) => [{ dtype: "int64", shape: [ins[0].shape ? ins[0].shape.length : b.freshSymbol()] }],
  Range: (b, ins) => [{ dtype: ins[0].dtype, shape: [b.freshSymbol()] }],
  Slice: (b, ins) => {
    const x = ins[0];
    const starts = b.constantValues(ins[1]);
    const ends = b.constantValues(ins[2]);
    const axes = ins[3] ? b.constantValues(ins[3]) : starts?.map((_, i) => i) ?? null;
    const steps = ins[4] ? b.constantValues(ins[4]) : starts?.map(() => 1) ?? null;
    if (!x.shape || !starts || !ends || !axes || !steps) return [{ dtype: x.dtype, shape: null }];
    const shape = [...x.shape];
    axes.forEach((axis, i) => {
      const a = normAxis(axis, shape.length);
      const d = shape[a];
      if (typeof d !== "number") {
        shape[a] = b.freshSymbol();
        return;
      }
      const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
      const step = steps[i];
      let s = starts[i] < 0 ? starts[i] + d : starts[i];
      let e = ends[i] < 0 ? ends[i] + d : ends[i];
      if (step > 0) {
        s = clamp(s, 0, d);
        e = clamp(e, 0, d);
        shape[a] = Math.max(0, Math.ceil((e - s) / step));
      } else {
        s = clamp(s, -1, d - 1);
        e = clamp(e, -1, d - 1);
        shape[a] = Math.max(0, Math.ceil((e - s) / step));
      }
    });
    return [{ dtype: x.dtype, shape }];
  },
  ConstantOfShape: (b, ins, attrs) => {
    const v = attrs["value"];
    const dtype = v && v.kind === "tensor" ? v.value.dtype : "float32";
    const dims = b.constantValues(ins[0]);
    return [{ dtype, shape: dims ?? null }];
  },
  // Ops the loss and gradient graphs use (src/onnx/losses.ts, grad_rules.ts).
  GatherElements: (_b, ins) => [{ dtype: ins[0].dtype, shape: ins[1].shape }],
  ScatterElements: same,
  ScatterND: same,
  Size: () => [{ dtype: "int64", shape: [] }],
  Sign: same,
  Sum: broadcast(),
  CumSum: same,
};

const dtypeToOnnxCode: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
};
export function dtypeToOnnx(dtype: DType): number {
  return dtypeToOnnxCode[dtype];
}
export function onnxToDType(code: number): DType {
  const hit = (Object.keys(dtypeToOnnxCode) as DType[]).find((k) => dtypeToOnnxCode[k] === code);
  if (!hit) throw new GraphError(`unsupported ONNX tensor type ${code}`);
  return hit;
}

export class GraphBuilder {
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly nodes: Node[] = [];
  readonly initializers: Initializer[] = [];
  readonly values = new Map<string, Value>();
  readonly functions: FunctionDef[] = [];
  readonly opsets: Record<string, number> = { "": DEFAULT_OPSET };
  private readonly constData = new Map<string, number[]>();
  private readonly constCache = new Map<string, Value>();
  private readonly used = new Set<string>();
  private counter = 0;
  private scopes: string[] = [];
  /** Node ranges [start, end) that addBackward recomputes instead of keeping their values (see `recomputed`). */
  readonly recomputeRegions: { name: string; start: number; end: number }[] = [];
  #inRegion = false;

  constructor(readonly name = "main") {}

  /**
   * Runs `fn`; the nodes it adds form a region whose intermediate values the
   * backward pass does not keep: addBackward emits a copy of the region
   * right before its gradients need it and differentiates the copy
   * (activation checkpointing: only the region's inputs stay alive between
   * the forward and the backward pass, at the cost of computing the region
   * twice). Regions do not nest.
   */
  recomputed<T>(name: string, fn: () => T): T {
    if (this.#inRegion) throw new GraphError(`recomputed region "${name}" inside another one`);
    const start = this.nodes.length;
    this.#inRegion = true;
    try {
      return fn();
    } finally {
      this.#inRegion = false;
      this.recomputeRegions.push({ name, start, end: this.nodes.length });
    }
  }

  /** Runs `fn` with names prefixed by `scope` (e.g. "layers.3/attn"). */
  scoped<T>(scope: string, fn: () => T): T {
    this.scopes.push(scope);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  uniqueName(base: string): string {
    const prefix = this.scopes.length ? `/${this.scopes.join("/")}/` : "";
    let name = `${prefix}${base}`;
    while (this.used.has(name)) name = `${prefix}${base}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  freshSymbol(): string {
    return `d${this.counter++}`;
  }

  private reserve(name: string): string {
    if (this.used.has(name)) throw new GraphError(`duplicate value name "${name}"`);
    this.used.add(name);
    return name;
  }

  private define(v: Value): Value {
    this.values.set(v.name, v);
    return v;
  }

  input(name: string, dtype: DType, shape: Shape | null): Value {
    const v = this.define({ name: this.reserve(name), dtype, shape });
    this.inputs.push(v);
    return v;
  }

  /** Marks `v` as a graph output, under `name` (an Identity is inserted when renaming). */
  output(v: Value, name?: string): Value {
    const out = name && name !== v.name ? this.op("Identity", [v], {}, { names: [name] })[0] : v;
    this.outputs.push(out);
    return out;
  }

  initializer(name: string, dtype: DType, shape: number[], data: TensorSource): Value {
    return this.addInitializer(this.reserve(name), dtype, shape, data);
  }

  private addInitializer(name: string, dtype: DType, shape: number[], data: TensorSource): Value {
    const v = this.define({ name, dtype, shape });
    this.initializers.push({ name, dtype, shape, data });
    return v;
  }

  /** A small constant (deduplicated); its values stay known for shape inference. */
  constant(values: number | number[], dtype: DType = "int64", shape?: number[]): Value {
    const arr = typeof values === "number" ? [values] : values;
    const dims = shape ?? (typeof values === "number" ? [] : [arr.length]);
    const key = `${dtype}|${dims.join(",")}|${arr.join(",")}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const v = this.addInitializer(this.uniqueName("const"), dtype, dims, typedArrayFor(dtype, arr));
    this.constData.set(v.name, arr);
    this.constCache.set(key, v);
    return v;
  }

  /** Values of a constant created by `constant()`, else null. */
  constantValues(v: Value | undefined): number[] | null {
    return v ? this.constData.get(v.name) ?? null : null;
  }

  op(op: string, inputs: (Value | null)[], attrs: Attrs = {}, opts: OpOptions = {}): Value[] {
    const attributes: Record<string, Attribute> = {};
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) attributes[k] = toAttribute(v);
    const present = inputs.filter((v): v is Value => v !== null);
    const n = opts.names?.length ?? opts.types?.length ?? opts.outputs ?? 1;
    let types = opts.types;
    if (!types) {
      const infer = (opts.domain ?? "") === "" ? inference[op] : undefined;
      if (!infer) throw new GraphError(`no type inference for ${op}: pass types`);
      // Optional inputs may only be omitted at the end for inference to apply.
      if (inputs.slice(0, present.length).some((v) => v === null)) {
        throw new GraphError(`${op}: omitted inner inputs need explicit types`);
      }
      types = infer(this, present, attributes);
    }
    const outputs = Array.from({ length: n }, (_, i) =>
      this.define({
        name: opts.names?.[i] ? this.reserve(opts.names[i]) : this.uniqueName(`${op}_out${i}`),
        dtype: types![i]?.dtype ?? types![0].dtype,
        shape: types![i]?.shape ?? null,
      }));
    const domain = opts.domain ?? "";
    if (domain !== "" && !(domain in this.opsets)) this.opsets[domain] = 1;
    this.nodes.push({
      op,
      domain,
      name: this.uniqueName(op),
      inputs: inputs.map((v) => v?.name ?? ""),
      outputs: outputs.map((v) => v.name),
      attributes,
    });
    return outputs;
  }

  /** Single-output convenience over `op`. */
  op1(op: string, inputs: (Value | null)[], attrs: Attrs = {}, opts: OpOptions = {}): Value {
    return this.op(op, inputs, attrs, opts)[0];
  }

  addFunction(fn: FunctionDef): void {
    this.functions.push(fn);
    if (!(fn.domain in this.opsets)) this.opsets[fn.domain] = 1;
  }

  build(): Graph {
    return {
      name: this.name,
      inputs: this.inputs,
      outputs: this.outputs,
      nodes: this.nodes,
      initializers: this.initializers,
      values: this.values,
      functions: this.functions,
      opsets: this.opsets,
    };
  }

  // ---- op helpers -------------------------------------------------------
  // Typed helpers for the ops graph builders use more than once; `op` / `op1`
  // take any other op by name (and custom domains, with explicit types).

  add(a: Value, b: Value): Value {
    return this.op1("Add", [a, b]);
  }
  sub(a: Value, b: Value): Value {
    return this.op1("Sub", [a, b]);
  }
  mul(a: Value, b: Value): Value {
    return this.op1("Mul", [a, b]);
  }
  div(a: Value, b: Value): Value {
    return this.op1("Div", [a, b]);
  }
  /** Elementwise maximum of two (broadcast) operands. */
  max(a: Value, b: Value): Value {
    return this.op1("Max", [a, b]);
  }
  pow(a: Value, exponent: Value): Value {
    return this.op1("Pow", [a, exponent]);
  }
  neg(a: Value): Value {
    return this.op1("Neg", [a]);
  }
  exp(a: Value): Value {
    return this.op1("Exp", [a]);
  }
  log(a: Value): Value {
    return this.op1("Log", [a]);
  }
  sin(a: Value): Value {
    return this.op1("Sin", [a]);
  }
  cos(a: Value): Value {
    return this.op1("Cos", [a]);
  }
  sign(a: Value): Value {
    return this.op1("Sign", [a]);
  }
  equal(a: Value, b: Value): Value {
    return this.op1("Equal", [a, b]);
  }
  greater(a: Value, b: Value): Value {
    return this.op1("Greater", [a, b]);
  }
  greaterOrEqual(a: Value, b: Value): Value {
    return this.op1("GreaterOrEqual", [a, b]);
  }
  less(a: Value, b: Value): Value {
    return this.op1("Less", [a, b]);
  }
  lessOrEqual(a: Value, b: Value): Value {
    return this.op1("LessOrEqual", [a, b]);
  }
  and(a: Value, b: Value): Value {
    return this.op1("And", [a, b]);
  }
  sqrt(a: Value): Value {
    return this.op1("Sqrt", [a]);
  }
  sigmoid(a: Value): Value {
    return this.op1("Sigmoid", [a]);
  }
  matmul(a: Value, b: Value): Value {
    return this.op1("MatMul", [a, b]);
  }
  /** Scalar constant of a float dtype. */
  scalar(value: number, dtype: DType): Value {
    if (dtype === "float32" || dtype === "float64") return this.constant(value, dtype, []);
    // Half types have no JS array: ORT folds this Cast at session creation.
    return this.cast(this.constant(value, "float32", []), dtype);
  }
  cast(a: Value, to: DType): Value {
    if (a.dtype === to) return a;
    return this.op1("Cast", [a], { to: dtypeToOnnx(to) });
  }
  /**
   * A constant target shape (its values known to inference), or a runtime
   * shape value, whose result is declared `as` (the caller knows it; else unknown).
   */
  reshape(x: Value, shape: number[] | Value, as: Shape | null = null): Value {
    if (Array.isArray(shape)) return this.op1("Reshape", [x, this.constant(shape)]);
    return this.op1("Reshape", [x, shape], {}, { types: [{ dtype: x.dtype, shape: as }] });
  }
  /** `perm` omitted: the axes reversed. */
  transpose(x: Value, perm?: number[]): Value {
    return this.op1("Transpose", [x], { perm });
  }
  /** Broadcasts `x` to a runtime `shape`, declared `as`. */
  expand(x: Value, shape: Value, as: Shape | null): Value {
    return this.op1("Expand", [x, shape], {}, { types: [{ dtype: x.dtype, shape: as }] });
  }
  unsqueeze(x: Value, axes: number[]): Value {
    return this.op1("Unsqueeze", [x, this.constant(axes)]);
  }
  squeeze(x: Value, axes: number[]): Value {
    return this.op1("Squeeze", [x, this.constant(axes)]);
  }
  concat(xs: Value[], axis: number): Value {
    return this.op1("Concat", xs, { axis });
  }
  slice(x: Value, starts: number[], ends: number[], axes: number[], steps?: number[]): Value {
    const ins = [x, this.constant(starts), this.constant(ends), this.constant(axes)];
    if (steps) ins.push(this.constant(steps));
    return this.op1("Slice", ins);
  }
  gather(data: Value, indices: Value, axis = 0): Value {
    return this.op1("Gather", [data, indices], { axis });
  }
  reduceMean(x: Value, axes: number[], keepdims = true): Value {
    return this.op1("ReduceMean", [x, this.constant(axes)], { keepdims: keepdims ? 1 : 0 });
  }
  reduceSum(x: Value, axes: number[], keepdims = true): Value {
    return this.op1("ReduceSum", [x, this.constant(axes)], { keepdims: keepdims ? 1 : 0 });
  }
  softmax(x: Value, axis = -1): Value {
    return this.op1("Softmax", [x], { axis });
  }
  logSoftmax(x: Value, axis = -1): Value {
    return this.op1("LogSoftmax", [x], { axis });
  }
  /** Element count, an int64 scalar. */
  size(x: Value): Value {
    return this.op1("Size", [x]);
  }
  /** Writes `updates` into `data` at `indices` (reduction "add": repeated indices accumulate). */
  scatterND(data: Value, indices: Value, updates: Value, reduction?: "add"): Value {
    return this.op1("ScatterND", [data, indices, updates], { reduction });
  }
  where(cond: Value, a: Value, b: Value): Value {
    return this.op1("Where", [cond, a, b]);
  }
  /**
   * y = x · Wᵀ (+ bias) for x [..., in] and W [out, in] (HF layout). ORT fuses
   * MatMul(x, Transpose(W)) into one transB matmul, so W is never copied.
   */
  linear(x: Value, w: Value, bias?: Value): Value {
    const y = this.matmul(x, this.transpose(w, [1, 0]));
    return bias ? this.add(y, bias) : y;
  }
  shapeOf(x: Value): Value {
    return this.op1("Shape", [x]);
  }
}
