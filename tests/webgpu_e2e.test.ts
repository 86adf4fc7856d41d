/**
 * WebGPU tier, the whole service: `src/main.ts` (what `deno task start`
 * runs) started twice as a process, with DEVICE=webgpu and with DEVICE unset
 * (auto), on a generated Qwen3 model with the real Qwen3 tokenizer and chat
 * template; the official `openai` client's chat requests, plain and
 * streamed, get the same greedy text from both. `auto` picks what the device
 * probe says — the CPU on a machine whose only Vulkan adapter is software.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { DEFAULT_PROBE_TIMEOUT_MS } from "../src/registry/probe.ts";
import { chooseDevice } from "../src/runtime/device.ts";
import { webgpuTest } from "./helpers/webgpu.ts";

interface Server {
  client: OpenAI;
  /** The service's `{"device", "reason"}` start-up line. */
  device: { device: string; reason: string };
  stop(): Promise<void>;
}

async function startServer(modelDir: string, dataDir: string, device: string | null): Promise<Server> {
  const env: Record<string, string> = { MODEL: modelDir, DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1" };
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts"],
    env: device ? { ...env, DEVICE: device } : env,
    clearEnv: false,
    stdout: "piped",
    stderr: "inherit",
  });
  const child = cmd.spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", port = 0, deviceLine: Server["device"] | null = null;
  // Start-up includes the validation probe, which on a cold shader cache compiles every WebGPU kernel first.
  const deadline = Date.now() + DEFAULT_PROBE_TIMEOUT_MS + 60_000;
  // Read start-up lines until the model is served ("serving …" after "listening on …").
  while (Date.now() < deadline) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`the server exited during start-up:\n${buffer}`);
    buffer += value;
    const listening = buffer.match(/listening on http:\/\/[^:]+:(\d+)/);
    if (listening) port = Number(listening[1]);
    const dev = buffer.match(/^\{"device":.*\}$/m);
    if (dev) deviceLine = JSON.parse(dev[0]);
    if (port && /^serving /m.test(buffer)) break;
  }
  assert.ok(port && deviceLine, `no start-up lines in:\n${buffer}`);
  // Keep draining stdout (request logs) so the child never blocks on a full pipe.
  const drain = (async () => {
    while (!(await lines.read()).done) { /* request log lines */ }
  })();
  return {
    client: new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120_000 }),
    device: deviceLine!,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await drain.catch(() => {});
    },
  };
}

async function chat(client: OpenAI, model: string): Promise<{ plain: string; streamed: string; sampled: string[] }> {
  const messages = [
    { role: "system" as const, content: "You are terse." },
    { role: "user" as const, content: "Name three colours." },
  ];
  const res = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0 });
  let streamed = "";
  const stream = await client.chat.completions.create({
    model,
    messages,
    max_tokens: 24,
    temperature: 0,
    stream: true,
  });
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
  // Sampling happens on the host from the device's logits: n, seeds and stop strings work alike.
  const sampled = await client.chat.completions.create({
    model,
    messages,
    max_tokens: 24,
    temperature: 0.9,
    seed: 7,
    n: 2,
    stop: ["e"],
  });
  return {
    plain: res.choices[0].message.content ?? "",
    streamed,
    sampled: sampled.choices.map((c) => `${c.finish_reason}:${c.message.content}`),
  };
}

webgpuTest(
  "DEVICE=webgpu serves the openai client's chat and streams with the greedy text of DEVICE=auto",
  async () => {
    const root = await Deno.makeTempDir({ prefix: "webgpu-e2e-" });
    // The service serves MODEL under the id given: the directory's path.
    const model = `${root}/model`;
    await generateTinyModel({ out: model, arch: "qwen3", preset: "tiny", tokenizer: "qwen3", seed: 2 });
    const gpu = await startServer(model, `${root}/gpu-data`, "webgpu").catch(async (e) => {
      await Deno.remove(root, { recursive: true });
      throw e;
    });
    let auto: Server | null = null;
    try {
      assert.equal(gpu.device.device, "webgpu");
      auto = await startServer(model, `${root}/auto-data`, null);
      const expected = chooseDevice("auto");
      assert.equal(auto.device.device, expected.device, auto.device.reason);
      if (expected.device === "cpu") assert.match(auto.device.reason, /^auto: /);
      const [a, b] = [await chat(gpu.client, model), await chat(auto.client, model)];
      assert.ok(b.plain.length > 0);
      assert.equal(a.plain, b.plain, "chat: WebGPU text equals the reference device's");
      assert.equal(a.streamed, b.streamed, "streamed chat: WebGPU text equals the reference device's");
      assert.equal(a.streamed, a.plain);
      assert.deepEqual(a.sampled, b.sampled, "seeded sampling with n = 2 and a stop string");
      assert.equal(a.sampled.length, 2);
    } finally {
      await gpu.stop();
      await auto?.stop();
      await Deno.remove(root, { recursive: true });
    }
  },
);
