/**
 * `DELETE /v1/models/{model}` through the whole service and the official
 * client (`client.models.delete`), on PGlite and PostgreSQL: a fine-tuned
 * version is deleted with its artifacts (delta, serving directory, exports)
 * and its engine; 409 while an alias points at it or its job has not ended;
 * base models 403, aliases 400, unknown ids 404. `GET /v1/models` tells base
 * models, versions and aliases apart by `owned_by`.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadConfig } from "../src/config.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { tinyLlama } from "./helpers/service.ts";
import { OWNED_BY } from "../src/registry/model_registry.ts";
import { createServices } from "../src/services.ts";
import { pathExists } from "../src/path_checks.ts";
import { randomDeltas } from "./helpers/registry_fixtures.ts";
import { createTestDatabase, storeBackends } from "./helpers/store_backends.ts";

async function apiError(
  p: Promise<unknown>,
  status: number,
  code?: string | null,
): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, status, e.message);
    if (code !== undefined) assert.equal(e.code ?? null, code, e.message);
    const body = e.error as { message?: unknown; type?: unknown };
    assert.equal(typeof body.message, "string");
    assert.equal(typeof body.type, "string");
    return e;
  }
  throw new Error(`expected HTTP ${status}`);
}

for (const backend of storeBackends) {
  Deno.test({
    name: `DELETE /v1/models/{model} and owned_by [${backend.name}]${
      backend.skip ? ` (skipped: ${backend.skip})` : ""
    }`,
    ignore: backend.skip !== null,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const root = await Deno.makeTempDir({ prefix: "scalora-delete-" });
      const db = backend.name === "postgres" ? await createTestDatabase() : null;
      const model = await tinyLlama(root, 31);
      const dataDir = `${root}/data`;
      const env: Record<string, string> = {
        MODEL: model,
        DATA_DIR: dataDir,
        DEVICE: "cpu",
        ...(db ? { DATABASE_URL: db.url } : {}),
      };
      const services = await createServices(loadConfig(env), env, { logRequest: () => {} });
      const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, services.app.fetch);
      const base = `http://127.0.0.1:${server.addr.port}`;
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
      try {
        await services.warm();
        const file = await client.files.create({
          file: new File(['{"prompt":"a=","completion":"b"}\n'.repeat(3)], "t.jsonl"),
          purpose: "fine-tune",
        });
        const ckpt = await openCheckpoint(model);
        ckpt.close();
        // A job that has not ended (as while it trains), with a version of its own.
        const job = await services.store.jobs.create({
          model,
          trainingFile: file.id,
          suffix: "del",
          seed: 1,
          method: { type: "supervised" },
          hyperparameters: {},
        });
        const deltas = (seed: number) =>
          randomDeltas(ckpt.config, { seed, rank: 2, terms: 1, scale: 0.02, layers: [0] });
        const version = await services.versions.createVersion({
          name: `ft:${model}:del:${job.id}`,
          kind: "final",
          jobId: job.id,
          baseModel: model,
          deltas: deltas(1),
        });
        const other = await services.versions.createVersion({
          name: `ft:${model}:del:${job.id}:ckpt-step-1`,
          kind: "checkpoint",
          jobId: job.id,
          baseModel: model,
          deltas: deltas(2),
        });
        await services.coordinator.set("prod", version.name);

        // GET /v1/models: which is which.
        const listed = new Map((await client.models.list()).data.map((m) => [m.id, m.owned_by]));
        assert.equal(listed.get(model), OWNED_BY.base);
        assert.equal(listed.get(version.name), OWNED_BY.version);
        assert.equal(listed.get(other.name), OWNED_BY.version);
        assert.equal(listed.get("prod"), OWNED_BY.alias);
        assert.deepEqual(new Set(listed.values()), new Set(["system", "fine-tuned", "alias"]));

        // Served, exported: the artifacts a delete must free.
        const chat = await client.chat.completions.create({
          model: version.name,
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
        });
        assert.equal(chat.model, version.name);
        const exported = await fetch(`${base}/v1/versions/${version.id}/export`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ format: "hf" }),
        });
        assert.equal(exported.status, 200, await exported.text());
        const deltaDir = `${dataDir}/versions/${version.contentHash}`;
        const servingDir = await services.versions.servingDir(version);
        assert.ok(await pathExists(deltaDir) && await pathExists(servingDir));
        assert.ok(await pathExists(`${dataDir}/exports/${version.id}`));

        // 409 while an alias points at it, then while its job has not ended.
        const aliased = await apiError(client.models.delete(version.name), 409, "conflict");
        assert.match(aliased.message, /alias 'prod' points at it/);
        await services.coordinator.set("prod", model);
        const running = await apiError(client.models.delete(version.name), 409, "conflict");
        assert.match(running.message, new RegExp(`job ${job.id} is still validating_files`));
        await services.store.jobs.transition(job.id, "cancelled");

        // Base models and aliases are not deletable; unknown ids are 404.
        const baseRefused = await apiError(client.models.delete(model), 403, "model_not_deletable");
        assert.match(baseRefused.message, /base model .* cannot be deleted/);
        await apiError(client.models.delete("prod"), 400, "invalid_alias");
        await apiError(client.models.delete("ft:nope:x:ftjob-nope"), 404, "model_not_found");

        // Deleted: the OpenAI shape, by name; the other version by id.
        const deleted = await client.models.delete(version.name);
        assert.deepEqual({ ...deleted }, { id: version.name, object: "model", deleted: true });
        const byId = await client.models.delete(other.id);
        assert.deepEqual({ ...byId }, { id: other.name, object: "model", deleted: true });

        // Gone everywhere: the list, retrieve, chat, the versions API, the engine pool, the disk.
        const after = (await client.models.list()).data.map((m) => m.id);
        assert.ok(!after.includes(version.name) && !after.includes(other.name), after.join(", "));
        await apiError(client.models.retrieve(version.name), 404, "model_not_found");
        await apiError(
          client.chat.completions.create({ model: version.name, messages: [{ role: "user", content: "x" }] }),
          404,
          "model_not_found",
        );
        assert.equal((await fetch(`${base}/v1/versions/${version.id}`)).status, 404);
        assert.equal(services.registry.pool.peek(version.name), undefined);
        // The files go once the engine has drained (in the background of the DELETE).
        await services.versions.collected();
        assert.ok(!(await pathExists(deltaDir)), "delta artifact removed");
        assert.ok(!(await pathExists(servingDir)), "serving directory removed");
        assert.ok(!(await pathExists(`${dataDir}/exports/${version.id}`)), "exports removed");
        await apiError(client.models.delete(version.name), 404, "model_not_found");
        // The alias that pointed at it still works (it points at the base now), and rollback to it is refused cleanly.
        const viaAlias = await client.chat.completions.create({
          model: "prod",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
        });
        assert.equal(viaAlias.usage?.completion_tokens, 2);
        const rollback = await fetch(`${base}/v1/aliases/prod/rollback`, { method: "POST" });
        assert.equal(rollback.status, 404, await rollback.text());
      } finally {
        await server.shutdown();
        await services.close();
        await db?.drop();
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}
