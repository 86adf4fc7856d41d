/**
 * WebGPU tier, training and versions: short LoRA and ScaLoRA fine-tunes on
 * the WebGPU device (frozen weights baked into the session on the device,
 * ScaLoRA merges carried as pending low-rank inputs) end with the CPU run's
 * weight deltas within DELTA_TOLERANCE; a version hot-swaps in and rolls back
 * on a WebGPU engine, serving what the CPU serves for each target.
 * In CI this runs on lavapipe (software Vulkan); see helpers/webgpu.ts.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { Rng } from "../src/model/rng.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { fineTune, FineTuneAborted, type FineTuneOptions } from "../src/train/fine_tune.ts";
import { deltasOf, MergeLog } from "../src/train/merge_log.ts";
import { DeviceWeightState } from "../src/train/weight_state.ts";
import { deltaDifference } from "./helpers/fine_tuning.ts";
import { openRegistryFixture, randomDeltas, type RegistryFixture } from "./helpers/registry_fixtures.ts";
import { webgpuTest } from "./helpers/webgpu.ts";

/**
 * Largest |ΔW_webgpu − ΔW_cpu| relative to max |ΔW_cpu| after 10 steps
 * (measured 2e-4 to 6e-4: fp32 summation order, amplified by Adam's early
 * steps where the second moment is tiny).
 */
const DELTA_TOLERANCE = 3e-3;

function facts(n: number): string {
  return Array.from({ length: n }, (_, i) => {
    const rng = new Rng(7, `fact${i}`);
    const word = (len: number) => Array.from({ length: len }, () => "abcdefghij"[rng.nextInt(10)]).join("");
    return JSON.stringify({ prompt: `${word(3)}=`, completion: word(3) });
  }).join("\n");
}

