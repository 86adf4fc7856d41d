import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { parseTinyModelArgs } from "../src/cli/tiny_model.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { type Architecture, parseModelConfig } from "../src/model/config.ts";
import { hubCachePath, isHubId } from "../src/model/hub.ts";
import { parameterCount, weightLayout } from "../src/model/layout.ts";
import { Rng } from "../src/model/rng.ts";
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from "../src/model/half.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";
import { rejectsLoad } from "./helpers/model_errors.ts";
import { generateTinyModel, tinyModelRawConfig, tinyTensorData } from "../src/model/tiny_model.ts";
import { bytesTokenizerFiles } from "../src/model/tokenizer_files.ts";

const ARCHES: Architecture[] = ["qwen3", "llama", "qwen2", "mistral"];

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "checkpoint-test-" });
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

async function tiny(dir: string, arch: Architecture = "llama", extra: { shards?: number; seed?: number } = {}) {
  return await generateTinyModel({
    out: dir,
    arch,
    preset: "tiny",
    tokenizer: "bytes",
    seed: extra.seed ?? 5,
    ...extra,
  });
}

// ------------------------------------------------------------ generator ----

Deno.test("tiny model: every arch parses back and loads with the exact weights", async () => {
  const root = await tempDir();
  for (const arch of ARCHES) {
    const dir = `${root}/${arch}`;
    const result = await tiny(dir, arch);
    const raw = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    assert.deepEqual(parseModelConfig(raw), result.config);
    const ckpt = await openCheckpoint(dir);
    try {
      assert.equal(ckpt.dir, await Deno.realPath(dir));
      assert.deepEqual(ckpt.config, result.config);
      assert.deepEqual(ckpt.rawConfig, raw);
      assert.deepEqual(ckpt.generationConfig?.eos_token_id, raw.eos_token_id);
      const layout = weightLayout(ckpt.config);
      assert.deepEqual([...ckpt.tensors.keys()], layout.map((t) => t.name));
      for (const spec of layout) {
        const t = ckpt.tensors.get(spec.name);
        assert.deepEqual(t?.shape, spec.shape);
        assert.equal(t?.dtype, "F32");
        assert.deepEqual(await ckpt.read(spec.name), tinyTensorData(5, spec, ckpt.config));
      }
      await rejectsLoad(ckpt.read("nope"), /no tensor "nope"/);
    } finally {
      ckpt.close();
    }
    const files = await listDir(dir);
    for (
      const f of [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
      ]
    ) {
      assert.ok(files.includes(f), `${arch}: ${f} written`);
    }
  }
  await Deno.remove(root, { recursive: true });
});

