/**
 * WebGPU tier, serving: on every generated architecture the WebGPU engine
 * (KV caches on the device) generates exactly the CPU engine's greedy tokens,
 * batched and solo, with log-probabilities within LOGPROB_TOLERANCE; its copy
 * counters show that a decode step moves only token ids, mask, positions and
 * logits — never the cache; fp16 on the device tracks fp32 on the CPU.
 * In CI this runs on lavapipe (software Vulkan); see helpers/webgpu.ts.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import type { Architecture } from "../src/model/config.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { createEngine } from "../src/serve/batch_engine.ts";
import type { GenerationEngine } from "../src/serve/engine_types.ts";
import { loadModel } from "../src/serve/load_model.ts";
import type { StepMetrics } from "../src/serve/scheduler.ts";
import type { KvCache } from "../src/runtime/causal_lm.ts";
import { webgpuTest } from "./helpers/webgpu.ts";

/** Largest difference allowed between a WebGPU and a CPU logprob (fp32 on both; measured ≤ 2e-5). */
const LOGPROB_TOLERANCE = 1e-3;
/** New tokens per prompt: unequal, so rows leave a running batch while others go on. */
const NEW_TOKENS = [32, 24, 40];
const PROMPTS = [
  [84, 104, 101, 32, 99, 97, 116],
  [72, 105, 33],
  [79, 110, 99, 101, 32, 117, 112, 111, 110, 32, 97, 32, 116, 105, 109, 101],
];
const ARCHS: Architecture[] = ["llama", "qwen2", "qwen3", "mistral"];

interface Generated {
  tokens: number[];
  logprobs: number[];
  top: number[][];
}

async function greedy(engine: GenerationEngine, prompt: number, onToken?: (n: number) => void): Promise<Generated> {
  const out: Generated = { tokens: [], logprobs: [], top: [] };
  const req = {
    promptIds: PROMPTS[prompt],
    maxTokens: NEW_TOKENS[prompt],
    sampling: { temperature: 0, topP: 1, topK: 0 },
    stop: [],
    stopTokenIds: [],
    logprobs: 3,
  };
  for await (const ev of engine.generate(req)) {
    if (ev.type !== "token") continue;
    out.tokens.push(ev.id);
    out.logprobs.push(ev.logprob!.logprob);
    out.top.push(ev.logprob!.top.map((t) => t.logprob));
    onToken?.(out.tokens.length);
  }
  assert.equal(out.tokens.length, NEW_TOKENS[prompt]);
  return out;
}

function assertSameGeneration(gpu: Generated, cpu: Generated, what: string): void {
  assert.deepEqual(gpu.tokens, cpu.tokens, `${what}: greedy tokens`);
  gpu.logprobs.forEach((lp, i) => {
    assert.ok(
      Math.abs(lp - cpu.logprobs[i]) <= LOGPROB_TOLERANCE,
      `${what}: logprob ${i}: ${lp} vs ${cpu.logprobs[i]}`,
    );
    gpu.top[i].forEach((t, j) => assert.ok(Math.abs(t - cpu.top[i][j]) <= LOGPROB_TOLERANCE, `${what}: top ${i}.${j}`));
  });
}

async function tinyModelDir(arch: Architecture): Promise<{ root: string; dir: string; vocab: number }> {
  const root = await Deno.makeTempDir({ prefix: `webgpu-${arch}-` });
  const { config } = await generateTinyModel({
    out: `${root}/model`,
    arch,
    preset: "tiny",
    tokenizer: "bytes",
    seed: 5,
  });
  return { root, dir: `${root}/model`, vocab: config.vocabSize };
}

for (const arch of ARCHS) {
  webgpuTest(
    `${arch}: greedy tokens and logprobs equal the CPU engine's, batched and solo; the KV cache stays on the device`,
    async () => {
      const { root, dir, vocab } = await tinyModelDir(arch);
      const steps: StepMetrics[] = [];
      const common = { dtype: "float32" as const, dataDir: `${root}/data`, threads: 1 };
      const cpu = await createEngine(dir, { ...common, device: "cpu" });
      const gpu = await createEngine(dir, { ...common, device: "webgpu", observer: { onStep: (m) => steps.push(m) } });
      try {
        const cpuSolo: Generated[] = [];
        for (let p = 0; p < PROMPTS.length; p++) cpuSolo.push(await greedy(cpu, p));
        // Batched: prompts 0 and 1 together; prompt 2 joins the running batch after 5 tokens; rows
        // leave at different steps.
        let third: Promise<Generated> | null = null;
        const firstTwo = await Promise.all([
          greedy(gpu, 0, (n) => (n === 5 ? third = greedy(gpu, 2) : null)),
          greedy(gpu, 1),
        ]);
        const batched = [...firstTwo, await third!];
        batched.forEach((g, i) => assertSameGeneration(g, cpuSolo[i], `batched prompt ${i}`));
        const solo: Generated[] = [];
        for (let p = 0; p < PROMPTS.length; p++) solo.push(await greedy(gpu, p));
        solo.forEach((g, i) => assertSameGeneration(g, cpuSolo[i], `solo prompt ${i}`));

        // Copy volume per decode step: input ids, the [B, W + 1] mask, positions and the logits-to-keep
        // scalar up (int64), logits and log Σ exp down — never keys or values.
        const decodes = steps.filter((s) => s.kind === "decode");
        assert.ok(decodes.length >= NEW_TOKENS.reduce((a, b) => a + b));
        for (const s of decodes) {
          const B = s.batchSize, W = s.width!;
          assert.equal(s.transfer.hostToDevice, 8 * (B + B * (W + 1) + B + 1), `decode step B=${B} W=${W}: up`);
          assert.equal(s.transfer.deviceToHost, 4 * B * (vocab + 1), `decode step B=${B}: down`);
        }
        assert.ok(decodes.some((s) => s.batchSize === PROMPTS.length), "some steps ran the whole batch");
        assert.ok(decodes.some((s) => (s.joined ?? 0) > 0 && s.batchSize > 1), "a sequence joined a running batch");
        const stats = gpu.stats();
        assert.deepEqual(stats.transfer!.lastDecode, decodes.at(-1)!.transfer);
        assert.deepEqual(cpu.stats().transfer!.total, { hostToDevice: 0, deviceToHost: 0 }, "the CPU has no device");
      } finally {
        await gpu.close();
        await cpu.close();
        await Deno.remove(root, { recursive: true });
      }
    },
  );
}

