/**
 * Aliases with hot-swap on PGlite and a generated tiny model: a switch under
 * 16 concurrent streaming requests (zero errors; requests after the switch
 * get the new version), a failed validation (NaN delta) that leaves the old
 * target serving and records why, rollback, replicas following NOTIFY, and
 * the aliases/versions HTTP API with its error envelopes.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../routes/app_env.ts";
import { aliasesRoutes } from "../routes/aliases.ts";
import { errorResponse, toApiError } from "../routes/errors.ts";
import { versionsRoutes } from "../routes/versions.ts";
import { buildApp } from "../src/app.ts";
import { RegistryError } from "../src/registry/errors.ts";
import { AliasCoordinator, type AliasEvent, rollbackTarget } from "../src/registry/hot_swap.ts";
import { ModelRegistry } from "../src/registry/model_registry.ts";
import type { LayerDelta } from "../src/train/layer_delta.ts";
import type { Store } from "../src/store/store.ts";
import {
  openRegistryFixture,
  randomDeltas,
  type RegistryFixture,
  tinyModel,
  withSharedStore,
} from "./helpers/registry_fixtures.ts";

const PROMPT = [84, 104, 101, 32, 99, 97, 116, 32, 115, 97, 116];

function request(maxTokens: number) {
  return { promptIds: PROMPT, maxTokens, sampling: { temperature: 0, topP: 1, topK: 0 }, stop: [], stopTokenIds: [] };
}

interface Outcome {
  id: string;
  text: string;
  /** performance.now() when the request started (HTTP) or resolve answered (direct). */
  resolvedAt: number;
}

/** One streaming request through the registry, as a route does it: resolve, then generate and consume. */
async function stream(f: RegistryFixture, model: string, maxTokens: number): Promise<Outcome> {
  const served = await f.registry.resolve(model);
  const resolvedAt = performance.now();
  assert.ok(served, `resolve(${model})`);
  let text = "";
  for await (const ev of served.engine.generate(request(maxTokens))) text += ev.text;
  return { id: served.id, text, resolvedAt };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function deltas(f: RegistryFixture, seed: number): LayerDelta[] {
  return randomDeltas(f.config, { seed, rank: 4, terms: 2, scale: 0.3 });
}

function nanDeltas(f: RegistryFixture): LayerDelta[] {
  const d = deltas(f, 99);
  d[3].terms[0].U[5] = NaN;
  return d;
}

async function rejectsWith(p: Promise<unknown>, code: RegistryError["kind"]): Promise<RegistryError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof RegistryError, `expected RegistryError, got ${e}`);
    assert.equal(e.kind, code, e.message);
    return e;
  }
  assert.fail(`expected RegistryError ${code}`);
}