Deno.test("tiny model: qwen3 tokenizer variant sizes the vocabulary from the tokenizer", async () => {
  const dir = await tempDir();
  const r = await generateTinyModel({
    out: dir,
    arch: "qwen3",
    preset: "tiny",
    tokenizer: "qwen3",
    seed: 0,
    dtype: "BF16",
  });
  const ckpt = await openCheckpoint(dir);
  try {
    assert.equal(ckpt.config.vocabSize, 151669);
    assert.deepEqual(ckpt.tensors.get("model.embed_tokens.weight")?.shape, [ckpt.config.vocabSize, 64]);
    assert.equal(ckpt.config.eosTokenIds.length, 2);
    assert.equal(ckpt.config.bosTokenId, null);
    assert.ok(r.files.includes("tokenizer.json"));
  } finally {
    ckpt.close();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("tiny model: presets have the promised shapes and HF fields", () => {
  const tok = bytesTokenizerFiles();
  const configs = Object.fromEntries(ARCHES.map((a) => [a, tinyModelRawConfig(a, "tiny", tok)]));
  for (const arch of ARCHES) {
    const c = parseModelConfig(configs[arch]);
    assert.equal(c.architecture, arch);
    assert.equal(c.hiddenSize, 64);
    assert.equal(c.numLayers, 2);
    assert.equal(c.numHeads, 4);
    assert.equal(c.numKvHeads, 2);
    assert.equal(c.intermediateSize, 128);
    assert.equal(c.vocabSize, tok.vocabSize);
    assert.equal(c.headDim, arch === "qwen3" ? 32 : 16);
    assert.deepEqual(c.eosTokenIds, tok.eosTokenIds);
  }
  assert.equal(configs.qwen3.head_dim, 32);
  assert.deepEqual(configs.qwen3.architectures, ["Qwen3ForCausalLM"]);
  assert.equal(parseModelConfig(configs.llama).ropeScaling?.type, "llama3");
  assert.equal(parseModelConfig(configs.mistral).slidingWindow, 64);
  assert.equal(parseModelConfig(configs.qwen2).attentionBias, true);
  for (const raw of Object.values(configs)) {
    for (
      const key of [
        "rope_theta",
        "rms_norm_eps",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "torch_dtype",
        "model_type",
      ]
    ) {
      assert.ok(key in raw, `${raw.model_type}: ${key}`);
    }
  }

  // smollm2-135m: checked without writing ~540 MB.
  const smol = parseModelConfig(tinyModelRawConfig("llama", "smollm2-135m", tok, "BF16"));
  assert.equal(smol.vocabSize, 49152);
  assert.equal(smol.hiddenSize, 576);
  assert.equal(smol.numLayers, 30);
  assert.equal(smol.headDim, 64);
  assert.equal(smol.ropeTheta, 100000);
  assert.equal(smol.tieWordEmbeddings, true);
  assert.equal(smol.torchDtype, "bfloat16");
  assert.equal(parameterCount(smol), 134_515_008);
  const layout = weightLayout(smol);
  assert.equal(layout.length, 1 + 30 * 9 + 1);
  assert.deepEqual(layout.find((t) => t.name === "model.layers.29.self_attn.k_proj.weight")?.shape, [192, 576]);
  assert.throws(() => tinyModelRawConfig("qwen3", "smollm2-135m", tok), /smollm2-135m is a llama model/);

  // llama3.2-1b: Llama-3.2-1B's shapes (its published parameter count, tied embeddings, llama3 rope).
  const big = parseModelConfig(tinyModelRawConfig("llama", "llama3.2-1b", tok, "F16"));
  assert.equal(parameterCount(big), 1_235_814_400);
  assert.equal(big.headDim, 64);
  assert.equal(big.numKvHeads, 8);
  assert.equal(big.ropeScaling?.type, "llama3");
  assert.equal(big.tieWordEmbeddings, true);
  assert.throws(() => tinyModelRawConfig("mistral", "llama3.2-1b", tok), /llama3.2-1b is a llama model/);
});

Deno.test("tiny model: same seed gives byte-identical files; another seed differs", async () => {
  const root = await tempDir();
  await tiny(`${root}/a`, "qwen2", { seed: 11 });
  await tiny(`${root}/b`, "qwen2", { seed: 11 });
  await tiny(`${root}/c`, "qwen2", { seed: 12 });
  const files = await listDir(`${root}/a`);
  assert.deepEqual(files, await listDir(`${root}/b`));
  for (const f of files) {
    assert.deepEqual(await Deno.readFile(`${root}/a/${f}`), await Deno.readFile(`${root}/b/${f}`), f);
  }
  assert.deepEqual(await Deno.readFile(`${root}/a/config.json`), await Deno.readFile(`${root}/c/config.json`));
  assert.notDeepEqual(
    await Deno.readFile(`${root}/a/model.safetensors`),
    await Deno.readFile(`${root}/c/model.safetensors`),
  );
  await Deno.remove(root, { recursive: true });
});

Deno.test("tiny model: sharded and half-precision outputs load with the same weights", async () => {
  const root = await tempDir();
  const single = await tiny(`${root}/single`, "qwen3");
  const sharded = await tiny(`${root}/sharded`, "qwen3", { shards: 3 });
  assert.deepEqual(
    sharded.files.filter((f) => f.endsWith(".safetensors")),
    [1, 2, 3].map((i) => `model-0000${i}-of-00003.safetensors`),
  );
  const index = JSON.parse(await Deno.readTextFile(`${root}/sharded/model.safetensors.index.json`));
  assert.equal(Object.keys(index.weight_map).length, weightLayout(single.config).length);
  let shardBytes = 0;
  for (const f of sharded.files.filter((f) => f.endsWith(".safetensors"))) {
    shardBytes += (await Deno.stat(`${root}/sharded/${f}`)).size;
  }
  assert.ok(index.metadata.total_size > 0 && index.metadata.total_size < shardBytes);

  const a = await openCheckpoint(`${root}/single`);
  const b = await openCheckpoint(`${root}/sharded`);
  try {
    assert.equal(new Set([...b.tensors.values()].map((t) => t.file)).size, 3);
    for (const name of a.tensors.keys()) assert.deepEqual(await b.read(name), await a.read(name), name);
  } finally {
    a.close();
    b.close();
  }

  // Regenerating into the same dir with one shard removes the old shards.
  await tiny(`${root}/sharded`, "qwen3");
  assert.ok(!(await listDir(`${root}/sharded`)).some((f) => f.startsWith("model-")));

  for (
    const [dtype, round] of [["F16", (x: Float32Array) => decodeF16(encodeF16(x))], [
      "BF16",
      (x: Float32Array) => decodeBf16(encodeBf16(x)),
    ]] as const
  ) {
    const dir = `${root}/${dtype}`;
    const r = await generateTinyModel({ out: dir, arch: "qwen2", preset: "tiny", tokenizer: "bytes", seed: 1, dtype });
    assert.equal(r.rawConfig.torch_dtype, dtype === "F16" ? "float16" : "bfloat16");
    const ckpt = await openCheckpoint(dir);
    try {
      for (const spec of weightLayout(ckpt.config)) {
        assert.equal(ckpt.tensors.get(spec.name)?.dtype, dtype);
        assert.deepEqual(await ckpt.read(spec.name), round(tinyTensorData(1, spec, ckpt.config)));
      }
    } finally {
      ckpt.close();
    }
  }
  await Deno.remove(root, { recursive: true });
});

Deno.test("tiny model: CLI flags parse with defaults and clear errors", () => {
  assert.deepEqual(parseTinyModelArgs(["--out", "m"]), {
    out: "m",
    arch: "qwen3",
    preset: "tiny",
    tokenizer: "bytes",
    seed: 0,
    dtype: "F32",
    shards: 1,
  });
  assert.deepEqual(
    parseTinyModelArgs(["--out=m", "--preset", "smollm2-135m", "--dtype", "BF16", "--seed", "-3", "--shards=2"]),
    { out: "m", arch: "llama", preset: "smollm2-135m", tokenizer: "bytes", seed: -3, dtype: "BF16", shards: 2 },
  );
  const bad: [string[], RegExp][] = [
    [[], /--out DIR is required/],
    [["--out"], /--out needs a value/],
    [["--out", "m", "--arch", "gpt2"], /--arch must be one of qwen3, llama, qwen2, mistral \(got "gpt2"\)/],
    [["--out", "m", "--preset", "big"], /--preset must be one of/],
    [["--out", "m", "--tokenizer", "gpt2"], /--tokenizer must be one of bytes, qwen3/],
    [["--out", "m", "--dtype", "f64"], /--dtype must be one of f32, f16, bf16/],
    [["--out", "m", "--seed", "1.5"], /--seed must be an integer/],
    [["--out", "m", "--shards", "0"], /--shards must be an integer >= 1/],
    [["--out", "m", "--shards", "two"], /--shards must be an integer >= 1/],
    [["--out", "m", "--bogus", "1"], /unknown flag --bogus/],
    [["--out", "m", "--out", "n"], /--out given twice/],
    [["--out", "m", "extra"], /unexpected argument "extra"/],
    [["--out", "m", "--preset", "smollm2-135m", "--arch", "qwen3"], /smollm2-135m is a llama model/],
  ];
  for (const [argv, re] of bad) assert.throws(() => parseTinyModelArgs(argv), re, argv.join(" "));
});

Deno.test("rng: deterministic, label-separated, roughly standard normal", () => {
  const seq = (seed: number, label?: string) => {
    const r = new Rng(seed, label);
    return Array.from({ length: 5 }, () => r.nextU32());
  };
  assert.deepEqual(seq(1), seq(1));
  assert.notDeepEqual(seq(1), seq(2));
  assert.notDeepEqual(seq(1, "a"), seq(1, "b"));
  assert.notDeepEqual(seq(1), seq(1 + 2 ** 32));
  assert.throws(() => new Rng(0.5), RangeError);
  const xs = new Rng(9).fillNormal(new Float32Array(100_001));
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.02, `variance ${variance}`);
  // fillNormal and normal() draw the same stream.
  const r1 = new Rng(4);
  const r2 = new Rng(4);
  r1.normal();
  const tail = r1.fillNormal(new Float32Array(3));
  r2.normal();
  assert.deepEqual([...tail], [r2.normal(), r2.normal(), r2.normal()].map(Math.fround));
  const r = new Rng(3);
  for (let i = 0; i < 1000; i++) {
    const k = r.nextInt(7);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 7);
  }
});

// ------------------------------------------------------------- failures ----

Deno.test("checkpoint: missing or corrupt files fail with one line naming the file", async () => {
  const root = await tempDir();
  const dir = `${root}/m`;
  await tiny(dir, "llama", { shards: 3 });
  const shard2 = `${dir}/model-00002-of-00003.safetensors`;
  const bytes = await Deno.readFile(shard2);

  await Deno.remove(shard2);
  const missing = await rejectsLoad(
    openCheckpoint(dir),
    /model-00002-of-00003\.safetensors: shard listed in model\.safetensors\.index\.json is missing/,
  );
  assert.match(missing.file ?? "", /model-00002-of-00003\.safetensors$/);

  await Deno.writeFile(shard2, bytes.subarray(0, bytes.length - 100));
  await rejectsLoad(openCheckpoint(dir), /model-00002-of-00003\.safetensors: corrupt or truncated safetensors file/);

  const corrupt = bytes.slice();
  corrupt[8] = "x".charCodeAt(0); // the header's opening brace
  await Deno.writeFile(shard2, corrupt);
  await rejectsLoad(openCheckpoint(dir), /model-00002-of-00003\.safetensors: .*header is not valid JSON/);
  await Deno.writeFile(shard2, bytes);

  const index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
  index.weight_map["model.norm.weight"] = "../evil.safetensors";
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
  await rejectsLoad(openCheckpoint(dir), /weight_map entry for "model\.norm\.weight" is not a file name/);
  index.weight_map["model.norm.weight"] = "model-00001-of-00003.safetensors";
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
  await rejectsLoad(openCheckpoint(dir), /maps tensor "model\.norm\.weight" to this shard but it is not in it/);
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, "{not json");
  await rejectsLoad(openCheckpoint(dir), /model\.safetensors\.index\.json: invalid JSON/);

  await Deno.remove(`${dir}/model.safetensors.index.json`);
  await rejectsLoad(openCheckpoint(dir), /no model\.safetensors or model\.safetensors\.index\.json/);

  await Deno.writeTextFile(`${dir}/config.json`, "{");
  await rejectsLoad(openCheckpoint(dir), /m\/config\.json: invalid JSON/);
  await Deno.remove(`${dir}/config.json`);
  await rejectsLoad(openCheckpoint(dir), /m\/config\.json: not found/);

  await rejectsLoad(openCheckpoint(`${root}/nowhere/at/all`), /no such directory/);
  await rejectsLoad(openCheckpoint(`${dir}/tokenizer.json`), /is a file/);
  await Deno.remove(root, { recursive: true });
});

