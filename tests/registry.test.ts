/**
 * Versions and the model registry on PGlite with a generated tiny model and
 * synthetic low-rank deltas: storage choice per layer, hashes, idempotence,
 * the version WeightSource (exactly base + Σ U Vᵀ), the patched serving graph
 * (same logits as a merged-weights model), exports (HF reload, transformers.js
 * parity), and LRU eviction that never cuts a request short.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { AutoModelForCausalLM, type PreTrainedModel, Tensor } from "@huggingface/transformers";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { weightLayout } from "../src/model/layout.ts";
import { servingModelPath } from "../src/model/serving_graph.ts";
import { configureTransformersOffline } from "../src/model/tokenizer.ts";
import { chooseFormat, concatFactors } from "../src/registry/delta_codec.ts";
import { RegistryError, type RegistryErrorCode } from "../src/registry/errors.ts";
import type { LayerDelta } from "../src/train/layer_delta.ts";
import { versionWeightSource } from "../src/registry/version_source.ts";
import { createSession } from "../src/runtime/session.ts";
import { CausalLM } from "../src/runtime/causal_lm.ts";
import type { GenerationEvent } from "../src/serve/engine_types.ts";
import type { PoolEvent } from "../src/registry/engine_pool.ts";
import { type LayerInfo } from "../src/registry/delta_artifact.ts";
import { versionMetadata } from "../src/registry/versions.ts";
import type { Store } from "../src/store/store.ts";
import {
  openRegistryFixture,
  randomDeltas,
  type RegistryFixture,
  tinyModel,
  withSharedStore,
} from "./helpers/registry_fixtures.ts";

async function rejectsWith(p: Promise<unknown>, code: RegistryErrorCode): Promise<RegistryError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof RegistryError, `expected RegistryError, got ${e}`);
    assert.equal(e.kind, code, e.message);
    return e;
  }
  assert.fail(`expected RegistryError ${code}`);
}

/** Layer 0: rank 2 x 2 terms (low-rank); layer 1 q_proj: rank 16 x 3 terms (K·(m+n) ≥ m·n → dense). */
function mixedDeltas(f: RegistryFixture, seed: number, scale = 0.2): LayerDelta[] {
  return [
    ...randomDeltas(f.config, { seed, rank: 2, terms: 2, scale, layers: [0] }),
    ...randomDeltas(f.config, {
      seed,
      rank: 16,
      terms: 3,
      scale: scale / 2,
      layers: [1],
      linears: ["self_attn.q_proj"],
    }),
  ];
}

/** base + Σ_t U_t V_tᵀ in f64, terms in order, rounded to f32 once (the documented definition). */
function referenceMerge(W: Float32Array, d: LayerDelta): Float32Array {
  const out = new Float32Array(W.length);
  for (let i = 0; i < d.m; i++) {
    for (let j = 0; j < d.n; j++) {
      let acc = 0;
      for (const t of d.terms) for (let l = 0; l < t.k; l++) acc += t.U[i * t.k + l] * t.V[j * t.k + l];
      out[i * d.n + j] = W[i * d.n + j] + acc;
    }
  }
  return out;
}