webgpuTest(
  "fp16 engine: KV graphs in half precision; batched rows (joins, leaves) generate what each row does alone",
  async () => {
    const { root, dir } = await tinyModelDir("llama");
    const gpu = await createEngine(dir, { dtype: "float16", dataDir: `${root}/data`, device: "webgpu" });
    try {
      const solo: Generated[] = [];
      for (let p = 0; p < PROMPTS.length; p++) solo.push(await greedy(gpu, p));
      let third: Promise<Generated> | null = null;
      const firstTwo = await Promise.all([
        greedy(gpu, 0, (n) => (n === 5 ? third = greedy(gpu, 2) : null)),
        greedy(gpu, 1),
      ]);
      [...firstTwo, await third!].forEach((g, i) => assert.deepEqual(g.tokens, solo[i].tokens, `prompt ${i}`));
    } finally {
      await gpu.close();
      await Deno.remove(root, { recursive: true });
    }
  },
);

webgpuTest("two engines (two workers) on the device at once: runs are serialized, results unchanged", async () => {
  const models = [await tinyModelDir("llama"), await tinyModelDir("qwen3")];
  const engines = await Promise.all(
    models.map((m) =>
      createEngine(m.dir, { dtype: "float32", dataDir: `${m.root}/data`, device: "webgpu", admissionQuietMs: 0 })
    ),
  );
  try {
    const alone: Generated[][] = [];
    for (const e of engines) {
      const out: Generated[] = [];
      for (let p = 0; p < PROMPTS.length; p++) out.push(await greedy(e, p));
      alone.push(out);
    }
    // Every prompt of both engines at once, twice over: the two workers' sessions share one WebGPU context.
    for (let round = 0; round < 2; round++) {
      const together = await Promise.all(engines.map((e) => Promise.all(PROMPTS.map((_, p) => greedy(e, p)))));
      together.forEach((outs, i) => outs.forEach((g, p) => assert.deepEqual(g.tokens, alone[i][p].tokens)));
    }
  } finally {
    await Promise.all(engines.map((e) => e.close()));
    for (const m of models) await Deno.remove(m.root, { recursive: true });
  }
});

webgpuTest(
  "fp16 on the device tracks fp32 on the CPU (prefill logits, then device-resident decode steps)",
  async () => {
    const { root, dir } = await tinyModelDir("qwen3");
    const cpu = await loadModel(dir, { dataDir: `${root}/data`, device: "cpu", dtype: "float32", threads: 1 });
    const gpu = await loadModel(dir, { dataDir: `${root}/data`, device: "webgpu", dtype: "float16" });
    try {
      assert.ok(gpu.lm.kvOnDevice);
      let ids = [PROMPTS[2]];
      let pastCpu: KvCache | null = null, pastGpu: KvCache | null = null;
      for (let step = 0; step < 6; step++) {
        const a = await cpu.lm.forward({ inputIds: ids, past: pastCpu, numLogitsToKeep: 1 });
        const b = await gpu.lm.forward({ inputIds: ids, past: pastGpu, numLogitsToKeep: 1 });
        const scale = Math.max(...Array.from(a.logits, Math.abs));
        const worst = Math.max(...Array.from(a.logits, (v, i) => Math.abs(v - b.logits[i])));
        assert.ok(worst < 2e-2 * scale, `step ${step}: fp16 logits differ by ${worst} (scale ${scale})`);
        assert.equal(b.present.layers[0].key.location, "gpu-buffer");
        assert.equal(b.present.layers[0].key.type, "float16");
        gpu.lm.releaseCache(pastGpu);
        pastCpu = a.present;
        pastGpu = b.present;
        let best = 0;
        a.logits.forEach((v, i) => (v > a.logits[best] ? (best = i) : 0));
        ids = [[best]];
      }
      gpu.lm.releaseCache(pastGpu);
    } finally {
      await gpu.lm.release();
      await cpu.lm.release();
      await Deno.remove(root, { recursive: true });
    }
  },
);
