/**
 * The multi-replica tier: two server processes (src/main.ts) with separate
 * data directories on one PostgreSQL database (TEST_DATABASE_URL, as CI
 * starts it; each replica reaches it through its own TCP proxy so the test
 * can cut one off) and one S3-compatible store (s3rver, started here in its
 * own process). Every point of scale-out is asserted over HTTP:
 *
 * 1. a file uploaded through A is usable for a job created on B;
 * 2. whichever replica claims a job trains it (one per replica), the other only reports it;
 * 3. kill -9 of the replica running a job: the other claims it once the lease expired, resumes
 *    from the last checkpoint read from the store, and the final version equals an uninterrupted run's;
 * 4. the resulting version is served by every replica;
 * 5. an alias switch or rollback on A takes effect on B within 2 s (NOTIFY; the periodic refresh
 *    as a fallback), and a request in flight on B finishes on the old target;
 * 6. job, file, version, alias and model listings are identical through either replica;
 * 7. a replica that loses the database keeps serving what it has loaded, reports not-ready, and
 *    recovers when the database returns.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import postgres from "postgres";
import { sha256Bytes } from "../src/store/artifact_store.ts";
import { facts, tinyModel, waitFor } from "./helpers/fine_tuning.ts";
import { type Json, Replica } from "./helpers/replica.ts";
import { S3Server } from "./helpers/s3_server.ts";
import { createTestDatabase } from "./helpers/store_backends.ts";
import { TcpProxy } from "./helpers/tcp_proxy.ts";

const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ?? "";
const PREFIX = "replicas";
/** 40 examples / batch 4 = 10 steps per epoch x 10 = 100 steps; a checkpoint every 10. */
const EXAMPLES = 40;
const HP = {
  n_epochs: 10,
  batch_size: 4,
  learning_rate_multiplier: 50,
  rank: 2,
  alpha: 4,
  scaling: "column",
  interval: 3,
  max_length: 32,
  checkpoint_every: 10,
};
const LEASE_MS = 3000;
const SWITCH_LIMIT_MS = 2000;

