/**
 * Rewrites of a finished graph for an execution provider that lacks some
 * standard ops, so they do not fall back to the CPU in the middle of a GPU
 * graph (each fallback is a device → host → device round trip and a sync).
 *
 * onnxruntime 1.30's WebGPU provider has no `LogSoftmax` (the training loss),
 * no variadic `Sum` (autodiff's gradient accumulation) and no
 * `ConstantOfShape` (autodiff's zeros, e.g. the [tokens, vocab] buffer the
 * cross-entropy gradient is scattered into, which would be filled on the host
 * and uploaded every step): each becomes the standard ops it is defined by.
 * Values, names and outputs are unchanged; the rewrite is exact up to float
 * rounding (the same max-shifted form the CPU kernel computes).
 */
import type { Attribute, FunctionDef, Graph, Node } from "./ir.ts";

/** A Constant int64 [axis] node, for the axes inputs of the Reduce ops (opset ≥ 18). */
function axesConstant(name: string, axis: number): Node {
  return {
    op: "Constant",
    domain: "",
    name: `${name}/axes_const`,
    inputs: [],
    outputs: [`${name}/axes`],
    attributes: {
      value: { kind: "tensor", value: { dtype: "int64", shape: [1], data: BigInt64Array.of(BigInt(axis)) } },
    },
  };
}

function plain(
  op: string,
  name: string,
  inputs: string[],
  outputs: string[],
  attributes: Record<string, Attribute> = {},
) {
  return { op, domain: "", name, inputs, outputs, attributes } satisfies Node;
}

/** log softmax(x) = (x − max x) − log Σ exp(x − max x), along `axis`. */
function lowerLogSoftmax(node: Node): Node[] {
  const a = node.attributes.axis;
  const axis = a && a.kind === "int" ? a.value : -1;
  const [x] = node.inputs, [y] = node.outputs, n = node.name;
  const keep = { keepdims: { kind: "int", value: 1 } } as Record<string, Attribute>;
  return [
    axesConstant(n, axis),
    plain("ReduceMax", `${n}/max`, [x, `${n}/axes`], [`${n}/max_out`], keep),
    plain("Sub", `${n}/shift`, [x, `${n}/max_out`], [`${n}/shifted`]),
    plain("Exp", `${n}/exp`, [`${n}/shifted`], [`${n}/exp_out`]),
    plain("ReduceSum", `${n}/sum`, [`${n}/exp_out`, `${n}/axes`], [`${n}/sum_out`], keep),
    plain("Log", `${n}/log`, [`${n}/sum_out`], [`${n}/log_out`]),
    plain("Sub", n, [`${n}/shifted`, `${n}/log_out`], [y]),
  ];
}

/** Sum(a, b, c, …) = ((a + b) + c) + … */
function lowerSum(node: Node): Node[] {
  const ins = node.inputs;
  if (ins.length === 1) return [plain("Identity", node.name, ins, node.outputs)];
  const out: Node[] = [];
  let acc = ins[0];
  for (let i = 1; i < ins.length; i++) {
    const last = i === ins.length - 1;
    const result = last ? node.outputs[0] : `${node.name}/partial_${i}`;
    out.push(plain("Add", last ? node.name : `${node.name}/add_${i}`, [acc, ins[i]], [result]));
    acc = result;
  }
  return out;
}

/** ConstantOfShape(shape; value) of a float dtype = Expand(value, shape): filled on the device. */
function lowerConstantOfShape(node: Node): Node[] {
  const value = node.attributes.value;
  if (!value || value.kind !== "tensor" || !["float32", "float16"].includes(value.value.dtype)) return [node];
  const n = node.name;
  return [
    {
      op: "Constant",
      domain: "",
      name: `${n}/value_const`,
      inputs: [],
      outputs: [`${n}/value`],
      attributes: { value },
    },
    plain("Expand", n, [`${n}/value`, node.inputs[0]], node.outputs),
  ];
}

function lowerNodes(nodes: readonly Node[]): Node[] {
  return nodes.flatMap((node) => {
    if (node.domain !== "") return [node];
    if (node.op === "LogSoftmax") return lowerLogSoftmax(node);
    if (node.op === "Sum") return lowerSum(node);
    if (node.op === "ConstantOfShape") return lowerConstantOfShape(node);
    return [node];
  });
}

/** The graph with WebGPU's missing ops replaced (a new Graph; the input is unchanged). */
export function lowerForWebGpu(graph: Graph): Graph {
  const functions: FunctionDef[] = graph.functions.map((f) => ({ ...f, nodes: lowerNodes(f.nodes) }));
  return { ...graph, nodes: lowerNodes(graph.nodes), functions };
}
