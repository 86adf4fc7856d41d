/**
 * Gradient checks for src/onnx/autodiff.ts: every rule against central finite
 * differences in float64 (loss = sum(f(x) · R) with a fixed projection R),
 * and the same graph in float32 to prove ORT CPU runs every emitted op there too.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import type { ModelConfig } from "../src/model/config.ts";
import { buildDecoder, type ComputeDType } from "../src/model/decoder_graph.ts";
import { Rng } from "../src/model/rng.ts";
import { addBackward } from "../src/onnx/autodiff.ts";
import { float, GraphBuilder } from "../src/onnx/builder.ts";
import type { DType, Shape, Value } from "../src/onnx/ir.ts";
import { linearCrossEntropy, softmaxCrossEntropy } from "../src/onnx/losses.ts";
import { serializeModel } from "../src/onnx/writer.ts";
import { ort, type OrtSession } from "../src/runtime/ort.ts";
import { randomModel, tinyConfig } from "./helpers/random_model.ts";
import { referenceForward } from "./reference/forward.ts";

type Kind = "normal" | "positive" | "nonzero" | "int" | "bool";

interface InputSpec {
  name: string;
  /** Declared shape (may be symbolic). */
  shape: Shape;
  /** Concrete shape fed at runtime. */
  dims: number[];
  kind?: Kind;
  /** Fixed data (ints, bools, or floats). */
  values?: number[];
  /** Differentiate with respect to it (default: float inputs). */
  grad?: boolean;
}

interface Case {
  name: string;
  inputs: InputSpec[];
  build: (g: GraphBuilder, x: Record<string, Value>, dt: DType) => Value;
  rtol?: number;
  h?: number;
}

const FLOAT = (k: Kind | undefined) => k !== "int" && k !== "bool";

function inputData(c: Case, spec: InputSpec): number[] {
  if (spec.values) return spec.values;
  const n = spec.dims.reduce((a, b) => a * b, 1);
  const rng = new Rng(11, `${c.name}/${spec.name}`);
  return Array.from({ length: n }, () => {
    switch (spec.kind ?? "normal") {
      case "positive":
        return 0.5 + rng.nextFloat();
      case "nonzero": {
        const v = rng.normal();
        return Math.sign(v || 1) * (0.2 + Math.abs(v));
      }
      case "int":
        return rng.nextInt(4);
      case "bool":
        return rng.nextFloat() < 0.6 ? 1 : 0;
      default:
        return rng.normal();
    }
  });
}

function tensor(spec: InputSpec, data: number[], dt: DType): ort.Tensor {
  switch (spec.kind) {
    case "int":
      return new ort.Tensor("int64", BigInt64Array.from(data.map(BigInt)), spec.dims);
    case "bool":
      return new ort.Tensor("bool", Uint8Array.from(data), spec.dims);
    default:
      return dt === "float64"
        ? new ort.Tensor("float64", Float64Array.from(data), spec.dims)
        : new ort.Tensor("float32", Float32Array.from(data), spec.dims);
  }
}

/** sum(y · R), R = sin(0.731·i + 0.4) over y's flat index, computed in float64 then cast. */
function project(g: GraphBuilder, y: Value): Value {
  const n = g.op1("Size", [y]);
  const iota = g.cast(g.op1("Range", [g.constant(0, "int64", []), n, g.constant(1, "int64", [])]), "float64");
  const r = g.op1("Sin", [g.add(g.mul(iota, g.scalar(0.731, "float64")), g.scalar(0.4, "float64"))]);
  const proj = g.op1("Reshape", [g.cast(r, y.dtype), g.shapeOf(y)], {}, {
    types: [{ dtype: y.dtype, shape: y.shape }],
  });
  return g.op1("ReduceSum", [g.mul(y, proj)], { keepdims: 0 });
}

interface Built {
  forward: OrtSession;
  full: OrtSession;
  wrt: InputSpec[];
}

async function build(c: Case, dt: DType): Promise<Built> {
  const g = new GraphBuilder(c.name);
  const x: Record<string, Value> = {};
  for (const s of c.inputs) {
    const dtype: DType = s.kind === "int" ? "int64" : s.kind === "bool" ? "bool" : dt;
    x[s.name] = g.input(s.name, dtype, s.shape);
  }
  const loss = g.output(project(g, c.build(g, x, dt)), "loss");
  // The forward-only model is serialized before the backward nodes exist.
  const forward = await ort.InferenceSession.create(await serializeModel(g.build()));
  const wrt = c.inputs.filter((s) => s.grad ?? FLOAT(s.kind));
  const { grads } = addBackward(g, loss, wrt.map((s) => x[s.name]));
  for (const s of wrt) {
    const d = grads.get(s.name)!;
    assert.equal(d.dtype, dt);
    if (d.shape) assert.deepEqual(d.shape, s.shape, `${s.name}: gradient shape`);
    g.output(d, `grad_${s.name}`);
  }
  const full = await ort.InferenceSession.create(await serializeModel(g.build()));
  return { forward, full, wrt };
}

function feeds(c: Case, data: Map<string, number[]>, dt: DType): Record<string, ort.Tensor> {
  return Object.fromEntries(c.inputs.map((s) => [s.name, tensor(s, data.get(s.name)!, dt)]));
}

const MAX_ENTRIES = 40;