Deno.test("checkpoint: validation against the layout (missing, shape, dtype, arch, extras, tying)", async () => {
  const root = await tempDir();
  const dir = `${root}/m`;
  const { config } = await tiny(dir, "llama");
  const layout = weightLayout(config);
  const tensorsOf = (specs: { name: string; shape: number[] }[]) =>
    specs.map((s) => ({ name: s.name, shape: s.shape, data: new Float32Array(s.shape.reduce((a, b) => a * b, 1)) }));
  const weights = `${dir}/model.safetensors`;

  // Missing tensor.
  await writeSafetensors(weights, tensorsOf(layout.filter((t) => t.name !== "model.layers.1.mlp.up_proj.weight")), {
    dtype: "F32",
  });
  const missing = await rejectsLoad(
    openCheckpoint(dir),
    /missing tensor "model\.layers\.1\.mlp\.up_proj\.weight" \(expected shape \[128,64\]\)/,
  );
  assert.equal(missing.field, "model.layers.1.mlp.up_proj.weight");

  // Wrong shape.
  await writeSafetensors(
    weights,
    tensorsOf(layout.map((t) => t.name === "model.layers.0.self_attn.k_proj.weight" ? { ...t, shape: [64, 64] } : t)),
    { dtype: "F32" },
  );
  await rejectsLoad(
    openCheckpoint(dir),
    /model\.safetensors: tensor "model\.layers\.0\.self_attn\.k_proj\.weight" has shape \[64,64\], expected \[32,64\]/,
  );

  // An expected tensor stored as I64 / F64; an extra I64 buffer is fine.
  const withRaw = async (extra: Record<string, unknown>, drop?: string) => {
    const header: Record<string, unknown> = {};
    let offset = 0;
    const parts: Uint8Array[] = [];
    for (const t of layout) {
      if (t.name === drop) continue;
      const n = t.shape.reduce((a, b) => a * b, 1) * 4;
      header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + n] };
      parts.push(new Uint8Array(n));
      offset += n;
    }
    for (const [name, spec] of Object.entries(extra)) {
      const { dtype, shape, bytes } = spec as { dtype: string; shape: number[]; bytes: number };
      header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
      parts.push(new Uint8Array(bytes));
      offset += bytes;
    }
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + json.length + offset);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    let at = 8 + json.length;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    await Deno.writeFile(weights, out);
  };
  await withRaw({ "model.norm.weight": { dtype: "F64", shape: [64], bytes: 512 } }, "model.norm.weight");
  await rejectsLoad(
    openCheckpoint(dir),
    /model\.safetensors: tensor "model\.norm\.weight" has unsupported dtype "F64"/,
  );
  await withRaw({ "lm_head.weight": { dtype: "I64", shape: [320, 64], bytes: 320 * 64 * 8 } }, "lm_head.weight");
  await rejectsLoad(openCheckpoint(dir), /tensor "lm_head\.weight" has unsupported dtype "I64"/);
  await withRaw({
    "model.position_ids": { dtype: "I64", shape: [1, 4], bytes: 32 },
    "model.layers.0.self_attn.rotary_emb.inv_freq": { dtype: "F32", shape: [8], bytes: 32 },
  });
  const extras = await openCheckpoint(dir);
  try {
    assert.ok(extras.tensors.has("model.layers.0.self_attn.rotary_emb.inv_freq"));
    assert.ok(!extras.tensors.has("model.position_ids"));
  } finally {
    extras.close();
  }

  // Unknown architecture: the config.json line, with the full path.
  const raw = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...raw, architectures: ["GPT2LMHeadModel"] }));
  const arch = await rejectsLoad(
    openCheckpoint(dir),
    /m\/config\.json: unsupported architecture "GPT2LMHeadModel" \(field "architectures"\)/,
  );
  assert.equal(arch.field, "architectures");

  // Unsupported rope type.
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({ ...raw, rope_scaling: { rope_type: "yarn", factor: 2 } }),
  );
  await rejectsLoad(openCheckpoint(dir), /field "rope_scaling\.rope_type" unsupported rope type "yarn"/);

  // Tied: lm_head may be omitted, and an extra one is tolerated.
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...raw, tie_word_embeddings: true }));
  const tiedLayout = weightLayout({ ...config, tieWordEmbeddings: true });
  await writeSafetensors(weights, tensorsOf(tiedLayout), { dtype: "F32" });
  const tied = await openCheckpoint(dir);
  tied.close();
  await writeSafetensors(weights, tensorsOf(layout), { dtype: "F32" });
  const tiedWithHead = await openCheckpoint(dir);
  assert.ok(tiedWithHead.tensors.has("lm_head.weight"));
  tiedWithHead.close();
  // Untied without lm_head is an error.
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(raw));
  await writeSafetensors(weights, tensorsOf(tiedLayout), { dtype: "F32" });
  await rejectsLoad(openCheckpoint(dir), /missing tensor "lm_head\.weight"/);
  await Deno.remove(root, { recursive: true });
});

