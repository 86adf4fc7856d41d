/**
 * Issue 11's reproductions, each against the whole service over real HTTP
 * (PGlite and, with TEST_DATABASE_URL, PostgreSQL): a NUL byte (or an
 * unpaired surrogate) in every place that reached a query — 400 or 404 with
 * the OpenAI envelope, never 500; `promote_to_alias` checked at creation;
 * rollback and the job actions accept an empty JSON body; the reserved
 * `ftver-` prefix named; and a bad registry variable reported in one line at
 * start.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadConfig } from "../src/config.ts";
import { tinyLlama } from "./helpers/service.ts";
import { createServices } from "../src/services.ts";
import { createTestDatabase, storeBackends } from "./helpers/store_backends.ts";

interface Envelope {
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function expectError(res: Response, statuses: number[], what: string): Promise<Envelope> {
  const text = await res.text();
  assert.ok(statuses.includes(res.status), `${what}: ${res.status} ${text}`);
  const body = JSON.parse(text) as Envelope;
  assert.equal(typeof body.error.message, "string", what);
  assert.equal(typeof body.error.type, "string", what);
  assert.ok(body.error.param === null || typeof body.error.param === "string", what);
  assert.ok(body.error.code === null || typeof body.error.code === "string", what);
  return body;
}

for (const backend of storeBackends) {
  Deno.test({
    name: `issue 11 reproductions over HTTP [${backend.name}]${backend.skip ? ` (skipped: ${backend.skip})` : ""}`,
    ignore: backend.skip !== null,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const root = await Deno.makeTempDir({ prefix: "scalora-hardening-" });
      const db = backend.name === "postgres" ? await createTestDatabase() : null;
      const model = await tinyLlama(root, 41);
      const env: Record<string, string> = {
        MODEL: model,
        DATA_DIR: `${root}/data`,
        DEVICE: "cpu",
        ...(db ? { DATABASE_URL: db.url } : {}),
      };
      const services = await createServices(loadConfig(env), env, { logRequest: () => {} });
      const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, services.app.fetch);
      const base = `http://127.0.0.1:${server.addr.port}`;
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
      const send = (method: string, path: string, body?: string, type = "application/json") =>
        fetch(`${base}${path}`, {
          method,
          headers: body === undefined ? {} : { "content-type": type },
          body,
        });
      try {
        await services.warm();
        const file = await client.files.create({
          file: new File(['{"prompt":"a=","completion":"b"}\n'.repeat(4)], "t.jsonl"),
          purpose: "fine-tune",
        });
        const job = await client.fineTuning.jobs.create({ model, training_file: file.id });
        await client.fineTuning.jobs.cancel(job.id);
        await send("PUT", "/v1/aliases/prod", JSON.stringify({ target: model }));

        // 1. NUL (and an unpaired surrogate) wherever a string reached a query.
        for (const bad of ["a\u0000b", "a\ud800b"]) {
          const label = JSON.stringify(bad);
          await assert.rejects(
            client.chat.completions.create({ model: bad, messages: [{ role: "user", content: "hi" }] }),
            (e: unknown) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found",
          );
          await assert.rejects(
            client.completions.create({ model: bad, prompt: "hi" }),
            (e: unknown) => e instanceof OpenAI.NotFoundError,
          );
          const enc = encodeURIComponent(bad.replace("\ud800", "\uFFFD")).replace("%EF%BF%BD", "%ED%A0%80");
          const paths: [string, string, string?][] = [
            ["GET", `/v1/files/${enc}`],
            ["DELETE", `/v1/files/${enc}`],
            ["GET", `/v1/files/${enc}/content`],
            ["GET", `/v1/files?after=${enc}`],
            ["GET", `/v1/versions/${enc}`],
            ["POST", `/v1/versions/${enc}/export`, '{"format":"hf"}'],
            ["GET", `/v1/fine_tuning/jobs/${enc}`],
            ["GET", `/v1/fine_tuning/jobs/${enc}/events`],
            ["GET", `/v1/fine_tuning/jobs/${enc}/checkpoints`],
            ["POST", `/v1/fine_tuning/jobs/${enc}/cancel`],
            ["GET", `/v1/fine_tuning/jobs?after=${enc}`],
            ["GET", `/v1/fine_tuning/jobs/${job.id}/events?after=${enc}`],
            ["GET", `/v1/aliases/${enc}`],
            ["POST", `/v1/aliases/${enc}/rollback`],
            ["PUT", "/v1/aliases/prod", JSON.stringify({ target: bad })],
            ["PUT", `/v1/aliases/${enc}`, JSON.stringify({ target: model })],
            ["GET", `/v1/models/${enc}`],
            ["DELETE", `/v1/models/${enc}`],
            ["POST", "/v1/fine_tuning/jobs", JSON.stringify({ model, training_file: bad })],
            ["POST", "/v1/fine_tuning/jobs", JSON.stringify({ model, training_file: file.id, validation_file: bad })],
            [
              "POST",
              "/v1/fine_tuning/jobs",
              JSON.stringify({ model, training_file: file.id, metadata: { [bad]: "v" } }),
            ],
            ["POST", "/v1/fine_tuning/jobs", JSON.stringify({ model, training_file: file.id, metadata: { k: bad } })],
            ["POST", "/v1/fine_tuning/jobs", JSON.stringify({ model: bad, training_file: file.id })],
          ];
          for (const [method, path, body] of paths) {
            await expectError(await send(method, path, body), [400, 404], `${label} ${method} ${path} ${body ?? ""}`);
          }
        }
        // The issue's curl: exactly this one is a 400 naming where.
        const curl = await expectError(await send("GET", "/v1/files/a%00b"), [400], "GET /v1/files/a%00b");
        assert.match(curl.error.message, /NUL/);
        const meta = await expectError(
          await send(
            "POST",
            "/v1/fine_tuning/jobs",
            JSON.stringify({ model, training_file: file.id, metadata: { k: "a\u0000" } }),
          ),
          [400],
          "metadata value",
        );
        assert.equal(meta.error.param, "metadata.k");
        // Still serving, nothing half-made.
        assert.equal((await client.fineTuning.jobs.list()).data.length, 1);

        // 2. promote_to_alias is checked when the job is created.
        const cases: [string, RegExp][] = [["x:y", /A-Z a-z 0-9/], ["a".repeat(100), /1-64/], ["ftver-x", /reserved/]];
        for (const [alias, pattern] of cases) {
          const r = await expectError(
            await send(
              "POST",
              "/v1/fine_tuning/jobs",
              JSON.stringify({ model, training_file: file.id, promote_to_alias: alias }),
            ),
            [400],
            `promote_to_alias ${alias.slice(0, 10)}`,
          );
          assert.equal(r.error.param, "promote_to_alias");
          assert.match(r.error.message, pattern);
        }
        assert.equal((await client.fineTuning.jobs.list()).data.length, 1, "no job was created");

        // 3. An empty JSON body: rollback answers for the alias (nothing to roll back to), not "Malformed JSON".
        const rollback = await expectError(await send("POST", "/v1/aliases/prod/rollback", ""), [409], "rollback");
        assert.equal(rollback.error.code, "no_previous_target");
        for (const action of ["cancel", "pause", "resume"]) {
          const r = await send("POST", `/v1/fine_tuning/jobs/${job.id}/${action}`, "");
          assert.ok(r.status === 200 || r.status === 409, `${action}: ${r.status}`);
          await r.body?.cancel();
        }

        // 4. The reserved prefix is named as such.
        const reserved = await expectError(
          await send("PUT", "/v1/aliases/ftver-mine", JSON.stringify({ target: model })),
          [400],
          "ftver- alias",
        );
        assert.match(reserved.error.message, /prefix 'ftver-' is reserved/);
      } finally {
        await server.shutdown();
        await services.close();
        await db?.drop();
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}

Deno.test("6. a bad registry variable is one line at start, not a stack trace", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts"],
    cwd: new URL("..", import.meta.url).pathname,
    env: { MODEL_MEMORY_BUDGET_BYTES: "lots", DATA_DIR: await Deno.makeTempDir(), MODEL: "./nowhere" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1, stderr);
  assert.equal(stderr.split("\n").length, 1, stderr);
  assert.match(stderr, /^error: invalid environment variable MODEL_MEMORY_BUDGET_BYTES: /);
});