async function gradCheck(c: Case): Promise<void> {
  const data = new Map(c.inputs.map((s) => [s.name, inputData(c, s)]));
  const f64 = await build(c, "float64");
  const out = await f64.full.run(feeds(c, data, "float64"));
  const h = c.h ?? 1e-5, rtol = c.rtol ?? 1e-6;
  const loss = async (d: Map<string, number[]>) => Number((await f64.forward.run(feeds(c, d, "float64"))).loss.data[0]);
  for (const s of f64.wrt) {
    const grad = Array.from(out[`grad_${s.name}`].data as Float64Array);
    const base = data.get(s.name)!;
    assert.equal(grad.length, base.length, `${c.name}: ${s.name} gradient size`);
    // Every entry of small tensors, an even sample of bigger ones.
    const stride = Math.max(1, Math.ceil(base.length / MAX_ENTRIES));
    const fd: [number, number][] = [];
    for (let i = 0; i < base.length; i += stride) {
      const at = (delta: number) => new Map(data).set(s.name, base.map((v, j) => j === i ? v + delta : v));
      fd.push([i, (await loss(at(h)) - await loss(at(-h))) / (2 * h)]);
    }
    const big = Math.max(...fd.map(([, v]) => Math.abs(v)));
    for (const [i, expected] of fd) {
      const scale = Math.max(Math.abs(expected), 1e-3 * big, 1e-9);
      const err = Math.abs(grad[i] - expected) / scale;
      assert.ok(err < rtol, `${c.name}: d/d${s.name}[${i}] = ${grad[i]}, finite difference ${expected} (rel ${err})`);
    }
  }
  // float32: the same graph must run, with gradients close to the float64 ones.
  const f32 = await build(c, "float32");
  const out32 = await f32.full.run(feeds(c, data, "float32"));
  for (const s of f32.wrt) {
    const g64 = out[`grad_${s.name}`].data as Float64Array;
    const g32 = out32[`grad_${s.name}`].data as Float32Array;
    const big = Math.max(1e-6, ...Array.from(g64, Math.abs));
    const err = Math.max(...Array.from(g32, (v, i) => Math.abs(v - g64[i]))) / big;
    assert.ok(err < 1e-3, `${c.name}: float32 gradient of ${s.name} off by ${err}`);
  }
}

// ---- cases ------------------------------------------------------------------------------------

const f = (name: string, shape: Shape, dims: number[], kind: Kind = "normal"): InputSpec => ({
  name,
  shape,
  dims,
  kind,
});
const ints = (name: string, dims: number[], values: number[], shape: Shape = dims): InputSpec => ({
  name,
  shape,
  dims,
  kind: "int",
  values,
});

const unaryCase = (op: string, kind: Kind = "normal"): Case => ({
  name: `${op}`,
  inputs: [f("x", ["batch", 5], [2, 5], kind)],
  build: (g, { x }) => g.op1(op, [x]),
});

const elementwise: Case[] = [
  {
    name: "Add: bias [H] + x [batch, seq, H]",
    inputs: [f("x", ["batch", "seq", 4], [2, 3, 4]), f("bias", [4], [4])],
    build: (g, { x, bias }) => g.add(x, bias),
  },
  {
    name: "Add: scalar operand",
    inputs: [f("s", [], []), f("x", [3, 4], [3, 4])],
    build: (g, { s, x }) => g.add(s, x),
  },
  {
    name: "Sub: both operands broadcast",
    inputs: [f("a", [2, 1, 3], [2, 1, 3]), f("b", [4, 1], [4, 1])],
    build: (g, { a, b }) => g.sub(a, b),
  },
  {
    name: "Mul: [batch, 1, seq, seq] operand",
    inputs: [f("a", ["batch", 1, "seq", "seq"], [2, 1, 3, 3]), f("b", ["batch", 2, "seq", "seq"], [2, 2, 3, 3])],
    build: (g, { a, b }) => g.mul(a, b),
  },
  {
    name: "Mul: symbolic dim that is 1 at runtime (runtime reduction axes)",
    inputs: [f("a", ["n", 4], [1, 4]), f("b", [3, 4], [3, 4])],
    build: (g, { a, b }) => g.mul(a, b),
  },
  {
    name: "Mul: symbolic dim that is not 1 at runtime",
    inputs: [f("a", ["n", 4], [3, 4]), f("b", [3, 4], [3, 4])],
    build: (g, { a, b }) => g.mul(a, b),
  },
  {
    name: "Mul: unknown ranks (fully runtime unbroadcast)",
    inputs: [f("a", [2, 3], [2, 3]), f("b", [3], [3])],
    build: (g, { a, b }) => {
      const hide = (v: Value) => g.op1("Identity", [v], {}, { types: [{ dtype: v.dtype, shape: null }] });
      return g.mul(hide(a), hide(b));
    },
  },
  {
    name: "Div: broadcast divisor",
    inputs: [f("a", [3, 4], [3, 4]), f("b", [4], [4], "positive")],
    build: (g, { a, b }) => g.div(a, b),
  },
  {
    name: "Pow: constant exponent 2.5",
    inputs: [f("x", ["batch", 4], [3, 4], "positive")],
    build: (g, { x }, dt) => g.op1("Pow", [x, g.scalar(2.5, dt)]),
  },
  {
    name: "Pow: constant exponent 2",
    inputs: [f("x", [3, 4], [3, 4])],
    build: (g, { x }, dt) => g.op1("Pow", [x, g.scalar(2, dt)]),
  },
  {
    name: "Pow: tensor exponent (both gradients)",
    inputs: [f("x", [3, 4], [3, 4], "positive"), f("e", [4], [4])],
    build: (g, { x, e }) => g.op1("Pow", [x, e]),
  },
  unaryCase("Neg"),
  unaryCase("Sqrt", "positive"),
  unaryCase("Reciprocal", "positive"),
  unaryCase("Exp"),
  unaryCase("Log", "positive"),
  unaryCase("Sigmoid"),
  unaryCase("Tanh"),
  unaryCase("Relu", "nonzero"),
  unaryCase("Abs", "nonzero"),
  unaryCase("Cos"),
  unaryCase("Sin"),
  unaryCase("Identity"),
  {
    name: "Sign: zero gradient (x·sign(x) = |x|)",
    inputs: [f("x", [6], [6], "nonzero")],
    build: (g, { x }) => g.mul(x, g.op1("Sign", [x])),
  },
  {
    name: "Max: broadcast",
    inputs: [f("a", [3, 4], [3, 4]), f("b", [4], [4])],
    build: (g, { a, b }) => g.op1("Max", [a, b]),
  },
  {
    name: "Min: three inputs with a scalar",
    inputs: [f("a", [3, 4], [3, 4]), f("b", [3, 4], [3, 4]), f("c", [], [])],
    build: (g, { a, b, c }) => g.op1("Min", [a, b, c]),
  },
  {
    name: "Sum: three broadcast inputs",
    inputs: [f("a", [2, 3], [2, 3]), f("b", [3], [3]), f("c", [2, 1], [2, 1])],
    build: (g, { a, b, c }) => g.op1("Sum", [a, b, c]),
  },
  {
    name: "Cast: float64 -> float32 -> float64 (float32 rounding: rtol 1e-4, h 1e-2)",
    inputs: [f("x", [3, 4], [3, 4])],
    build: (g, { x }, dt) =>
      g.cast(
        g.mul(
          g.cast(x, dt === "float64" ? "float32" : "float64"),
          g.scalar(1.5, dt === "float64" ? "float32" : "float64"),
        ),
        dt,
      ),
    rtol: 1e-4,
    h: 1e-2,
  },
  {
    name: "fan-out: x used four times",
    inputs: [f("x", ["batch", 3], [2, 3])],
    build: (g, { x }) => g.add(g.add(g.mul(x, x), g.mul(g.op1("Sin", [x]), x)), x),
  },
];

