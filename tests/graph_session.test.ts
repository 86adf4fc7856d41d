/**
 * Sessions over graphs built at run time: small ones serialized in memory,
 * large ones (a baked 1B training graph exceeds protobuf's 2 GiB) through a
 * temporary file with external data that is removed once the session is open.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { GraphBuilder } from "../src/onnx/builder.ts";
import { ort } from "../src/runtime/ort.ts";
import { initializerBytes, openGraphSession } from "../src/runtime/session.ts";

function graphWithWeights(n: number) {
  const g = new GraphBuilder("weights");
  const x = g.input("x", "float32", [n]);
  const w = g.initializer("w", "float32", [n], Float32Array.from({ length: n }, (_, i) => i % 7));
  g.output(g.mul(x, w), "y");
  return g.build();
}

async function tempDirs(): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(await Deno.realPath(Deno.env.get("TMPDIR") ?? "/tmp"))) {
    if (e.name.startsWith("scalora-graph-")) out.push(e.name);
  }
  return out.sort();
}

Deno.test("graph sessions: through external data above the in-memory limit, same results, no temp files left", async () => {
  const n = 4096;
  const graph = graphWithWeights(n);
  assert.equal(initializerBytes(graph), 4 * n);
  const before = await tempDirs();
  const x = new ort.Tensor("float32", new Float32Array(n).fill(2), [n]);
  const results: Float32Array[] = [];
  for (const limit of [Infinity, 1024]) {
    const s = await openGraphSession(graph, { device: "cpu", maxInMemoryGraphBytes: limit });
    try {
      results.push((await s.run({ x })).y.data as Float32Array);
    } finally {
      await s.release();
    }
  }
  assert.deepEqual([...results[1]], [...results[0]]);
  assert.equal(results[0][5], 10);
  assert.deepEqual(await tempDirs(), before);
});