for (const method of ["lora", "scalora"] as const) {
  webgpuTest(`${method}: a short fine-tune on WebGPU ends within ${DELTA_TOLERANCE} of the CPU run`, async () => {
    const root = await Deno.makeTempDir({ prefix: `webgpu-train-${method}-` });
    try {
      await generateTinyModel({ out: `${root}/model`, arch: "qwen3", preset: "tiny", tokenizer: "bytes", seed: 4 });
      const opts: Omit<FineTuneOptions, "device" | "checkpointDir"> = {
        model: `${root}/model`,
        trainText: facts(40),
        method,
        rank: 2,
        alpha: 4,
        // Scaling events every other step: merges reach the baked weights as pending low-rank inputs.
        interval: 2,
        epochs: 2,
        batchSize: 8,
        learningRate: 1e-2,
        maxLength: 32,
        seed: 3,
        checkpointEvery: 0,
        threads: 1,
      };
      const cpu = await fineTune({ ...opts, device: "cpu", checkpointDir: `${root}/cpu` });
      const gpu = await fineTune({ ...opts, device: "webgpu", checkpointDir: `${root}/gpu` });
      assert.equal(gpu.steps, 10);
      assert.ok(Math.abs(gpu.finalTrainLoss! - cpu.finalTrainLoss!) < 1e-3 * cpu.finalTrainLoss!);
      if (method === "scalora") assert.ok(cpu.deltas.some((d) => d.terms.length > 1), "merges happened");
      const { relative, size } = deltaDifference(cpu.deltas, gpu.deltas);
      assert.ok(size > 0, "training moved the weights");
      assert.ok(relative <= DELTA_TOLERANCE, `deltas differ by ${relative} of their scale ${size}`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}

webgpuTest(
  "scalora on WebGPU: a run paused at a checkpoint resumes to the uninterrupted run's deltas, bit for bit",
  async () => {
    const root = await Deno.makeTempDir({ prefix: "webgpu-resume-" });
    try {
      await generateTinyModel({ out: `${root}/model`, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 4 });
      const opts: Omit<FineTuneOptions, "checkpointDir"> = {
        model: `${root}/model`,
        trainText: facts(40),
        method: "scalora",
        rank: 2,
        alpha: 4,
        interval: 1,
        epochs: 2,
        batchSize: 8,
        learningRate: 1e-2,
        maxLength: 32,
        seed: 3,
        checkpointEvery: 3,
        threads: 1,
        device: "webgpu",
      };
      const straight = await fineTune({ ...opts, checkpointDir: `${root}/straight` });
      const controller = new AbortController();
      const first = await fineTune({
        ...opts,
        checkpointDir: `${root}/resumed`,
        signal: controller.signal,
        onEvent: (e) => {
          if (e.type === "metrics" && e.step === 4) controller.abort("pause");
        },
      }).then(() => null, (e) => e);
      assert.ok(first instanceof FineTuneAborted, String(first));
      // The device weights went through a snapshot (download) and come back through restore (upload).
      const rest = await fineTune({ ...opts, checkpointDir: `${root}/resumed`, resume: true });
      assert.equal(rest.steps, straight.steps);
      assert.deepEqual(rest.deltas, straight.deltas);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

webgpuTest("device weights: a folded layer's snapshot is D + fixups, rebuilt bit for bit on the device", async () => {
  const spec = { name: "w", m: 12, n: 10, rank: 2, scale: 1.5 };
  const base = new Rng(1, "device-fold/base").fillNormal(new Float32Array(spec.m * spec.n));
  const make = async () => {
    const state = await DeviceWeightState.create(new Map([["w", { m: spec.m, n: spec.n, data: base.slice() }]]));
    return new MergeLog(state, [spec], { base: () => Promise.resolve(base.slice()) });
  };
  const rng = new Rng(2, "device-fold/merges");
  const merges = Array.from({ length: 8 }, () => [{
    name: "w",
    U: rng.fillNormal(new Float32Array(spec.m * 2)),
    V: rng.fillNormal(new Float32Array(spec.n * 2)),
    k: 2,
    c: rng.fillNormal(new Float32Array(2)),
    scale: spec.scale,
  }]);
  const zero = new Map([["w", { A: new Float32Array(spec.m * 2), B: new Float32Array(spec.n * 2) }]]);
  const a = await make(), b = await make();
  try {
    for (const mg of merges.slice(0, 5)) await a.mergeLowRankMany(mg);
    assert.equal(a.stats("w").dense, true, "folded from the device weight");
    const snap = await a.snapshot();
    assert.ok(!snap.tensors.has("weight.w") && snap.tensors.get("mergelog.w.replayed")!.data[0] === 2);
    await b.restore(snap);
    assert.deepEqual(await b.dense("w"), await a.dense("w"));
    for (const mg of merges.slice(5)) {
      await a.mergeLowRankMany(mg);
      await b.mergeLowRankMany(mg);
    }
    assert.deepEqual(await b.dense("w"), await a.dense("w"));
    assert.deepEqual(deltasOf(b.view(), [spec], zero), deltasOf(a.view(), [spec], zero));
  } finally {
    for (const log of [a, b]) {
      await log.release();
      await (log.inner as DeviceWeightState).release();
    }
  }
});

webgpuTest("a version hot-swaps in and rolls back on a WebGPU engine, serving what the CPU serves", async () => {
  const prompt = [84, 104, 101, 32, 99, 97, 116];
  const request = { promptIds: prompt, maxTokens: 24, sampling: { temperature: 0, topP: 1, topK: 0 }, stop: [] };
  const text = async (f: RegistryFixture, model: string) => {
    const served = await f.registry.resolve(model);
    assert.ok(served, `resolve(${model})`);
    let out = "";
    for await (const ev of served.engine.generate({ ...request, stopTokenIds: [] })) out += ev.text;
    return { id: served.id, text: out };
  };
  const gpu = await openRegistryFixture({ device: "webgpu", dtype: "float32" });
  const cpu = await openRegistryFixture({ modelDir: gpu.modelDir, device: "cpu", dtype: "float32" });
  try {
    const deltas = randomDeltas(gpu.config, { seed: 1, rank: 4, terms: 2, scale: 0.3 });
    const v1 = await gpu.versions.createVersion(gpu.version("v1", deltas));
    const cpuV1 = await cpu.versions.createVersion(cpu.version("v1", deltas));
    const want = { base: (await text(cpu, cpu.baseId)).text, v1: (await text(cpu, cpuV1.name)).text };
    assert.notEqual(want.base, want.v1, "the version must be distinguishable");

    await gpu.coordinator.set("prod", gpu.baseId, "initial");
    assert.deepEqual(await text(gpu, "prod"), { id: gpu.baseId, text: want.base });
    const switched = await gpu.coordinator.set("prod", v1.name, "ship v1"); // validated on the WebGPU engine
    assert.equal(switched.serving, v1.name);
    assert.deepEqual(await text(gpu, "prod"), { id: v1.name, text: want.v1 });
    const back = await gpu.coordinator.rollback("prod", "roll back");
    assert.equal(back.serving, gpu.baseId);
    assert.deepEqual(await text(gpu, "prod"), { id: gpu.baseId, text: want.base });
  } finally {
    await cpu.close();
    await gpu.close();
  }
});