const reductions: Case[] = [
  {
    name: "Softmax axis -1",
    inputs: [f("x", ["batch", 3, 5], [2, 3, 5])],
    build: (g, { x }) => g.softmax(x, -1),
  },
  {
    name: "Softmax axis 1",
    inputs: [f("x", [2, 3, 5], [2, 3, 5])],
    build: (g, { x }) => g.softmax(x, 1),
  },
  {
    name: "LogSoftmax axis -1",
    inputs: [f("x", ["batch", 5], [3, 5])],
    build: (g, { x }) => g.op1("LogSoftmax", [x], { axis: -1 }),
  },
  {
    name: "LogSoftmax axis 0",
    inputs: [f("x", [4, 3], [4, 3])],
    build: (g, { x }) => g.op1("LogSoftmax", [x], { axis: 0 }),
  },
  {
    name: "ReduceSum keepdims=1 axes [1]",
    inputs: [f("x", [2, 3, 4], [2, 3, 4])],
    build: (g, { x }) => g.reduceSum(x, [1], true),
  },
  {
    name: "ReduceSum keepdims=0 axes [0, -1]",
    inputs: [f("x", ["batch", 3, 4], [2, 3, 4])],
    build: (g, { x }) => g.reduceSum(x, [0, -1], false),
  },
  {
    name: "ReduceSum over all axes, keepdims=0",
    inputs: [f("x", [2, 3], [2, 3])],
    build: (g, { x }) => g.op1("ReduceSum", [x], { keepdims: 0 }),
  },
  {
    name: "ReduceMean axes [-1] on [batch, seq, H]",
    inputs: [f("x", ["batch", "seq", 4], [2, 3, 4])],
    build: (g, { x }) => g.reduceMean(x, [-1]),
  },
  {
    name: "ReduceMean over symbolic axes (runtime count)",
    inputs: [f("x", ["batch", "seq", 4], [2, 3, 4])],
    build: (g, { x }) => g.reduceMean(x, [0, 1], false),
  },
];