/** Completions with `stream: true` through the real app (the registry is its model resolver). */
async function httpStream(app: OpenAPIHono<AppEnv>, model: string, maxTokens: number): Promise<Outcome> {
  const startedAt = performance.now();
  const res = await app.request("/v1/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt: "The cat sat", max_tokens: maxTokens, temperature: 0, stream: true }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const events = (await res.text()).split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
  assert.equal(events.at(-1), "[DONE]");
  let text = "", id = "";
  for (const data of events.slice(0, -1)) {
    const chunk = JSON.parse(data);
    assert.equal(chunk.error, undefined, `stream error: ${data}`);
    id = chunk.model;
    text += chunk.choices[0]?.text ?? "";
  }
  return { id, text, resolvedAt: startedAt };
}

async function switchUnderLoad(f: RegistryFixture): Promise<void> {
  const app = buildApp({ models: f.registry, ready: () => true, logRequest: () => {} });
  const v1 = await f.versions.createVersion(f.version("v1", deltas(f, 1)));
  await f.coordinator.set("prod", f.baseId, "initial");
  const maxTokens = 48;
  const runs: Promise<Outcome>[] = [];
  // Eight streams in flight, then the switch (loads and validates v1) while more keep arriving.
  for (let i = 0; i < 8; i++) {
    runs.push(httpStream(app, "prod", maxTokens));
    await sleep(10);
  }
  let switchedAt = Infinity;
  const swap = f.coordinator.set("prod", v1.name, "ship v1").then((s) => {
    switchedAt = performance.now();
    return s;
  });
  while (switchedAt === Infinity && runs.length < 12) {
    runs.push(httpStream(app, "prod", maxTokens));
    await sleep(10);
  }
  const result = await swap;
  assert.equal(result.serving, v1.name);
  assert.equal(result.changed, true);
  while (runs.length < 16) runs.push(httpStream(app, "prod", maxTokens));
  const outcomes = await Promise.all(runs); // any non-200 or stream error fails here

  // Reference outputs per model (greedy, so deterministic).
  const ref = new Map<string, string>();
  for (const id of [f.baseId, v1.name]) ref.set(id, (await httpStream(app, id, maxTokens)).text);
  assert.notEqual(ref.get(f.baseId), ref.get(v1.name), "the versions must be distinguishable");
  for (const o of outcomes) assert.equal(o.text, ref.get(o.id), `request served by ${o.id} returned its model's text`);
  const after = outcomes.filter((o) => o.resolvedAt > switchedAt);
  assert.ok(after.length >= 4);
  for (const o of after) assert.equal(o.id, v1.name, "requests started after the switch get the new version");
  assert.ok(
    outcomes.filter((o) => o.id === f.baseId).length >= 8,
    "requests before the switch finished on the old engine",
  );
  assert.equal((await f.store.aliases.get("prod")).target, v1.name);
}

async function failedValidation(f: RegistryFixture): Promise<void> {
  const good = await f.versions.createVersion(f.version("good", deltas(f, 2)));
  const bad = await f.versions.createVersion(f.version("nan", nanDeltas(f)));
  await f.coordinator.set("prod", good.name);
  const before = await stream(f, "prod", 16);
  const err = await rejectsWith(f.coordinator.set("prod", bad.name, "ship nan"), "validation_failed");
  assert.match(err.message, /non-finite/);
  assert.equal(f.registry.aliasTarget("prod"), good.name, "the old version keeps serving");
  assert.equal((await f.store.aliases.get("prod")).target, good.name, "the store never pointed at the bad version");
  const rejected = f.coordinator.events("prod")[0];
  assert.equal(rejected.type, "rejected");
  assert.equal(rejected.to, bad.name);
  assert.match(rejected.reason ?? "", /validation failed: non-finite/);
  assert.equal((await stream(f, "prod", 16)).text, before.text);
  assert.equal(f.registry.pool.peek(bad.name), undefined, "the broken engine is not kept");
}

async function rollback(f: RegistryFixture): Promise<void> {
  const v1 = await f.versions.createVersion(f.version("r1", deltas(f, 3)));
  const v2 = await f.versions.createVersion(f.version("r2", deltas(f, 4)));
  await f.coordinator.set("prod", f.baseId);
  await f.coordinator.set("prod", v1.name);
  const t1 = (await stream(f, "prod", 16)).text;
  await f.coordinator.set("prod", v2.name);
  const t2 = await stream(f, "prod", 16);
  assert.equal(t2.id, v2.name);
  assert.notEqual(t2.text, t1);
  const back = await f.coordinator.rollback("prod", "v2 regressed");
  assert.equal(back.serving, v1.name);
  const again = await stream(f, "prod", 16);
  assert.equal(again.id, v1.name);
  assert.equal(again.text, t1, "rollback restores the previous target's behaviour");
  assert.equal((await f.coordinator.rollback("prod")).serving, f.baseId);
  await rejectsWith(f.coordinator.rollback("prod"), "no_previous_target");
  await rejectsWith(f.coordinator.rollback("nope"), "not_found");
  const history = (await f.coordinator.history("prod")).data;
  assert.deepEqual(history.map((h) => `${h.action}:${h.next.target}`), [
    `rollback:${f.baseId}`,
    `rollback:${v1.name}`,
    `set:${v2.name}`,
    `set:${v1.name}`,
    `set:${f.baseId}`,
  ]);
  assert.equal(history[2].reason, null);
  assert.equal(history[1].reason, "v2 regressed");
  assert.equal(rollbackTarget(history), null);
}

async function replicas(f: RegistryFixture): Promise<void> {
  // Replica B: its own registry and coordinator on the same store and artifacts.
  const eventsB: AliasEvent[] = [];
  const registryB = new ModelRegistry({ versions: f.versions, threads: 1 });
  const coordB = new AliasCoordinator({ store: f.store, registry: registryB, onEvent: (e) => eventsB.push(e) });
  try {
    await f.coordinator.set("prod", f.baseId);
    await coordB.start();
    assert.equal(coordB.serving("prod"), f.baseId);
    const v = await f.versions.createVersion(f.version("rep", deltas(f, 5)));
    await f.coordinator.set("prod", v.name);
    for (let i = 0; i < 200 && coordB.serving("prod") !== v.name; i++) await sleep(25);
    assert.equal(coordB.serving("prod"), v.name, "replica B followed the NOTIFY after validating");
    assert.equal(eventsB.at(-1)?.action, "sync");
    assert.ok((await registryB.resolve("prod"))?.id === v.name);

    // A target written without validation (e.g. by a faulty replica) is rejected here; the old one stays.
    const bad = await f.versions.createVersion(f.version("rep-nan", nanDeltas(f)));
    await f.store.aliases.set("prod", { kind: "version", version: bad.id }, "unvalidated");
    for (let i = 0; i < 200 && !eventsB.some((e) => e.type === "rejected"); i++) await sleep(25);
    const rejected = eventsB.find((e) => e.type === "rejected");
    assert.ok(rejected, "replica B rejected the bad target");
    assert.match(rejected.reason ?? "", /non-finite/);
    assert.equal(coordB.serving("prod"), v.name);
  } finally {
    await coordB.close();
    await registryB.close();
  }
}

async function http(f: RegistryFixture): Promise<void> {
  const app = new OpenAPIHono<AppEnv>();
  app.route("/", aliasesRoutes({ coordinator: f.coordinator }));
  app.route("/", versionsRoutes({ versions: f.versions }));
  app.onError((err, c) => errorResponse(c, toApiError(err)));
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  };
  const v = await f.versions.createVersion(f.version("api", deltas(f, 6)));

  let r = await call("PUT", "/v1/aliases/prod", { target: f.baseId });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  r = await call("PUT", "/v1/aliases/prod", { target: v.name, reason: "ship" });
  assert.equal(r.status, 200);
  assert.equal(r.json.object, "model.alias");
  assert.equal(r.json.target, v.name);
  assert.equal(r.json.serving, v.name);
  assert.equal(r.json.switch.type, "switched");

  r = await call("PUT", "/v1/aliases/a:b", { target: v.name });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, "invalid_alias");
  r = await call("PUT", `/v1/aliases/${"x".repeat(65)}`, { target: v.name });
  assert.equal(r.status, 400);
  r = await call("PUT", `/v1/aliases/${f.baseId}`, { target: v.name });
  assert.equal(r.status, 409, "an alias may not shadow a base model");
  r = await call("PUT", "/v1/aliases/other", { target: "ft:missing" });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.param, "target");
  r = await call("PUT", "/v1/aliases/other", { target: "prod" });
  assert.equal(r.status, 400, "an alias may not point at an alias");
  r = await call("PUT", "/v1/aliases/other", {});
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, "target");

  r = await call("GET", "/v1/aliases");
  assert.deepEqual(r.json.data.map((a: { name: string }) => a.name), ["prod"]);
  r = await call("GET", "/v1/aliases/prod");
  assert.equal(r.json.history.length, 2);
  assert.equal(r.json.history[0].reason, "ship");
  assert.equal(r.json.events[0].type, "switched");
  assert.equal((await call("GET", "/v1/aliases/nope")).status, 404);

  r = await call("POST", "/v1/aliases/prod/rollback");
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.serving, f.baseId);
  r = await call("POST", "/v1/aliases/prod/rollback", { reason: "again" });
  assert.equal(r.status, 409);
  assert.equal(r.json.error.code, "no_previous_target");
  assert.equal((await call("POST", "/v1/aliases/nope/rollback")).status, 404);

  r = await call("GET", "/v1/versions");
  assert.equal(r.json.object, "list");
  assert.equal(r.json.data[0].name, v.name);
  assert.equal(r.json.data[0].kind, "final");
  r = await call("GET", `/v1/versions/${v.name}`);
  assert.equal(r.json.id, v.id);
  assert.equal(r.json.layers.length, f.config.numLayers * 7);
  r = await call("GET", `/v1/versions/${encodeURIComponent(v.name)}`);
  assert.equal(r.json.id, v.id);
  assert.equal((await call("GET", "/v1/versions/ft:nope")).status, 404);
  r = await call("POST", `/v1/versions/${v.id}/export`, { format: "hf" });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  // A path relative to DATA_DIR (never the server's absolute path) and a download URL per file.
  assert.equal(r.json.path, `exports/${v.id}/hf`);
  assert.equal(r.json.export, "hf");
  const weights = r.json.files.find((x: { name: string }) => x.name === "model.safetensors");
  assert.equal(weights.url, `/v1/versions/${v.id}/export/hf/files/model.safetensors`);
  const download = await app.request(weights.url);
  assert.equal(download.status, 200);
  const bytes = new Uint8Array(await download.arrayBuffer());
  assert.equal(bytes.length, weights.bytes);
  assert.deepEqual(bytes, await Deno.readFile(`${f.dataDir}/${r.json.path}/model.safetensors`));
  // Only listed names: traversal, unknown files, exports not made and unknown versions are 404.
  for (
    const bad of [
      `/v1/versions/${v.id}/export/hf/files/..%2F..%2Fversions`,
      `/v1/versions/${v.id}/export/hf/files/../../../etc/passwd`,
      `/v1/versions/${v.id}/export/hf/files/%2Fetc%2Fpasswd`,
      `/v1/versions/${v.id}/export/hf/files/.export-complete`,
      `/v1/versions/${v.id}/export/onnx-float32/files/config.json`,
      `/v1/versions/ftver-nope/export/hf/files/config.json`,
    ]
  ) {
    const res = await app.request(bad);
    assert.ok(res.status === 404 || res.status === 400, `${bad}: ${res.status}`);
    assert.equal(typeof (await res.json()).error.message, "string");
  }
  r = await call("POST", `/v1/versions/${v.name}/export`, { format: "zip" });
  assert.equal(r.status, 400);
}

Deno.test("aliases and hot-swap (one PGlite store)", async (t) => {
  const root = await Deno.makeTempDir();
  const { dir } = await tinyModel(`${root}/model`);
  try {
    await withSharedStore(async (store: Store) => {
      const step = (name: string, fn: (f: RegistryFixture) => Promise<void>) =>
        t.step(name, async () => {
          const f = await openRegistryFixture({ store, modelDir: dir });
          try {
            await fn(f);
          } finally {
            await f.close();
          }
        });
      await step(
        "alias switch under 16 concurrent streaming HTTP requests: zero errors, new version after",
        switchUnderLoad,
      );
      await step("failed validation (NaN delta) leaves the old version serving and records why", failedValidation);
      await step("rollback restores the previous target's behaviour", rollback);
      await step("replicas follow alias changes via NOTIFY and reject targets that fail validation", replicas);
      await step("HTTP: aliases and versions routes with OpenAI error envelopes", http);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