async function lmFor(dir: string, config: RegistryFixture["config"]): Promise<CausalLM> {
  return new CausalLM(
    config,
    await createSession(servingModelPath(dir, "float32"), { device: "cpu", threads: 1 }),
    "float32",
  );
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

const PROMPT = [72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100];

Deno.test("delta codec: low-rank while K·(m+n) < m·n, else dense; concatenation keeps term order", () => {
  const term = (m: number, n: number, k: number, v: number) => ({
    U: new Float32Array(m * k).fill(v),
    V: new Float32Array(n * k).fill(v),
    k,
  });
  assert.equal(chooseFormat({ name: "a", m: 64, n: 64, terms: [term(64, 64, 31, 1)] }), "lowrank");
  assert.equal(chooseFormat({ name: "a", m: 64, n: 64, terms: [term(64, 64, 32, 1)] }), "dense");
  assert.equal(chooseFormat({ name: "a", m: 64, n: 64, terms: [term(64, 64, 16, 1), term(64, 64, 16, 1)] }), "dense");
  const d = { name: "a", m: 2, n: 3, terms: [term(2, 3, 1, 1), term(2, 3, 2, 2)] };
  const { U, V, K } = concatFactors(d);
  assert.equal(K, 3);
  assert.deepEqual([...U], [1, 2, 2, 1, 2, 2]);
  assert.deepEqual([...V], [1, 2, 2, 1, 2, 2, 1, 2, 2]);
});

async function versionsCase(store: Store): Promise<void> {
  const f = await openRegistryFixture({ store });
  try {
    const deltas = mixedDeltas(f, 1);
    const v = await f.versions.createVersion(f.version("mixed", deltas));
    assert.match(v.contentHash, /^[0-9a-f]{64}$/);
    assert.equal(v.deltaFormat, "dense"); // mixed: at least one dense layer
    assert.equal(v.baseModel, f.baseId);
    assert.equal(v.artifactPath, `versions/${v.contentHash}/delta.safetensors`);
    assert.equal((await Deno.stat(`${f.dataDir}/${v.artifactPath}`)).size, v.sizeBytes);
    const meta = versionMetadata(v);
    assert.equal(meta.kind, "final");
    const formats = Object.fromEntries(meta.layers.map((l: LayerInfo) => [l.name, `${l.format}:${l.dtype}:${l.rank}`]));
    assert.equal(formats["model.layers.0.self_attn.q_proj"], "lowrank:F32:4");
    assert.equal(formats["model.layers.0.mlp.down_proj"], "lowrank:F32:4");
    assert.equal(formats["model.layers.1.self_attn.q_proj"], "dense:F16:48");

    // Same name + same content: the same row. Same content, other name: a new row sharing the artifact.
    const again = await f.versions.createVersion(f.version("mixed", mixedDeltas(f, 1)));
    assert.equal(again.id, v.id);
    const twin = await f.versions.createVersion(f.version("twin", mixedDeltas(f, 1)));
    assert.notEqual(twin.id, v.id);
    assert.equal(twin.contentHash, v.contentHash);
    // Other content under a taken name: conflict.
    await rejectsWith(f.versions.createVersion(f.version("mixed", mixedDeltas(f, 2))), "conflict");

    const ckpt = await f.versions.createVersion(
      f.version(
        "mixed:ckpt-step-10",
        randomDeltas(f.config, { seed: 3, rank: 2, terms: 1, scale: 0.1, layers: [0] }),
        "checkpoint",
      ),
    );
    assert.equal(versionMetadata(ckpt).kind, "checkpoint");
    assert.equal(ckpt.deltaFormat, "lowrank");
    assert.equal((await f.versions.get(v.id)).name, v.name);
    assert.equal((await f.versions.get(v.name)).id, v.id);
    assert.equal((await f.versions.list({ limit: 10 })).data.length, 3);

    // Deltas that do not fit the base.
    const bad = randomDeltas(f.config, {
      seed: 4,
      rank: 2,
      terms: 1,
      scale: 0.1,
      layers: [0],
      linears: ["self_attn.q_proj"],
    });
    await rejectsWith(f.versions.createVersion(f.version("bad1", [{ ...bad[0], m: 7 }])), "invalid_delta");
    await rejectsWith(
      f.versions.createVersion(f.version("bad2", [{ ...bad[0], name: "model.layers.9.mlp.up_proj" }])),
      "invalid_delta",
    );
    await rejectsWith(f.versions.createVersion(f.version("bad3", [bad[0], bad[0]])), "invalid_delta");
    await rejectsWith(f.versions.createVersion({ ...f.version("x", bad), name: "no-prefix" }), "invalid_delta");
    await rejectsWith(f.versions.createVersion({ ...f.version("x", bad), baseModel: "/nonexistent" }), "not_found");
  } finally {
    await f.close();
  }
}

async function weightsCase(store: Store): Promise<void> {
  const f = await openRegistryFixture({ store });
  try {
    const deltas = mixedDeltas(f, 5);
    const v = await f.versions.createVersion(f.version("w", deltas));
    const ckpt = await openCheckpoint(f.modelDir);
    const artifact = await f.versions.openArtifact(v);
    const source = versionWeightSource(ckpt, artifact);
    const byWeight = new Map(deltas.map((d) => [`${d.name}.weight`, d]));
    for (const { name } of weightLayout(f.config)) {
      const base = await ckpt.read(name);
      const got = await source.read(name);
      const d = byWeight.get(name);
      if (!d) {
        assert.deepEqual(got, base, name);
        continue;
      }
      const ref = referenceMerge(base, d);
      if (chooseFormat(d) === "lowrank") {
        assert.deepEqual(got, ref, `${name}: low-rank merge must be exact`);
      } else {
        // Dense delta stored in f16: per element |err| ≤ half an f16 ulp of the delta.
        for (let i = 0; i < ref.length; i++) {
          const delta = ref[i] - base[i];
          assert.ok(Math.abs(got[i] - ref[i]) <= Math.abs(delta) * 2 ** -11 + 1e-6, `${name}[${i}]`);
        }
      }
    }
    ckpt.close();
    artifact.close();

    // The patched serving graph (delta folded by ORT) vs. the merged weights exported as a HF checkpoint.
    const served = await lmFor(await f.versions.servingDir(v), f.config);
    const hfDir = await f.versions.exportVersion(v.name, "hf");
    const merged = await lmFor(await f.versions.servingDir(v, "full"), f.config);
    const base = await lmFor(await f.versions.baseServingDir(f.baseId), f.config);
    const ours = (await served.forward({ inputIds: [PROMPT] })).logits;
    const ref = (await merged.forward({ inputIds: [PROMPT] })).logits;
    const baseLogits = (await base.forward({ inputIds: [PROMPT] })).logits;
    assert.ok(maxRelDiff(ours, ref) < 1e-4, `patched vs merged: ${maxRelDiff(ours, ref)}`);
    assert.ok(maxRelDiff(baseLogits, ref) > 1e-2, "the delta must change the logits");
    for (const lm of [served, merged, base]) await lm.session.release();

    // HF export reloads and holds exactly the version's weights (f32 base → f32 export).
    const exported = await openCheckpoint(hfDir);
    const again = await openCheckpoint(f.modelDir);
    const artifact2 = await f.versions.openArtifact(v);
    const src2 = versionWeightSource(again, artifact2);
    for (const { name } of weightLayout(f.config)) {
      assert.deepEqual(await exported.read(name), await src2.read(name), name);
    }
    assert.deepEqual(exported.rawConfig, again.rawConfig);
    for (const file of ["tokenizer.json", "generation_config.json"]) await Deno.stat(`${hfDir}/${file}`);
    exported.close();
    again.close();
    artifact2.close();
    assert.equal(await f.versions.exportVersion(v.id, "hf"), hfDir, "exports are reused");
  } finally {
    await f.close();
  }
}

async function onnxExportCase(store: Store): Promise<void> {
  const f = await openRegistryFixture({ store, arch: "qwen3" });
  try {
    const v = await f.versions.createVersion(f.version("tjs", mixedDeltas(f, 7)));
    const dir = await f.versions.exportVersion(v.name, "onnx");
    configureTransformersOffline();
    const tjs = await AutoModelForCausalLM.from_pretrained(dir, {
      local_files_only: true,
      dtype: "fp32",
    }) as PreTrainedModel;
    const ids = new Tensor("int64", BigInt64Array.from(PROMPT.map(BigInt)), [1, PROMPT.length]);
    const mask = new Tensor("int64", BigInt64Array.from(PROMPT.map(() => 1n)), [1, PROMPT.length]);
    const tjsLogits = (await tjs({ input_ids: ids, attention_mask: mask })).logits.data as Float32Array;
    const served = await lmFor(await f.versions.servingDir(v), f.config);
    const ours = (await served.forward({ inputIds: [PROMPT] })).logits;
    assert.ok(maxRelDiff(tjsLogits, ours) < 1e-4, `transformers.js vs ours: ${maxRelDiff(tjsLogits, ours)}`);
    await tjs.dispose();
    await served.session.release();
  } finally {
    await f.close();
  }
}

function request(maxTokens: number) {
  return {
    promptIds: PROMPT,
    maxTokens,
    sampling: { temperature: 0, topP: 1, topK: 0 },
    stop: [],
    stopTokenIds: [],
  };
}

async function collect(events: AsyncIterable<GenerationEvent> | AsyncIterator<GenerationEvent>) {
  const it = Symbol.asyncIterator in events ? events[Symbol.asyncIterator]() : events;
  let text = "", tokens = 0;
  for (let r = await it.next(); !r.done; r = await it.next()) {
    text += r.value.text;
    if (r.value.type === "token") tokens++;
  }
  return { text, tokens };
}

async function lruCase(store: Store): Promise<void> {
  const root = await Deno.makeTempDir();
  const { dir, parameterCount } = await tinyModel(`${root}/model`);
  const pool: PoolEvent[] = [];
  // Room for one engine at a time: every load evicts the other.
  const f = await openRegistryFixture({
    modelDir: dir,
    store,
    registry: { memoryBudgetBytes: parameterCount * 4 + 1, onPoolEvent: (e) => pool.push(e) },
  });
  try {
    const v = await f.versions.createVersion(
      f.version("a", randomDeltas(f.config, { seed: 9, rank: 4, terms: 1, scale: 0.3 })),
    );
    assert.equal(await f.registry.resolve("nope"), null);
    assert.deepEqual(f.registry.list().map((m) => m.id).sort(), [f.baseId, v.name].sort());

    const onBase = await f.registry.resolve(f.baseId);
    assert.ok(onBase);
    assert.equal(onBase.id, f.baseId);
    // A long generation on the base; after its first token, loading the version evicts the base.
    const it = onBase.engine.generate(request(200))[Symbol.asyncIterator]();
    const first = await it.next();
    const byId = await f.registry.resolve(v.id);
    assert.ok(byId);
    assert.equal(byId.id, v.name);
    assert.deepEqual(f.registry.pool.ready().map((e) => e.key), [v.name]);
    assert.ok(pool.some((e) => e.type === "evicted" && e.key === f.baseId), "the base was evicted");
    const rest = await collect(it);
    assert.equal(rest.tokens + (first.done ? 0 : 1), 200, "the evicted engine finished the request");
    const longText = (first.done ? "" : first.value.text) + rest.text;
    const versionText = (await collect(byId.engine.generate(request(8)))).text;

    // A resolved model keeps its engine even when evicted before it generates.
    const held = await f.registry.resolve(f.baseId); // evicts the version
    assert.ok(held);
    const again = await f.registry.resolve(v.name); // evicts the base, which `held` still holds
    assert.ok(again);
    assert.equal((await collect(held.engine.generate(request(200)))).text, longText, "same text from the held base");
    assert.equal((await collect(again.engine.generate(request(8)))).text, versionText);
    assert.notEqual(versionText, longText.slice(0, versionText.length), "the version behaves differently");
    assert.deepEqual(f.registry.loaded().map((m) => m.id), [v.name]);
    await f.registry.pool.close();
    assert.ok(pool.filter((e) => e.type === "closed").length >= 3);
  } finally {
    await f.close();
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("versions and registry (one PGlite store)", async (t) => {
  await withSharedStore(async (store) => {
    await t.step(
      "versions: per-layer format, content hash, idempotence, conflict, validation",
      () => versionsCase(store),
    );
    await t.step(
      "version weights: base + Σ U Vᵀ exactly (low-rank), within f16 rounding (dense); compiled logits = merged model; HF export",
      () => weightsCase(store),
    );
    await t.step(
      "version ONNX export loads in transformers.js with the same logits as our engine",
      () => onnxExportCase(store),
    );
    await t.step(
      "registry: resolves bases and versions, lists every id; LRU eviction never cuts a request",
      () => lruCase(store),
    );
  });
});