const linear: Case[] = [
  {
    name: "MatMul 2-D",
    inputs: [f("a", [3, 4], [3, 4]), f("b", [4, 5], [4, 5])],
    build: (g, { a, b }) => g.matmul(a, b),
  },
  {
    name: "MatMul batched",
    inputs: [f("a", [2, 3, 4], [2, 3, 4]), f("b", [2, 4, 5], [2, 4, 5])],
    build: (g, { a, b }) => g.matmul(a, b),
  },
  {
    name: "MatMul broadcast batch dims",
    inputs: [f("a", [2, 1, 3, 4], [2, 1, 3, 4]), f("b", [3, 4, 5], [3, 4, 5])],
    build: (g, { a, b }) => g.matmul(a, b),
  },
  {
    name: "MatMul shared weight [batch, seq, K] @ [K, N]",
    inputs: [f("a", ["batch", "seq", 4], [2, 3, 4]), f("b", [4, 5], [4, 5])],
    build: (g, { a, b }) => g.matmul(a, b),
  },
  {
    name: "MatMul shared weight with symbolic K (runtime reshape)",
    inputs: [f("a", ["batch", "k"], [3, 4]), f("w", ["k", 5], [4, 5])],
    build: (g, { a, w }) => g.matmul(g.unsqueeze(a, [0]), w),
  },
  {
    name: "linear: x [batch, seq, in] · Wᵀ + bias",
    inputs: [f("x", ["batch", "seq", 4], [2, 3, 4]), f("w", [5, 4], [5, 4]), f("bias", [5], [5])],
    build: (g, { x, w, bias }) => g.linear(x, w, bias),
  },
  {
    name: "MatMul 1-D @ 2-D",
    inputs: [f("a", [4], [4]), f("b", [4, 5], [4, 5])],
    build: (g, { a, b }) => g.matmul(a, b),
  },
  {
    name: "MatMul 3-D @ 1-D",
    inputs: [f("a", [2, 3, 4], [2, 3, 4]), f("b", [4], [4])],
    build: (g, { a, b }) => g.matmul(a, b),
  },
  {
    name: "MatMul 1-D @ 1-D",
    inputs: [f("a", [4], [4]), f("b", [4], [4])],
    build: (g, { a, b }) => g.matmul(a, b),
  },
  ...[[0, 0], [0, 1], [1, 0], [1, 1]].map(([tA, tB]): Case => ({
    name: `Gemm transA=${tA} transB=${tB}, alpha, beta, C [N]`,
    inputs: [
      f("a", tA ? [4, 3] : [3, 4], tA ? [4, 3] : [3, 4]),
      f("b", tB ? [5, 4] : [4, 5], tB ? [5, 4] : [4, 5]),
      f("c", [5], [5]),
    ],
    build: (g, { a, b, c }, dt) =>
      g.op1("Gemm", [a, b, c], { transA: tA, transB: tB, alpha: float(0.7), beta: float(1.3) }, {
        types: [{ dtype: dt, shape: [3, 5] }],
      }),
  })),
  {
    name: "Gemm with C [M, 1]",
    inputs: [f("a", [3, 4], [3, 4]), f("b", [4, 5], [4, 5]), f("c", [3, 1], [3, 1])],
    build: (g, { a, b, c }) => g.op1("Gemm", [a, b, c]),
  },
  {
    name: "Gemm without C",
    inputs: [f("a", [3, 4], [3, 4]), f("b", [5, 4], [5, 4])],
    build: (g, { a, b }) => g.op1("Gemm", [a, b], { transB: 1 }),
  },
];

const indexing: Case[] = [
  {
    name: "Gather axis 0 (embedding) with repeated indices",
    inputs: [f("table", [5, 3], [5, 3]), ints("ids", [2, 3], [1, 3, 1, 0, 1, 4], ["batch", "seq"])],
    build: (g, { table, ids }) => g.gather(table, ids),
  },
  {
    name: "Gather axis 1 with negative and repeated indices",
    inputs: [f("x", [3, 5, 2], [3, 5, 2]), ints("idx", [2, 2], [4, -1, 0, 2])],
    build: (g, { x, idx }) => g.gather(x, idx, 1),
  },
  {
    name: "Gather axis 1 of a symbolic dim (runtime shapes)",
    inputs: [f("x", [2, "n", 3], [2, 4, 3]), ints("idx", [3], [3, -4, 3], ["m"])],
    build: (g, { x, idx }) => g.gather(x, idx, 1),
  },
  {
    name: "Gather scalar index, axis -1",
    inputs: [f("x", ["batch", 4], [2, 4]), ints("idx", [], [2])],
    build: (g, { x, idx }) => g.gather(x, idx, -1),
  },
  {
    name: "GatherElements axis 1 with repeated indices",
    inputs: [f("x", [3, 4], [3, 4]), ints("idx", [3, 2], [0, 0, 3, 1, -1, 3])],
    build: (g, { x, idx }) => g.op1("GatherElements", [x, idx], { axis: 1 }),
  },
  {
    name: "GatherElements axis 0",
    inputs: [f("x", [3, 4], [3, 4]), ints("idx", [2, 4], [0, 2, 2, 1, 0, 0, 1, 2])],
    build: (g, { x, idx }) => g.op1("GatherElements", [x, idx], { axis: 0 }),
  },
  {
    name: "Slice unit steps, static bounds (Pad)",
    inputs: [f("x", ["batch", 6, 4], [2, 6, 4])],
    build: (g, { x }) => g.slice(x, [1, -3], [-1, 100], [1, 2]),
  },
  {
    name: "Slice with steps 2 and -1",
    inputs: [f("x", [5, 6], [5, 6])],
    build: (g, { x }) => g.slice(x, [0, 5], [100, 0], [0, 1], [2, -1]),
  },
  {
    name: "Slice along a symbolic axis",
    inputs: [f("x", ["batch", "seq", 3], [2, 5, 3])],
    build: (g, { x }) => g.slice(x, [1], [-1], [1]),
  },
  {
    name: "Where: [batch, 1, seq, seq] condition, scalar branch",
    inputs: [
      f("cond", ["batch", 1, "seq", "seq"], [2, 1, 3, 3], "bool"),
      f("a", ["batch", 2, "seq", "seq"], [2, 2, 3, 3]),
      f("b", [], []),
    ],
    build: (g, { cond, a, b }) => g.where(cond, a, b),
  },
  {
    name: "Where: broadcast branches",
    inputs: [f("cond", [3, 4], [3, 4], "bool"), f("a", [4], [4]), f("b", [3, 1], [3, 1])],
    build: (g, { cond, a, b }) => g.where(cond, a, b),
  },
];

