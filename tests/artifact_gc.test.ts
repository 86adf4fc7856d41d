/**
 * Garbage collection in the artifact store (S3-compatible: s3rver), through
 * the whole service: deleting a file or a fine-tuned model removes its
 * objects once nothing references them, and never while a job, an alias or
 * a loaded engine still uses them. Also the replica's bounded local cache:
 * least recently used entries go first, pinned ones never.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { loadConfig } from "../src/config.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { deltaKey } from "../src/registry/versions.ts";
import { createServices } from "../src/services.ts";
import { sha256Bytes } from "../src/store/artifact_store.ts";
import { LocalCache } from "../src/store/local_cache.ts";
import { waitFor } from "./helpers/fine_tuning.ts";
import { randomDeltas } from "./helpers/registry_fixtures.ts";
import { S3Server } from "./helpers/s3_server.ts";
import { tinyLlama } from "./helpers/service.ts";

type Json = Record<string, unknown>;

Deno.test({
  name: "artifact GC: files and fine-tuned models leave the S3 store once unreferenced, never before",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const root = await Deno.makeTempDir({ prefix: "artifact-gc-" });
    const s3 = await S3Server.start();
    const model = await tinyLlama(root);
    const dataDir = `${root}/data`;
    const env: Record<string, string> = { MODEL: model, DATA_DIR: dataDir, DEVICE: "cpu", ...s3.env("gc") };
    // The service reads the AWS variables through the SDK's default chain.
    for (const [k, v] of Object.entries(s3.env("gc"))) Deno.env.set(k, v);
    const services = await createServices(loadConfig(env), env, { logRequest: () => {} });
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, services.app.fetch);
    const base = `http://127.0.0.1:${server.addr.port}`;
    const call = async (method: string, path: string, body?: unknown, status = 200): Promise<Json> => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      assert.equal(res.status, status, `${method} ${path}: ${text}`);
      return JSON.parse(text);
    };
    const upload = async (text: string): Promise<string> => {
      const form = new FormData();
      form.append("purpose", "fine-tune");
      form.append("file", new File([text], "t.jsonl"));
      const res = await fetch(`${base}/v1/files`, { method: "POST", body: form });
      const out = await res.json();
      assert.equal(res.status, 200, JSON.stringify(out));
      return out.id;
    };
    try {
      await services.warm();
      assert.equal(services.artifacts.kind, "s3");

      await t.step("a file's object stays while a job or another file needs it", async () => {
        const text = '{"prompt":"a=","completion":"b"}\n'.repeat(4);
        const sha = sha256Bytes(new TextEncoder().encode(text));
        const key = `gc/files/${sha.slice(0, 2)}/${sha}`;
        const first = await upload(text), second = await upload(text);
        assert.deepEqual(await s3.keys("gc/files/"), [key], "equal content is stored once");
        // A job that has not ended names the first file.
        const job = await services.store.jobs.create({
          model,
          trainingFile: first,
          seed: 0,
          method: {},
          hyperparameters: {},
          status: "validating_files",
        });
        await call("DELETE", `/v1/files/${second}`);
        await call("DELETE", `/v1/files/${first}`);
        assert.deepEqual(await s3.keys("gc/files/"), [key], "kept: the queued job still needs it");
        await services.fineTuning.service.cancel(job.id);
        await waitFor("the object to go once the job ended", async () => (await s3.keys("gc/files/")).length === 0);
        // Nothing is left on the local disk either.
        assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dataDir}/files/.tmp`)), []);
      });

      await t.step("a fine-tuned model's objects stay while an alias, a job or a loaded engine uses them", async () => {
        const fileId = await upload('{"prompt":"a=","completion":"b"}\n');
        const ckpt = await openCheckpoint(model);
        const deltas = randomDeltas(ckpt.config, { seed: 3, rank: 2, terms: 2, scale: 0.05 });
        ckpt.close();
        const running = await services.store.jobs.create({
          model,
          trainingFile: fileId,
          seed: 0,
          method: {},
          hyperparameters: {},
          status: "validating_files",
        });
        const name = `ft:${model}:gc:${running.id}`;
        const record = await services.versions.createVersion({
          name,
          kind: "final",
          jobId: running.id,
          baseModel: model,
          deltas,
        });
        const key = `gc/${deltaKey(record.contentHash)}`;
        assert.ok((await s3.keys("gc/versions/")).includes(key), "uploaded before the row was written");

        const enc = encodeURIComponent(name);
        // Its job has not ended: 409, nothing removed.
        await call("DELETE", `/v1/models/${enc}`, undefined, 409);
        await services.fineTuning.service.cancel(running.id);
        // An alias points at it: 409, nothing removed.
        await call("PUT", "/v1/aliases/gc-prod", { target: name });
        await call("DELETE", `/v1/models/${enc}`, undefined, 409);
        assert.ok((await s3.keys("gc/versions/")).includes(key));
        await call("PUT", "/v1/aliases/gc-prod", { target: model });

        // An export lives in the store (and downloads from it).
        const exported = await call("POST", `/v1/versions/${record.id}/export`, { format: "hf" });
        const exportKeys = await s3.keys(`gc/exports/${record.id}/`);
        assert.ok(exportKeys.some((k) => k.endsWith("/model.safetensors")), exportKeys.join("\n"));
        const listed = (exported.files as Json[]).find((f) => f.name === "config.json")!;
        const dl = await fetch(`${base}${listed.url}`);
        assert.equal(dl.status, 200);
        assert.equal(await dl.text(), await Deno.readTextFile(`${model}/config.json`));

        // A request in flight on its engine: the delete answers at once; the objects go after it finished.
        const removed: { key: string; at: number }[] = [];
        const artifacts = services.versions.artifacts;
        const realDelete = artifacts.delete.bind(artifacts);
        artifacts.delete = async (k: string) => {
          removed.push({ key: k, at: performance.now() });
          await realDelete(k);
        };
        const stream = await fetch(`${base}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: name, prompt: "ab", max_tokens: 1200, ignore_eos: true, stream: true }),
        });
        assert.equal(stream.status, 200);
        const reader = stream.body!.getReader();
        await reader.read(); // the request is running on the version's engine
        await call("DELETE", `/v1/models/${enc}`);
        assert.ok((await s3.keys("gc/versions/")).includes(key), "kept while the engine serves a request");
        let body = "";
        const decoder = new TextDecoder();
        for (let r = await reader.read(); !r.done; r = await reader.read()) body += decoder.decode(r.value);
        const streamEnded = performance.now();
        assert.ok(body.includes('"finish_reason":"length"'), "the in-flight request finished normally");
        assert.ok(!body.includes('"error"'));
        await services.versions.collected();
        artifacts.delete = realDelete;
        assert.ok(!(await s3.keys("gc/versions/")).includes(key), "the delta left the store");
        assert.deepEqual(await s3.keys(`gc/exports/${record.id}/`), [], "the export left the store");
        const deltaRemoval = removed.find((r) => r.key === deltaKey(record.contentHash));
        assert.ok(deltaRemoval && deltaRemoval.at >= streamEnded - 50, "removed only after the request finished");
        // And the local cache copies.
        assert.equal(await Deno.stat(`${dataDir}/versions/${record.contentHash}`).then(() => true, () => false), false);
        await call("GET", `/v1/models/${enc}`, undefined, 404);
      });
    } finally {
      await server.shutdown();
      await services.close();
      await s3.stop();
      for (const k of Object.keys(s3.env("gc"))) Deno.env.delete(k);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("local cache: least recently used entries go past the budget, pinned ones never", async () => {
  const root = await Deno.makeTempDir({ prefix: "local-cache-" });
  try {
    const entry = async (rel: string, bytes: number) => {
      await Deno.mkdir(`${root}/${rel}`, { recursive: true });
      await Deno.writeFile(`${root}/${rel}/data`, new Uint8Array(bytes));
      return `${root}/${rel}`;
    };
    const cache = new LocalCache({ root, budgetBytes: 2500, roots: ["versions", "compiled/patched"], log: () => {} });
    const a = await entry("versions/a", 1000);
    const b = await entry("versions/b", 1000);
    const c = await entry("compiled/patched/c", 1000);
    await entry("hub/never", 5000); // not a cached root: never evicted, never counted
    cache.touch(a);
    await new Promise((r) => setTimeout(r, 5));
    cache.touch(b);
    await new Promise((r) => setTimeout(r, 5));
    cache.touch(c);
    assert.equal(await cache.usage(), 3000);
    // Later than c's use by the clock's millisecond: pinning is a use of a, and a tie with c would make the
    // eviction order below a coin toss.
    await new Promise((r) => setTimeout(r, 5));
    const unpinA = cache.pin(`${a}/data`);
    assert.deepEqual(await cache.enforce(), [b], "a is older but pinned: b goes");
    assert.equal(await cache.usage(), 2000);
    await entry("versions/d", 1000);
    cache.touch(`${root}/versions/d`);
    unpinA();
    // Pinning counted as a use of a: c is the least recently used now.
    assert.deepEqual(await cache.enforce(), [c]);
    assert.ok(await Deno.stat(`${root}/hub/never/data`));
    // Hard links (serving directories link the base's weights) count once per link set.
    await Deno.link(`${root}/versions/d/data`, `${root}/versions/a/linked`);
    assert.equal(await cache.usage(), 2000);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