// ------------------------------------------------------------------ hub ----

Deno.test("hub: ids are recognised", () => {
  for (const id of ["HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen3-0.6B", "a/b", "meta-llama/Llama-3.2-1B"]) {
    assert.ok(isHubId(id), id);
  }
  for (const id of ["./models/tiny", "/abs/path", "a/b/c", "noslash", "a/../b", "a/b.git", "", "a/-b"]) {
    assert.ok(!isHubId(id), id);
  }
  assert.equal(hubCachePath("a/b", { cacheDir: "/c/" }), "/c/a/b");
  assert.equal(hubCachePath("a/b", { cacheDir: "/c", revision: "v1" }), "/c/a/b/v1");
});

/** True when huggingface.co answers within 3 s (then tests must not download from it). */
async function hubReachable(): Promise<boolean> {
  try {
    const r = await fetch("https://huggingface.co/api/models?limit=1", { signal: AbortSignal.timeout(3000) });
    await r.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

Deno.test("hub: unreachable hub fails fast with a one-line hint", async () => {
  const cacheDir = await tempDir();
  const hint =
    /\); set MODEL to a local model directory, e\.g\. MODEL=\.\/models\/tiny \(make one with: deno task tiny-model --out \.\/models\/tiny\)$/;
  // Nothing listens on port 1: refused at once.
  const refused = await rejectsLoad(
    openCheckpoint("HuggingFaceTB/SmolLM2-135M-Instruct", { cacheDir, hubEndpoint: "http://127.0.0.1:1" }),
    /^cannot download "HuggingFaceTB\/SmolLM2-135M-Instruct" from the Hugging Face hub \(network unreachable\)/,
    hint,
  );
  assert.ok(refused.cause !== undefined);

  // The real default endpoint, where this machine has no network.
  if (!(await hubReachable())) {
    const started = performance.now();
    const e = await rejectsLoad(
      openCheckpoint("HuggingFaceTB/SmolLM2-135M-Instruct", { cacheDir }),
      /^cannot download "HuggingFaceTB\/SmolLM2-135M-Instruct" from the Hugging Face hub \(/,
      hint,
    );
    const seconds = (performance.now() - started) / 1000;
    assert.ok(seconds < 15, `took ${seconds.toFixed(1)} s: ${e.message}`);
  }
  // Nothing half-written is left in the cache.
  for await (const entry of Deno.readDir(`${cacheDir}/HuggingFaceTB/SmolLM2-135M-Instruct`)) {
    assert.fail(`left ${entry.name} in the cache`);
  }

  // A hub that accepts connections but never answers: the timeout fires.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  try {
    const t0 = performance.now();
    await rejectsLoad(
      openCheckpoint("owner/silent", {
        cacheDir,
        hubEndpoint: `http://127.0.0.1:${listener.addr.port}`,
        hubTimeoutMs: 300,
      }),
      /cannot download "owner\/silent" from the Hugging Face hub \(no response within 0\.3 s\)/,
    );
    assert.ok(performance.now() - t0 < 5000);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const c of held) c.close();
  }
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("hub: downloads a (sharded) repo from a hub-like server, then works offline", async () => {
  const root = await tempDir();
  const repo = `${root}/repo`;
  await tiny(repo, "qwen2", { shards: 2 });
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    if (path.startsWith("/gated/")) return new Response("no", { status: 401 });
    const m = path.match(/^\/acme\/tiny\/resolve\/main\/([\w.-]+)$/);
    if (!m) return new Response("not found", { status: 404 });
    try {
      return new Response(await Deno.readFile(`${repo}/${m[1]}`));
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    const hubEndpoint = `http://127.0.0.1:${server.addr.port}/`;
    const cacheDir = `${root}/cache`;
    const ckpt = await openCheckpoint("acme/tiny", { cacheDir, hubEndpoint });
    try {
      assert.equal(ckpt.dir, await Deno.realPath(`${cacheDir}/acme/tiny`));
      assert.equal(ckpt.config.architecture, "qwen2");
      const local = await openCheckpoint(repo);
      try {
        for (const name of local.tensors.keys()) assert.deepEqual(await ckpt.read(name), await local.read(name));
      } finally {
        local.close();
      }
    } finally {
      ckpt.close();
    }
    const cached = await listDir(`${cacheDir}/acme/tiny`);
    for (
      const f of [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
      ]
    ) {
      assert.ok(cached.includes(f), f);
    }
    assert.ok(!cached.some((f) => f.includes(".tmp")));

    // Complete cached copy: no requests at all.
    const before = requests.length;
    (await openCheckpoint("acme/tiny", { cacheDir, hubEndpoint })).close();
    assert.equal(requests.length, before);

    await rejectsLoad(
      openCheckpoint("gated/model", { cacheDir, hubEndpoint }),
      /cannot access "gated\/model" on the Hugging Face hub \(HTTP 401 for config\.json\).*HF_TOKEN/,
    );
    await rejectsLoad(
      openCheckpoint("acme/absent", { cacheDir, hubEndpoint }),
      /"acme\/absent" on the Hugging Face hub has no config\.json \(HTTP 404\)/,
    );
  } finally {
    await server.shutdown();
  }
  await Deno.remove(root, { recursive: true });
});