const shaping: Case[] = [
  {
    name: "Reshape with 0 / -1 entries",
    inputs: [f("x", ["batch", 3, 4], [2, 3, 4])],
    build: (g, { x }) => g.reshape(x, [0, -1, 2]),
  },
  {
    name: "Transpose",
    inputs: [f("x", ["batch", 3, 4], [2, 3, 4])],
    build: (g, { x }) => g.transpose(x, [2, 0, 1]),
  },
  {
    name: "Unsqueeze and Squeeze",
    inputs: [f("x", [3, 1, 4], [3, 1, 4])],
    build: (g, { x }) => g.unsqueeze(g.squeeze(x, [1]), [0, -1]),
  },
  {
    name: "Flatten",
    inputs: [f("x", [2, 3, 4], [2, 3, 4])],
    build: (g, { x }, dt) => g.op1("Flatten", [x], { axis: 1 }, { types: [{ dtype: dt, shape: [2, 12] }] }),
  },
  {
    name: "Concat static sizes, an input used twice",
    inputs: [f("a", [2, 3], [2, 3]), f("b", [2, 1], [2, 1])],
    build: (g, { a, b }) => g.concat([a, b, a], 1),
  },
  {
    name: "Concat along symbolic axis (runtime split sizes)",
    inputs: [f("a", ["batch", "s1", 2], [2, 3, 2]), f("b", ["batch", "s2", 2], [2, 2, 2])],
    build: (g, { a, b }) => g.concat([a, b], 1),
  },
  {
    name: "Split, one output unused",
    inputs: [f("x", [3, 6], [3, 6])],
    build: (g, { x }, dt) => {
      const [p, , r] = g.op("Split", [x, g.constant([1, 2, 3])], { axis: 1 }, {
        types: [{ dtype: dt, shape: [3, 1] }, { dtype: dt, shape: [3, 2] }, { dtype: dt, shape: [3, 3] }],
      });
      return g.mul(p, r);
    },
  },
  {
    name: "Expand [3, 1] -> [2, 3, 4]",
    inputs: [f("x", [3, 1], [3, 1])],
    build: (g, { x }) => g.op1("Expand", [x, g.constant([2, 3, 4])]),
  },
];

// ---- composites (as the decoder builds them) -------------------------------------------------

const rmsNorm = (g: GraphBuilder, x: Value, w: Value, dt: DType): Value => {
  const variance = g.reduceMean(g.mul(x, x), [-1]);
  const inv = g.op1("Reciprocal", [g.sqrt(g.add(variance, g.scalar(1e-5, dt)))]);
  return g.mul(g.mul(x, inv), w);
};

const composites: Case[] = [
  {
    name: "RMSNorm [batch, seq, H]",
    inputs: [f("x", ["batch", "seq", 6], [2, 3, 6]), f("w", [6], [6])],
    build: (g, { x, w }, dt) => rmsNorm(g, x, w, dt),
  },
  {
    name: "rotary embedding (Slice/Neg/Concat, Cos/Sin of positions)",
    inputs: [f("x", ["batch", 2, "seq", 4], [2, 2, 3, 4]), f("pos", ["batch", "seq"], [2, 3])],
    build: (g, { x, pos }, dt) => {
      const invFreq = g.constant([1, 0.1], dt, [2]);
      const freqs = g.mul(g.unsqueeze(pos, [-1]), invFreq);
      const emb = g.concat([freqs, freqs], -1);
      const cos = g.unsqueeze(g.op1("Cos", [emb]), [1]), sin = g.unsqueeze(g.op1("Sin", [emb]), [1]);
      const rotated = g.concat([g.neg(g.slice(x, [2], [4], [-1])), g.slice(x, [0], [2], [-1])], -1);
      return g.add(g.mul(x, cos), g.mul(rotated, sin));
    },
  },
  {
    name: "attention block: QKᵀ·scale + mask bias, Softmax, ·V",
    inputs: [
      f("q", ["batch", 2, "seq", 4], [2, 2, 3, 4]),
      f("k", ["batch", 2, "seq", 4], [2, 2, 3, 4]),
      f("v", ["batch", 2, "seq", 4], [2, 2, 3, 4]),
      // Causal, plus a padded first key in batch row 1.
      {
        ...f("allowed", ["batch", 1, "seq", "seq"], [2, 1, 3, 3], "bool"),
        values: [1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1],
      },
    ],
    build: (g, { q, k, v, allowed }, dt) => {
      const bias = g.where(allowed, g.scalar(0, dt), g.scalar(-3.4e38, dt));
      const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 1, 3, 2])), g.scalar(0.5, dt)), bias);
      return g.matmul(g.softmax(scores, -1), v);
    },
  },
  {
    name: "softmaxCrossEntropy (weighted mean, ignored -100 label)",
    inputs: [
      f("logits", ["n", 5], [4, 5]),
      ints("labels", [4], [2, 4, -100, 2], ["n"]),
      { ...f("weights", ["n"], [4]), values: [1, 0.5, 0, 2] },
    ],
    build: (g, { logits, labels, weights }) => softmaxCrossEntropy(g, logits, labels, weights),
  },
];

for (const [group, cases] of Object.entries({ elementwise, reductions, linear, indexing, shaping, composites })) {
  Deno.test(`autodiff rules match finite differences: ${group}`, async (t) => {
    for (const c of cases) await t.step(c.name, () => gradCheck(c));
  });
}

