/**
 * src/onnx/graph_cost.ts (flops of a graph's products, the activations its
 * backward pass reads) and the symbolic dim algebra of src/onnx/shape.ts
 * that keeps shapes known through reshapes.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { addBackward } from "../src/onnx/autodiff.ts";
import { GraphBuilder } from "../src/onnx/builder.ts";
import { carriedBytes, graphCost, ShapeResolver } from "../src/onnx/graph_cost.ts";
import { addDims, divDims, evalDim, mulDims } from "../src/onnx/shape.ts";
import { lmGraphDims } from "../src/train/activation_memory.ts";
import { buildLmTrainingGraph, lmAdapterSpecs } from "../src/train/lm_training_graph.ts";
import { randomModel, tinyConfig } from "./helpers/random_model.ts";

Deno.test("symbolic dims: canonical products, exact quotients, sums of equal terms, evaluation", () => {
  assert.equal(mulDims("seq", 3), "3*seq");
  assert.equal(mulDims(3, "seq"), "3*seq");
  assert.equal(mulDims("seq", "batch"), "batch*seq");
  assert.equal(mulDims(mulDims("batch", 9), "seq"), "9*batch*seq");
  assert.equal(divDims("9*batch*seq", mulDims("batch", 3)), "3*seq");
  assert.equal(divDims("batch*seq", "batch*seq"), 1);
  assert.equal(divDims("batch", "seq"), null);
  assert.equal(divDims("3*seq", 2), null);
  assert.equal(addDims(addDims("seq", "seq"), "seq"), "3*seq");
  assert.equal(addDims("a", "b"), "a+b");
  assert.equal(mulDims(addDims("a", "b"), 2), "2*(a+b)");
  const bind = (s: string) => ({ a: 2, b: 5, seq: 7, batch: 3 } as Record<string, number>)[s];
  assert.equal(evalDim("2*(a+b)", bind), 14);
  assert.equal(evalDim("9*batch*seq", bind), 189);
  assert.equal(evalDim("a+b*seq", bind), 37);
  assert.equal(evalDim("unknown*seq", bind), null);
});

Deno.test("graphCost: 2·m·k·n per product, batched and transposed operands, fresh dims solved from sizes", () => {
  const g = new GraphBuilder();
  const x = g.input("x", "float32", ["batch", "seq", 8]);
  const w = g.input("w", "float32", [16, 8]);
  const y = g.linear(x, w); // [batch, seq, 16]: batch x [seq, 8] x [8, 16] (one weight)
  const heads = g.transpose(g.reshape(y, [0, 0, 4, -1]), [0, 2, 1, 3]); // [batch, 4, seq, 4]
  const scores = g.matmul(heads, g.transpose(heads, [0, 1, 3, 2])); // batched [seq, 4] x [4, seq]
  // A reshape whose size the builder cannot name (a dynamic target) gets a fresh dim, solved from sizes.
  const flat = g.reshape(scores, g.constant([-1, 6]), ["d_rows", 6]);
  const gm = g.op1("Gemm", [flat, g.input("v", "float32", [3, 6])], { transB: 1 });
  g.output(gm, "out");
  const cost = graphCost(g.build(), { batch: 2, seq: 6 });
  assert.deepEqual(cost.unresolved, []);
  assert.deepEqual(cost.matmuls.map((c) => [c.op, c.batch, c.m, c.k, c.n, c.flops]), [
    ["MatMul", 2, 6, 8, 16, 2 * 12 * 8 * 16],
    ["MatMul", 8, 6, 4, 6, 2 * 8 * 6 * 4 * 6],
    ["Gemm", 1, 48, 6, 3, 2 * 48 * 6 * 3],
  ]);
  assert.equal(new ShapeResolver(g.build(), { batch: 2, seq: 6 }).dim("d_rows"), 48);
});

Deno.test("carriedBytes: forward values the backward pass reads; weights and their transposes are not counted", () => {
  const g = new GraphBuilder();
  const x = g.input("x", "float32", ["n", 4]);
  const w = g.input("w", "float32", [3, 4]);
  const h = g.linear(x, w); // [n, 3]: no rule reads it (Tanh's reads its output)
  const t = g.op1("Tanh", [h]); // [n, 3], read by its rule
  const loss = g.op1("ReduceSum", [g.mul(t, t)], { keepdims: 0 });
  addBackward(g, loss, [w]);
  const graph = g.build();
  const carried = carriedBytes(graph, { n: 10 }, (node) => !node.name.startsWith("/grad/"));
  // t (twice: Mul's rule and Tanh's rule read it) counts once; x is an input; Transpose(w) is a view.
  assert.equal(carried.bytes, 10 * 3 * 4);
  assert.equal(carried.values, 1);
});

Deno.test("the LM training graph: every product sized, 2·tokens·params of forward work, activations ~linear in rows", () => {
  const config = tinyConfig({ vocabSize: 23, hiddenSize: 16, intermediateSize: 24, headDim: 4 });
  const model = randomModel(config, 1);
  const adapters = lmAdapterSpecs(config, { rank: 2, alpha: 4 });
  const { graph } = buildLmTrainingGraph(model, adapters, { kind: "input" });
  const dims = (rows: number, seq: number) => lmGraphDims(rows, seq);
  const cost = graphCost(graph, dims(2, 5));
  assert.deepEqual(cost.unresolved, []);
  // Every linear layer and the head run forward once (2·tokens·params); the backward pass adds its own.
  const params = [...model.tensors].filter(([n]) => n.endsWith("proj.weight") || n === "lm_head.weight")
    .reduce((s, [, t]) => s + t.data.length, 0);
  assert.ok(cost.flops > 2 * 10 * params, `${cost.flops} vs forward ${2 * 10 * params}`);
  const fwd = (n: { name: string }) => !n.name.startsWith("/grad/");
  const one = carriedBytes(graph, dims(1, 5), fwd), four = carriedBytes(graph, dims(4, 5), fwd);
  assert.deepEqual([one.unresolved, four.unresolved], [[], []]);
  assert.equal(four.bytes, 4 * one.bytes);
  const recomputed = buildLmTrainingGraph(model, adapters, { kind: "input" }, { recompute: true });
  assert.ok(carriedBytes(recomputed.graph, dims(4, 5), fwd).bytes < four.bytes / 2);
});
