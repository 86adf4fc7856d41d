/**
 * The WebGPU lowering (src/onnx/lowering.ts): a graph with LogSoftmax, a
 * variadic Sum and float ConstantOfShape computes the same after the rewrite
 * (both run on the CPU provider, so any difference is the rewrite's), and the
 * rewritten graph holds none of those ops.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { GraphBuilder } from "../src/onnx/builder.ts";
import { lowerForWebGpu } from "../src/onnx/lowering.ts";
import { serializeModel } from "../src/onnx/writer.ts";
import { Rng } from "../src/model/rng.ts";
import { ort } from "../src/runtime/ort.ts";

Deno.test("lowering for WebGPU: same outputs, no LogSoftmax / Sum / float ConstantOfShape left", async () => {
  const g = new GraphBuilder("lowering");
  const x = g.input("x", "float32", ["n", 7]);
  const y = g.input("y", "float32", ["n", 7]);
  g.output(g.op1("LogSoftmax", [x], { axis: -1 }), "log_softmax");
  g.output(g.op1("LogSoftmax", [x], { axis: 0 }), "log_softmax_axis0");
  g.output(g.op1("Sum", [x, y, g.mul(x, y)]), "sum3");
  g.output(g.op1("Sum", [x]), "sum1");
  const zeros = g.op1("ConstantOfShape", [g.shapeOf(x)], {
    value: { kind: "tensor", value: { dtype: "float32", shape: [1], data: Float32Array.of(2.5) } },
  }, { types: [{ dtype: "float32", shape: x.shape }] });
  g.output(g.add(zeros, y), "filled");
  const graph = g.build();
  const lowered = lowerForWebGpu(graph);
  assert.deepEqual(
    lowered.nodes.filter((n) => ["LogSoftmax", "Sum", "ConstantOfShape"].includes(n.op)).map((n) => n.op),
    [],
  );

  const rng = new Rng(3, "lowering");
  // Large logits on purpose: the max shift must keep exp finite.
  const feeds = {
    x: new ort.Tensor("float32", rng.fillNormal(new Float32Array(5 * 7), 40), [5, 7]),
    y: new ort.Tensor("float32", rng.fillNormal(new Float32Array(5 * 7)), [5, 7]),
  };
  const run = async (model: typeof graph) => {
    const s = await ort.InferenceSession.create(await serializeModel(model), { executionProviders: ["cpu"] });
    try {
      return await s.run(feeds);
    } finally {
      await s.release();
    }
  };
  const [a, b] = [await run(graph), await run(lowered)];
  for (const name of ["log_softmax", "log_softmax_axis0", "sum3", "sum1", "filled"]) {
    const p = a[name].data as Float32Array, q = b[name].data as Float32Array;
    assert.deepEqual(b[name].dims, a[name].dims, name);
    for (let i = 0; i < p.length; i++) {
      assert.ok(Number.isFinite(q[i]), `${name}[${i}] is finite`);
      assert.ok(Math.abs(p[i] - q[i]) <= 1e-5 * Math.max(1, Math.abs(p[i])), `${name}[${i}]: ${p[i]} vs ${q[i]}`);
    }
  }
});