Deno.test("Max/Min ties split the gradient evenly", async () => {
  const g = new GraphBuilder();
  const a = g.input("a", "float64", [3]), b = g.input("b", "float64", [3]);
  const loss = g.op1("ReduceSum", [g.op1("Max", [a, b])], { keepdims: 0 });
  const { grads } = addBackward(g, loss, [a, b]);
  g.output(grads.get("a")!, "da");
  g.output(grads.get("b")!, "db");
  const s = await ort.InferenceSession.create(await serializeModel(g.build()));
  const out = await s.run({
    a: new ort.Tensor("float64", Float64Array.from([1, 2, 3]), [3]),
    b: new ort.Tensor("float64", Float64Array.from([1, 5, 0]), [3]),
  });
  assert.deepEqual(Array.from(out.da.data as Float64Array), [0.5, 0, 1]);
  assert.deepEqual(Array.from(out.db.data as Float64Array), [0.5, 1, 0]);
});

Deno.test("values off the loss path get zeros; non-float wrt is rejected", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", "float64", ["n"]), unused = g.input("unused", "float64", [2, 2]);
  const loss = g.op1("ReduceSum", [g.mul(x, x)], { keepdims: 0 });
  const { grads } = addBackward(g, loss, [x, unused]);
  g.output(grads.get("unused")!, "du");
  const s = await ort.InferenceSession.create(await serializeModel(g.build()));
  const out = await s.run({
    x: new ort.Tensor("float64", Float64Array.from([1, 2]), [2]),
    unused: new ort.Tensor("float64", new Float64Array(4).fill(3), [2, 2]),
  });
  assert.deepEqual(Array.from(out.du.data as Float64Array), [0, 0, 0, 0]);
  assert.throws(() => addBackward(g, loss, [g.input("ids", "int64", [2])]), /int64/);
});

Deno.test("seeds of a non-scalar loss, and gradients wrt an intermediate value", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", "float64", [3]), seed = g.input("seed", "float64", [3]);
  const h = g.mul(x, x);
  const y = g.mul(h, g.scalar(2, "float64")); // y = 2x², non-scalar
  const seeded = addBackward(g, y, [x, h], { seed });
  const ones = addBackward(g, y, [x]);
  g.output(seeded.grads.get("x")!, "dx");
  g.output(seeded.grads.get(h.name)!, "dh");
  g.output(ones.grads.get("x")!, "dx1");
  const s = await ort.InferenceSession.create(await serializeModel(g.build()));
  const out = await s.run({
    x: new ort.Tensor("float64", Float64Array.from([1, -2, 3]), [3]),
    seed: new ort.Tensor("float64", Float64Array.from([1, 10, 100]), [3]),
  });
  assert.deepEqual(Array.from(out.dx.data as Float64Array), [4, -80, 1200]);
  assert.deepEqual(Array.from(out.dh.data as Float64Array), [2, 20, 200]);
  assert.deepEqual(Array.from(out.dx1.data as Float64Array), [4, -8, 12]);
});

Deno.test("embedding gradient accumulates many repeated indices (ScatterND add)", async () => {
  const V = 7, H = 16, N = 4096;
  const g = new GraphBuilder();
  const table = g.input("table", "float32", [V, H]), ids = g.input("ids", "int64", [N]);
  const loss = g.op1("ReduceSum", [g.gather(table, ids)], { keepdims: 0 });
  const { grads } = addBackward(g, loss, [table]);
  g.output(grads.get("table")!, "d");
  const s = await ort.InferenceSession.create(await serializeModel(g.build()));
  const idv = Array.from({ length: N }, (_, i) => (i * 5) % V);
  const out = await s.run({
    table: new ort.Tensor("float32", new Float32Array(V * H), [V, H]),
    ids: new ort.Tensor("int64", BigInt64Array.from(idv.map(BigInt)), [N]),
  });
  const d = out.d.data as Float32Array;
  for (let v = 0; v < V; v++) {
    const count = idv.filter((i) => i === v).length;
    for (let j = 0; j < H; j++) assert.equal(d[v * H + j], count);
  }
});

Deno.test("a recomputed region: the backward pass reads a copy tied to its gradient, not the forward values", async () => {
  const build = (recompute: boolean) => {
    const g = new GraphBuilder();
    const x = g.input("x", "float64", ["n", 4]), w = g.input("w", "float64", [4, 4]);
    const h = g.mul(x, x);
    const body = () => {
      const y = g.op1("Tanh", [g.matmul(h, w)]);
      return g.mul(y, g.cos(y));
    };
    const out = recompute ? g.recomputed("block", body) : body();
    const loss = g.op1("ReduceSum", [g.mul(out, out)], { keepdims: 0 });
    const { grads } = addBackward(g, loss, [x, w]);
    g.output(grads.get("x")!, "dx");
    g.output(grads.get("w")!, "dw");
    return g;
  };
  const g = build(true);
  const region = g.recomputeRegions[0];
  // The region's intermediate values: its outputs minus what forward nodes after it read (the region output).
  const inside = new Set(g.nodes.slice(region.start, region.end).flatMap((n) => n.outputs));
  const backward = g.nodes.slice(region.end).filter((n) => n.name.startsWith("/grad/"));
  for (const n of g.nodes.slice(region.end)) {
    if (!n.name.startsWith("/grad/")) n.inputs.forEach((i) => inside.delete(i));
  }
  assert.ok(inside.size >= 3);
  for (const n of backward) {
    for (const i of n.inputs) assert.ok(!inside.has(i), `${n.name} reads the region's forward value ${i}`);
  }
  const feeds = {
    x: new ort.Tensor("float64", Float64Array.from({ length: 12 }, (_, i) => Math.sin(i + 1)), [3, 4]),
    w: new ort.Tensor("float64", Float64Array.from({ length: 16 }, (_, i) => Math.cos(2 * i)), [4, 4]),
  };
  const run = async (b: GraphBuilder) => {
    const s = await ort.InferenceSession.create(await serializeModel(b.build()));
    const out = await s.run(feeds);
    await s.release();
    return [out.dx.data as Float64Array, out.dw.data as Float64Array];
  };
  // The copy computes what the forward pass did (x + −0 = x): the same gradients, bit for bit.
  assert.deepEqual(await run(g), await run(build(false)));
});