/** The `data:` events of an SSE response, parsed, until [DONE]. */
async function* sse(res: Response): AsyncGenerator<Json> {
  let rest = "";
  for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n\n");
    rest = parts.pop()!;
    for (const p of parts) {
      const data = p.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

Deno.test({
  name: `multi-replica: two replicas on PostgreSQL and an S3-compatible store${
    TEST_DATABASE_URL ? "" : " (skipped: TEST_DATABASE_URL is not set)"
  }`,
  ignore: !TEST_DATABASE_URL,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const root = await Deno.makeTempDir({ prefix: "multi-replica-" });
    const model = await tinyModel(`${root}/model`);
    const db = await createTestDatabase();
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    const s3 = await S3Server.start();
    const pg = new URL(db.url);
    const proxies = {
      a: TcpProxy.start({ hostname: pg.hostname, port: Number(pg.port) }),
      b: TcpProxy.start({ hostname: pg.hostname, port: Number(pg.port) }),
    };
    const through = (proxy: TcpProxy) => {
      const u = new URL(db.url);
      u.port = String(proxy.port);
      return u.href;
    };
    const common = {
      MODEL: model,
      ...s3.env(PREFIX),
      JOB_LEASE_MS: String(LEASE_MS),
      REGISTRY_REFRESH_MS: "1000",
    };
    const replicas: Replica[] = [];
    try {
      const [a, b] = await Promise.all([
        Replica.start("replica-a", `${root}/a`, { ...common, DATABASE_URL: through(proxies.a) }),
        Replica.start("replica-b", `${root}/b`, { ...common, DATABASE_URL: through(proxies.b) }),
      ]);
      replicas.push(a, b);
      const byOwner = new Map<string, Replica>();
      for (const r of [a, b]) byOwner.set(((await r.json("/ready")).replica as Json).id as string, r);
      assert.equal(byOwner.size, 2, "each replica has its own lease-owner name");

      const text = facts(EXAMPLES);
      let fileId = "";
      let crashJob = "", refJob = "";

      await t.step("1. a file uploaded through A is usable for a job created on B", async () => {
        const form = new FormData();
        form.append("purpose", "fine-tune");
        form.append("file", new File([text], "train.jsonl"));
        const file = await a.json("/v1/files", { method: "POST", body: form });
        fileId = file.id as string;
        const sha = sha256Bytes(new TextEncoder().encode(text));
        assert.deepEqual(await s3.keys(`${PREFIX}/files/`), [`${PREFIX}/files/${sha.slice(0, 2)}/${sha}`]);
        // Stored in the bucket, not on A's disk.
        assert.equal(await Deno.stat(`${root}/a/files/${sha.slice(0, 2)}`).then(() => true, () => false), false);
        assert.deepEqual(await b.json(`/v1/files/${fileId}`), file);
        assert.equal(await (await b.fetch(`/v1/files/${fileId}/content`)).text(), text);

        const create = (r: Replica, suffix: string) =>
          r.post("/v1/fine_tuning/jobs", {
            model,
            training_file: fileId,
            seed: 21,
            suffix,
            method: { type: "supervised", supervised: { hyperparameters: HP } },
          });
        crashJob = (await create(b, "crash")).id as string;
        refJob = (await create(a, "reference")).id as string;
      });

      let trainer: Replica = a, bystander: Replica = b;
      await t.step(
        "2. whichever replica claims a job trains it, one per replica; the other only reports it",
        async () => {
          const running = await waitFor(
            "both jobs running",
            async () => {
              const rows = await sql`select id, lease_owner from fine_tuning_jobs where status = 'running'`;
              return rows.length === 2 ? rows : null;
            },
            90_000,
            50,
          );
          const owners = new Map(running.map((r) => [r.id as string, r.lease_owner as string]));
          assert.notEqual(owners.get(crashJob), owners.get(refJob), "the two jobs run on different replicas");
          for (const [job, owner] of owners) {
            const r = byOwner.get(owner);
            assert.ok(r, `owner ${owner} is one of the replicas`);
            // The replica holding the lease trains the job; the other one reports the same job from the database.
            assert.equal(((await r.json("/ready")).replica as Json).training_job, job);
            const views = await Promise.all([a, b].map((x) => x.json(`/v1/fine_tuning/jobs/${job}`)));
            assert.equal(views[0].status, "running");
            assert.equal(views[1].status, "running");
          }
          trainer = byOwner.get(owners.get(crashJob)!)!;
          bystander = trainer === a ? b : a;
        },
      );

      let finalName = "";
      const killAndResume = async (): Promise<void> => {
        const first = await waitFor(
          "a checkpoint of the job",
          async () => {
            const list = await bystander.json(`/v1/fine_tuning/jobs/${crashJob}/checkpoints`);
            return (list.data as Json[]).at(-1);
          },
          90_000,
          20,
        );
        const stored = await s3.keys(`${PREFIX}/jobs/${crashJob}/checkpoints/`);
        assert.ok(stored.some((k) => k.endsWith("/fine_tune.json")), `checkpoint in the bucket: ${stored}`);
        const status = await trainer.kill("SIGKILL");
        assert.equal(status.signal, "SIGKILL");
        const killedAt = Date.now();

        const done = await waitFor(
          "the job to finish on the other replica",
          async () => {
            const j = await bystander.json(`/v1/fine_tuning/jobs/${crashJob}`);
            return ["succeeded", "failed", "cancelled"].includes(j.status as string) ? j : null;
          },
          240_000,
          100,
        );
        assert.equal(done.status, "succeeded", JSON.stringify(done.error));
        finalName = done.fine_tuned_model as string;
        const [row] = await sql`select attempts, lease_owner, started_at from fine_tuning_jobs where id = ${crashJob}`;
        assert.ok(row.attempts >= 2, `claimed again after the crash (attempts ${row.attempts})`);

        const events = ((await bystander.json(`/v1/fine_tuning/jobs/${crashJob}/events?limit=1000`)).data as Json[])
          .reverse();
        const messages = events.map((e) => e.message as string);
        const restored = messages.map((m) => /^Checkpoint at step (\d+) restored from the artifact store/.exec(m))
          .find(Boolean);
        assert.ok(restored, `the checkpoint came from the store:\n${messages.join("\n")}`);
        const resumed = messages.map((m) => /^resumed from step (\d+)/.exec(m)).find(Boolean);
        assert.ok(resumed, messages.join("\n"));
        assert.equal(resumed[1], restored[1]);
        assert.ok(Number(resumed[1]) >= (first.step_number as number), `resumed at ${resumed[1]}`);
        // Claimed only once the lease had expired.
        const resumedEvent = events.find((e) => (e.message as string).startsWith("Fine-tuning job resumed"));
        assert.ok(resumedEvent, messages.join("\n"));
        // (created_at is in whole seconds; the last heartbeat came up to a quarter lease before the kill)
        const claimedAfter = (resumedEvent.created_at as number) * 1000 - killedAt;
        assert.ok(
          claimedAfter >= LEASE_MS * 0.75 - 1000,
          `claimed ${claimedAfter} ms after the kill:\n${events.map((e) => `${e.created_at} ${e.message}`).join("\n")}`,
        );

        // The same version as the uninterrupted run of the same data, seed and hyperparameters.
        const ref = await waitFor(
          "the reference job",
          async () => {
            const j = await bystander.json(`/v1/fine_tuning/jobs/${refJob}`);
            return j.status === "succeeded" ? j : null;
          },
          120_000,
          100,
        );
        const [crashVersion, refVersion] = await Promise.all([
          bystander.json(`/v1/versions/${encodeURIComponent(finalName)}`),
          bystander.json(`/v1/versions/${encodeURIComponent(ref.fine_tuned_model as string)}`),
        ]);
        assert.equal(crashVersion.content_hash, refVersion.content_hash, "bit-identical deltas");
        assert.ok((await s3.keys(`${PREFIX}/versions/${crashVersion.content_hash}/`)).length === 1);
        // A finished job's checkpoints leave the store.
        await waitFor(
          "the job's checkpoints to leave the bucket",
          async () => (await s3.keys(`${PREFIX}/jobs/${crashJob}/`)).length === 0,
          20_000,
        );
      };

      await t.step("3. kill -9 of the replica running a job: the other resumes it from the store", async () => {
        try {
          await killAndResume();
        } finally {
          if (trainer.process.exited) await trainer.restart();
        }
      });

      const prompt = { prompt: "abc=", max_tokens: 8, temperature: 0 };
      await t.step("4. the resulting version is served by every replica", async () => {
        const outs: string[] = [];
        for (const r of [a, b]) {
          const out = await r.post("/v1/completions", { model: finalName, ...prompt });
          assert.equal(out.model, finalName);
          outs.push((out.choices as Json[])[0].text as string);
        }
        assert.equal(outs[0], outs[1]);
        const base = await a.post("/v1/completions", { model, ...prompt });
        assert.notEqual((base.choices as Json[])[0].text, outs[0], "the version is not the base model");
      });

      const servingOn = async (r: Replica) => (await r.json("/v1/aliases/prod")).serving as string | null;
      await t.step(
        "5. alias switch and rollback on A take effect on B within 2 s; in-flight requests finish",
        async () => {
          await a.put("/v1/aliases/prod", { target: model });
          await waitFor("B to serve prod", async () => (await servingOn(b)) === model, 10_000);

          const stream = await b.fetch("/v1/completions", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ model: "prod", prompt: "abc=", max_tokens: 1500, ignore_eos: true, stream: true }),
          });
          assert.equal(stream.status, 200);
          const events = sse(stream);
          const firstChunk = (await events.next()).value as Json;
          assert.equal(firstChunk.model, model);

          const switched = performance.now();
          await a.put("/v1/aliases/prod", { target: finalName });
          await waitFor("B to serve the new target", async () => (await servingOn(b)) === finalName, 5_000, 5);
          const switchMs = performance.now() - switched;
          assert.ok(switchMs <= SWITCH_LIMIT_MS, `switch visible on B after ${switchMs.toFixed(0)} ms`);
          const switchedOnB = performance.now();

          // The request that started before the switch finishes on the old target.
          let tokens = 1, finish: unknown = null;
          for await (const chunk of events) {
            assert.equal(chunk.error, undefined, JSON.stringify(chunk));
            assert.equal(chunk.model, model);
            const choice = (chunk.choices as Json[])[0];
            if (choice?.text) tokens++;
            if (choice?.finish_reason) finish = choice.finish_reason;
          }
          const ended = performance.now();
          assert.equal(finish, "length");
          assert.ok(ended > switchedOnB, "the stream was still running when B switched");
          assert.ok(tokens > 1);
          const after = await b.post("/v1/completions", { model: "prod", ...prompt });
          assert.equal(after.model, finalName);
          const bEvents = (await b.json("/v1/aliases/prod")).events as Json[];
          assert.equal(bEvents[0].type, "switched");
          assert.equal(bEvents[0].origin, "replica");
          assert.equal(bEvents[0].via, "notify");

          const rolled = performance.now();
          await a.post("/v1/aliases/prod/rollback", {});
          await waitFor("B to roll back", async () => (await servingOn(b)) === model, 5_000, 5);
          const rollbackMs = performance.now() - rolled;
          assert.ok(rollbackMs <= SWITCH_LIMIT_MS, `rollback visible on B after ${rollbackMs.toFixed(0)} ms`);
          assert.equal(((await b.json("/v1/aliases/prod")).events as Json[])[0].via, "notify");

          // A change that sends no NOTIFY (as if the notification were lost) reaches B through the periodic refresh.
          const [version] = await sql`select id from model_versions where name = ${finalName}`;
          await sql`update model_aliases set target_kind = 'version', target = ${finalName},
          target_version_id = ${version.id}, updated_at = now() where name = 'prod'`;
          const lost = performance.now();
          await waitFor("B to catch the lost notification", async () => (await servingOn(b)) === finalName, 5_000, 5);
          const refreshMs = performance.now() - lost;
          assert.ok(refreshMs <= SWITCH_LIMIT_MS, `refresh fallback after ${refreshMs.toFixed(0)} ms`);
          assert.equal(((await b.json("/v1/aliases/prod")).events as Json[])[0].via, "refresh");
          await waitFor("A too", async () => (await servingOn(a)) === finalName, 5_000);
        },
      );

      await t.step("6. listings are identical through either replica", async () => {
        for (
          const path of [
            "/v1/files",
            `/v1/files/${fileId}`,
            "/v1/fine_tuning/jobs",
            `/v1/fine_tuning/jobs/${crashJob}/checkpoints`,
            `/v1/fine_tuning/jobs/${crashJob}/events?limit=1000`,
            "/v1/versions?limit=100",
            "/v1/aliases",
          ]
        ) {
          await waitFor(
            `${path} to agree`,
            async () => {
              const [x, y] = await Promise.all([a.json(path), b.json(path)]);
              const sort = (v: Json) =>
                Array.isArray(v.data)
                  ? { ...v, data: [...(v.data as Json[])].sort((p, q) => String(p.id).localeCompare(String(q.id))) }
                  : v;
              try {
                assert.deepEqual(sort(x), sort(y));
                return true;
              } catch {
                return false;
              }
            },
            5_000,
            100,
          ).catch(async (e) => {
            const [x, y] = await Promise.all([a.json(path), b.json(path)]);
            assert.deepEqual(x, y, `${path}: ${e}`);
          });
        }
        // GET /v1/models: the same models with the same owners (a base model's `created` is when its replica started).
        const models = (r: Replica) =>
          r.json("/v1/models").then((l) => (l.data as Json[]).map((m) => `${m.id} ${m.owned_by}`).sort());
        await waitFor(
          "the model lists to agree",
          async () => {
            const [x, y] = await Promise.all([models(a), models(b)]);
            return JSON.stringify(x) === JSON.stringify(y) ? x : null;
          },
          5_000,
          100,
        ).then((list) => {
          for (const id of [`${finalName} fine-tuned`, "prod alias", `${model} system`]) {
            assert.ok(list.includes(id), id);
          }
        });
      });

      await t.step("7. a replica that loses the database keeps serving, reports not-ready, recovers", async () => {
        proxies.b.cutOff();
        const down = await waitFor(
          "B to report not-ready",
          async () => {
            const res = await b.fetch("/ready");
            const body = await res.json();
            return res.status === 503 ? body : null;
          },
          15_000,
          100,
        );
        assert.equal(down.status, "unavailable");
        assert.equal(down.database, "unreachable");
        // What B has loaded keeps serving: the alias and the version.
        for (const m of ["prod", finalName, model]) {
          const out = await b.post("/v1/completions", { model: m, ...prompt });
          assert.ok(["stop", "length"].includes((out.choices as Json[])[0].finish_reason as string));
        }
        // A is unaffected, and changes the alias meanwhile (B cannot hear of it).
        assert.equal((await a.fetch("/ready")).status, 200);
        await a.put("/v1/aliases/prod", { target: model });
        assert.equal(await servingOn(a), model);
        assert.equal((await b.post("/v1/completions", { model: "prod", ...prompt })).model, finalName);

        proxies.b.restore();
        await waitFor(
          "B to be ready again",
          async () => {
            const res = await b.fetch("/ready");
            await res.body?.cancel();
            return res.status === 200;
          },
          20_000,
          100,
        );
        await waitFor("B to catch up with the alias", async () => (await servingOn(b)) === model, 10_000, 50);
        assert.deepEqual(await b.json("/v1/files"), await a.json("/v1/files"));
        // And writes through B work again.
        const form = new FormData();
        form.append("purpose", "fine-tune");
        form.append("file", new File([facts(3, 100)], "more.jsonl"));
        const more = await b.json("/v1/files", { method: "POST", body: form });
        assert.equal((await a.json(`/v1/files/${more.id}`)).id, more.id);
      });
    } catch (e) {
      for (const r of replicas) console.error(r.log(120));
      throw e;
    } finally {
      await Promise.all(replicas.map((r) => r.kill("SIGTERM")));
      proxies.a.close();
      proxies.b.close();
      await s3.stop();
      await sql.end();
      await db.drop();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