for (const chunks of [1, 4]) {
  Deno.test(`linearCrossEntropy (${chunks} slice${chunks > 1 ? "s, rows padded" : ""}): loss, count, hits and d/dhidden equal the projection + softmaxCrossEntropy under autodiff`, async () => {
    const N = 6, D = 5, V = 7;
    const g = new GraphBuilder();
    const hidden = g.input("hidden", "float64", ["n", D]), weight = g.input("weight", "float64", [V, D]);
    const labels = g.input("labels", "int64", ["n"]), weights = g.input("weights", "float64", ["n"]);
    const fused = linearCrossEntropy(g, hidden, weight, labels, weights, { gradient: true, chunks });
    g.output(fused.loss, "loss");
    g.output(fused.count, "count");
    g.output(fused.correct, "correct");
    g.output(fused.dHidden!, "dh");
    const logits = g.matmul(hidden, g.transpose(weight, [1, 0]));
    const reference = softmaxCrossEntropy(g, logits, labels, weights);
    g.output(reference, "ref_loss");
    g.output(addBackward(g, reference, [hidden]).grads.get("hidden")!, "ref_dh");
    const rng = new Rng(3, "linearCrossEntropy");
    const h = Float64Array.from({ length: N * D }, () => rng.normal());
    const w = Float64Array.from({ length: V * D }, () => rng.normal());
    // Row 2 is masked with a negative label; row 4's label is the argmax (a hit).
    const lbl = [1, 6, -100, 3, 0, 2];
    const argmax = (r: number) => {
      const z = Array.from({ length: V }, (_, v) => Array.from({ length: D }, (_, d) => h[r * D + d] * w[v * D + d]));
      const sums = z.map((row) => row.reduce((a, b) => a + b, 0));
      return sums.indexOf(Math.max(...sums));
    };
    lbl[4] = argmax(4);
    const wts = [1, 1, 0, 0.5, 1, 2];
    const s = await ort.InferenceSession.create(await serializeModel(g.build()));
    const out = await s.run({
      hidden: new ort.Tensor("float64", h, [N, D]),
      weight: new ort.Tensor("float64", w, [V, D]),
      labels: new ort.Tensor("int64", BigInt64Array.from(lbl.map(BigInt)), [N]),
      weights: new ort.Tensor("float64", Float64Array.from(wts), [N]),
    });
    assert.ok(Math.abs(Number(out.loss.data[0]) - Number(out.ref_loss.data[0])) < 1e-12);
    assert.equal(Number(out.count.data[0]), 5.5);
    const hits = lbl.map((l, r) => l >= 0 && argmax(r) === l ? wts[r] : 0).reduce((a, b) => a + b, 0);
    assert.equal(Number(out.correct.data[0]), hits);
    assert.ok(hits >= 1);
    const dh = out.dh.data as Float64Array, ref = out.ref_dh.data as Float64Array;
    assert.equal(dh.length, N * D);
    for (let i = 0; i < dh.length; i++) assert.ok(Math.abs(dh[i] - ref[i]) < 1e-12, `dh[${i}] ${dh[i]} vs ${ref[i]}`);
    await s.release();
  });
}

// ---- tiny decoder ------------------------------------------------------------------------------

const DECODERS: Record<string, { config: ModelConfig; checked: string[] }> = {
  llama_gqa_untied: {
    config: tinyConfig({ vocabSize: 23, hiddenSize: 16, intermediateSize: 24, headDim: 4 }),
    checked: [
      "model.embed_tokens.weight",
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.self_attn.k_proj.weight",
      "model.layers.1.mlp.down_proj.weight",
      "model.layers.1.post_attention_layernorm.weight",
      "lm_head.weight",
    ],
  },
  qwen2_bias_tied_sliding: {
    config: tinyConfig({
      vocabSize: 23,
      hiddenSize: 16,
      intermediateSize: 24,
      headDim: 4,
      attentionBias: true,
      tieWordEmbeddings: true,
      slidingWindow: 3,
    }),
    checked: [
      "model.embed_tokens.weight", // used twice: Gather and the tied head
      "model.layers.0.self_attn.v_proj.bias",
      "model.layers.1.self_attn.o_proj.weight",
      "model.layers.0.mlp.gate_proj.weight",
    ],
  },
  qwen3_qk_norm: {
    config: tinyConfig({ vocabSize: 23, hiddenSize: 16, intermediateSize: 24, headDim: 8, qkNorm: true }),
    checked: ["model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_proj.weight", "model.norm.weight"],
  },
};

/**
 * buildDecoder (kvCache false, weights as graph inputs) + softmaxCrossEntropy,
 * gradients checked against central differences of the independent float64
 * reference forward (tests/reference/forward.ts) with the same loss in JS.
 * Tolerance is relative to each tensor's largest gradient: float32 graphs
 * round every op (observed ≤ ~1e-6), and a "float64" buildDecoder still keeps
 * RMSNorm statistics, rotary tables and logits in float32.
 */
for (const [variant, { config, checked }] of Object.entries(DECODERS)) {
  Deno.test(`tiny decoder gradients match finite differences of the float64 reference: ${variant}`, async (t) => {
    const model = randomModel(config, 3);
    const rows = [[3, 17, 5, 9, 1, 20], [4, 4, 11, 0, 22, 7]];
    const B = rows.length, S = rows[0].length, V = config.vocabSize;
    // Next-token labels; the last position of each row is ignored.
    const labels = rows.flatMap((r) => r.map((_, i) => i + 1 < S ? r[i + 1] : -100));
    const weights = labels.map((l) => l < 0 ? 0 : 1);

    const f64 = new Map([...model.tensors].map(([n, t]) => [n, { data: Float64Array.from(t.data), shape: t.shape }]));
    const refLoss = (w: Map<string, { data: Float64Array; shape: number[] }>): number => {
      let total = 0, count = 0;
      rows.forEach((r, b) => {
        const logits = referenceForward(config, (n) => w.get(n)!, r);
        for (let i = 0; i < S; i++) {
          const k = b * S + i;
          if (!weights[k]) continue;
          const row = logits.subarray(i * V, (i + 1) * V);
          const max = Math.max(...row);
          const lse = max + Math.log(row.reduce((acc, v) => acc + Math.exp(v - max), 0));
          total += weights[k] * (lse - row[labels[k]]);
          count += weights[k];
        }
      });
      return total / count;
    };
    const base = refLoss(f64);
    // Finite differences of the reference, shared by both graph dtypes.
    const h = 1e-4;
    const fd = new Map(checked.map((name) => {
      const w = f64.get(name)!;
      const picks = Array.from({ length: 8 }, (_, i) => Math.floor((i + 0.5) * w.data.length / 8));
      return [
        name,
        picks.map((i) => {
          const at = (delta: number) => {
            const data = Float64Array.from(w.data);
            data[i] += delta;
            return refLoss(new Map(f64).set(name, { data, shape: w.shape }));
          };
          return [i, (at(h) - at(-h)) / (2 * h)] as const;
        }),
      ];
    }));

    const steps = [["float32", 2e-5, false], ["float64", 2e-6, false], ["float32", 2e-5, true]] as const;
    for (const [dtype, tol, recompute] of steps) {
      await t.step(`graph dtype ${dtype}${recompute ? ", layers recomputed in the backward pass" : ""}`, async () => {
        const g = new GraphBuilder("train");
        const params = new Map<string, Value>();
        const weight = (name: string): Value => {
          let v = params.get(name);
          if (!v) {
            v = g.input(name, dtype, model.tensors.get(name)!.shape);
            params.set(name, v);
          }
          return v;
        };
        // float64 is outside ComputeDType, but buildDecoder runs with it.
        const dec = buildDecoder(g, config, { dtype: dtype as ComputeDType, kvCache: false, weight, recompute });
        const lbl = g.input("labels", "int64", ["n"]);
        const wts = g.input("weights", "float32", ["n"]);
        const loss = g.output(softmaxCrossEntropy(g, g.reshape(dec.logits!, [-1, V]), lbl, wts), "loss");
        const { grads } = addBackward(g, loss, [...params.values()]);
        for (const name of checked) g.output(grads.get(name)!, `grad:${name}`);
        const session = await ort.InferenceSession.create(await serializeModel(g.build()));
        const feeds: Record<string, ort.Tensor> = {
          input_ids: new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [B, S]),
          attention_mask: new ort.Tensor("int64", new BigInt64Array(B * S).fill(1n), [B, S]),
          position_ids: new ort.Tensor("int64", BigInt64Array.from(rows.flatMap((r) => r.map((_, i) => BigInt(i)))), [
            B,
            S,
          ]),
          labels: new ort.Tensor("int64", BigInt64Array.from(labels.map(BigInt)), [B * S]),
          weights: new ort.Tensor("float32", Float32Array.from(weights), [B * S]),
        };
        for (const [name, v] of params) {
          const data = model.tensors.get(name)!.data;
          feeds[name] = new ort.Tensor(
            dtype,
            dtype === "float64" ? Float64Array.from(data) : data,
            v.shape as number[],
          );
        }
        const out = await session.run(feeds);
        assert.ok(Math.abs(Number(out.loss.data[0]) - base) < 1e-5 * Math.abs(base), "loss matches the reference");
        let worst = 0;
        for (const name of checked) {
          const grad = out[`grad:${name}`].data as Float32Array | Float64Array;
          const big = Math.max(...Array.from(grad, Math.abs));
          for (const [i, expected] of fd.get(name)!) {
            const err = Math.abs(grad[i] - expected) / big;
            worst = Math.max(worst, err);
            assert.ok(err < tol, `${name}[${i}]: ${grad[i]} vs finite difference ${expected} (${err} of the max)`);
          }
        }
        console.log(`  worst gradient error ${worst.toExponential(2)} of each tensor's max |grad|`);
        await session.release();
      });
    }
  });
}
