/**
 * A full disk under DATA_DIR: writes answer 507 `insufficient_storage` with
 * the OpenAI envelope and a message naming what could not be written
 * (uploaded files, the database, version exports), serving goes on, /ready
 * and /metrics show the free space and the pressure, nothing half-created
 * remains, and once space is freed every write works again; a running job
 * that cannot write its checkpoints pauses with that reason and resumes by
 * itself once there is room.
 *
 * The real thing: DATA_DIR on a 64 MiB tmpfs this test mounts (CI runs as
 * root) and fills. Where mounting is not permitted that test is skipped and
 * the injected-ENOSPC test below still checks the mapping.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadConfig } from "../src/config.ts";
import { InsufficientStorageError, isDiskFull } from "../src/disk_space.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { tinyLlama } from "./helpers/service.ts";
import { createServices } from "../src/services.ts";
import { BlobStore } from "../src/store/blob_store.ts";
import { FileService } from "../src/store/file_service.ts";
import { openStore } from "../src/store/store.ts";
import { buildApp } from "../src/app.ts";
import { staticResolver } from "../src/serve/model_resolver.ts";
import { randomDeltas } from "./helpers/registry_fixtures.ts";

async function run(cmd: string, ...args: string[]): Promise<boolean> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output().catch(() => null);
  return out?.success ?? false;
}

/** Can this process mount a tmpfs? (root, and a sandbox that permits it) */
async function canMountTmpfs(): Promise<boolean> {
  if (Deno.build.os !== "linux") return false;
  const probe = await Deno.makeTempDir({ prefix: "scalora-mount-probe-" });
  try {
    if (!(await run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe))) return false;
    await run("umount", probe);
    return true;
  } finally {
    await Deno.remove(probe).catch(() => {});
  }
}

const TMPFS = await canMountTmpfs();

/** Writes until the filesystem is full; returns the filler's path. */
/**
 * Fills the filesystem of `dir`, then gives back `leave` bytes (default none):
 * a job test leaves the database room for its small writes, as a disk filled
 * by large artifacts does, while checkpoints (megabytes) no longer fit.
 */
async function fill(dir: string, leave = 0): Promise<string> {
  const path = `${dir}/filler`;
  const f = await Deno.open(path, { write: true, create: true });
  const chunk = new Uint8Array(256 * 1024);
  try {
    for (;;) await f.write(chunk);
  } catch (e) {
    assert.ok(isDiskFull(e), `expected ENOSPC, got ${e}`);
  } finally {
    f.close();
  }
  // Small writes can still squeeze into the last blocks: take those too.
  const g = await Deno.open(path, { append: true });
  try {
    for (;;) await g.write(new Uint8Array(512));
  } catch {
    // full
  } finally {
    g.close();
  }
  if (leave > 0) await Deno.truncate(path, Math.max(0, (await Deno.stat(path)).size - leave));
  return path;
}

interface Envelope {
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function expect507(res: Response, what: RegExp): Promise<Envelope> {
  const text = await res.text();
  assert.equal(res.status, 507, text);
  const body = JSON.parse(text) as Envelope;
  assert.equal(body.error.code, "insufficient_storage", text);
  assert.equal(body.error.type, "server_error", text);
  assert.match(body.error.message, what);
  return body;
}

Deno.test({
  name: `disk full (tmpfs): 507 naming what filled, serving goes on, /ready and /metrics, recovery${
    TMPFS ? "" : " (skipped: cannot mount a tmpfs here)"
  }`,
  ignore: !TMPFS,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "scalora-diskfull-" });
    const mnt = `${root}/disk`;
    await Deno.mkdir(mnt);
    assert.ok(await run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt), "mount");
    const model = await tinyLlama(root, 21);
    const env = { MODEL: model, DATA_DIR: `${mnt}/data`, DEVICE: "cpu", DISK_LOW_FREE_BYTES: String(4 * 1024 ** 2) };
    const services = await createServices(loadConfig(env), env, { logRequest: () => {} });
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, services.app.fetch);
    const base = `http://127.0.0.1:${server.addr.port}`;
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
    const json = (method: string, path: string, body?: unknown) =>
      fetch(`${base}${path}`, {
        method,
        headers: { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const upload = () =>
      client.files.create({
        file: new File(['{"prompt":"a=","completion":"b"}\n'.repeat(3)], "train.jsonl"),
        purpose: "fine-tune",
      });
    let filler: string | null = null;
    try {
      await services.warm();
      const file = await upload();
      const ckpt = await openCheckpoint(model);
      ckpt.close();
      const job = await services.store.jobs.create({
        model,
        trainingFile: file.id,
        suffix: "d",
        seed: 1,
        method: { type: "supervised" },
        hyperparameters: {},
      });
      const version = await services.versions.createVersion({
        name: `ft:${model}:d:${job.id}`,
        kind: "final",
        jobId: job.id,
        baseModel: model,
        deltas: randomDeltas(ckpt.config, { seed: 2, rank: 1, terms: 1, scale: 0.01, layers: [0] }),
      });
      const ready0 = await (await fetch(`${base}/ready`)).json();
      assert.equal(ready0.disk.pressure, false, JSON.stringify(ready0));

      filler = await fill(mnt);

      // Uploads: the blob store is full.
      await assert.rejects(upload(), (e: unknown) => {
        assert.ok(e instanceof OpenAI.APIError, String(e));
        assert.equal(e.status, 507);
        assert.equal(e.code, "insufficient_storage");
        assert.match(e.message, /uploaded files/);
        return true;
      });
      // A database write (a new alias: its table has no page yet to put the row in).
      await expect507(await json("PUT", "/v1/aliases/full-disk", { target: model }), /the database/);
      // Job creation writes the job and its first event together: nothing may be left half-created.
      const jobsBefore = (await services.store.jobs.list({ limit: 100 })).data.length;
      const created = await json("POST", "/v1/fine_tuning/jobs", { model, training_file: file.id });
      if (created.status !== 200) await expect507(created, /the database/);
      else await created.body?.cancel();
      // An export writes the whole model.
      await expect507(await json("POST", `/v1/versions/${version.id}/export`, { format: "hf" }), /version exports/);

      // Serving goes on; readiness does not change, pressure shows.
      const chat = await client.chat.completions.create({
        model,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 3,
      });
      assert.equal(chat.usage?.completion_tokens, 3);
      const ready = await fetch(`${base}/ready`);
      assert.equal(ready.status, 200);
      const readyBody = await ready.json();
      assert.equal(readyBody.disk.pressure, true, JSON.stringify(readyBody));
      assert.ok(readyBody.disk.free_bytes < 1024 ** 2, JSON.stringify(readyBody));
      const metrics = await (await fetch(`${base}/metrics`)).text();
      const free = Number(/^scalora_data_dir_free_bytes (\S+)$/m.exec(metrics)?.[1]);
      assert.ok(free < 1024 ** 2, `free ${free}`);
      assert.match(metrics, /^scalora_data_dir_disk_pressure 1$/m);
      assert.match(metrics, /scalora_http_requests_total\{[^}]*status="507"\} [1-9]/);

      // Space back: every write works again.
      await Deno.remove(filler);
      filler = null;
      const again = await upload();
      assert.equal(again.status, "processed");
      const alias = await json("PUT", "/v1/aliases/full-disk", { target: model });
      assert.equal(alias.status, 200, await alias.text());
      const exported = await json("POST", `/v1/versions/${version.id}/export`, { format: "hf" });
      assert.equal(exported.status, 200, await exported.text());
      const jobs = (await services.store.jobs.list({ limit: 100 })).data;
      if (created.status !== 200) assert.equal(jobs.length, jobsBefore, "no half-created job");
      assert.equal((await (await fetch(`${base}/ready`)).json()).disk.pressure, false);
    } finally {
      if (filler) await Deno.remove(filler).catch(() => {});
      await server.shutdown();
      await services.close();
      await run("umount", "-l", mnt);
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: `disk full (tmpfs): a running job pauses with the reason and resumes when space returns${
    TMPFS ? "" : " (skipped: cannot mount a tmpfs here)"
  }`,
  ignore: !TMPFS,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "scalora-diskfull-job-" });
    const mnt = `${root}/disk`;
    await Deno.mkdir(mnt);
    assert.ok(await run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt), "mount");
    const model = await tinyLlama(root, 22);
    const env = { MODEL: model, DATA_DIR: `${mnt}/data`, DEVICE: "cpu", DISK_LOW_FREE_BYTES: String(4 * 1024 ** 2) };
    const services = await createServices(loadConfig(env), env, { logRequest: () => {}, diskPollMs: 200 });
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, services.app.fetch);
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${server.addr.port}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      timeout: 60_000,
    });
    let filler: string | null = null;
    const until = async <T>(what: string, probe: () => Promise<T | null>, ms = 120_000): Promise<T> => {
      const end = performance.now() + ms;
      for (;;) {
        const v = await probe();
        if (v !== null) return v;
        if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await services.warm();
      const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `q${i}=`, completion: `a${i}` }));
      const file = await client.files.create({
        file: new File([lines.join("\n") + "\n"], "train.jsonl"),
        purpose: "fine-tune",
      });
      const hyperparameters = { n_epochs: 4, batch_size: 1, checkpoint_every: 4, max_length: 32 };
      const job = await client.fineTuning.jobs.create(
        {
          model,
          training_file: file.id,
          method: { type: "supervised", supervised: { hyperparameters } },
        } as Parameters<typeof client.fineTuning.jobs.create>[0],
      );
      // Training, with a checkpoint behind it: then the disk fills.
      await until("a checkpoint", async () => {
        const page = await client.fineTuning.jobs.checkpoints.list(job.id);
        return page.data.length > 0 ? true : null;
      });
      filler = await fill(mnt, 256 * 1024);
      const paused = await until("the job to pause", async () => {
        const j = await client.fineTuning.jobs.retrieve(job.id);
        // The openai client's type has no "paused" (OpenAI's jobs have it since 2025; this server has had it).
        const status: string = j.status;
        assert.ok(status !== "failed" && status !== "succeeded", JSON.stringify(j));
        return status === "paused" ? j : null;
      });
      assert.equal(paused.error?.code, "insufficient_storage", JSON.stringify(paused.error));
      assert.match(paused.error?.message ?? "", /disk is full/);
      // The event follows the status change (it is written after it, and may be retried): wait for it.
      await until("the pause event", async () => {
        const events = (await client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data.map((e) => e.message);
        return events.some((m) => /Training paused: the disk is full.*resumes by itself/.test(m)) ? true : null;
      }, 30_000);

      // Room again: it resumes from its checkpoint and finishes.
      await Deno.remove(filler);
      filler = null;
      const done = await until("the job to finish", async () => {
        const j = await client.fineTuning.jobs.retrieve(job.id);
        return j.status === "succeeded" || j.status === "failed" ? j : null;
      }, 240_000);
      assert.equal(done.status, "succeeded", JSON.stringify(done.error));
      assert.equal(done.error, null);
      const all = (await client.fineTuning.jobs.listEvents(job.id, { limit: 1000 })).data.map((e) => e.message);
      assert.ok(all.some((m) => /Space is available again/.test(m)), all.join("\n"));
      assert.ok(all.some((m) => /resumed/.test(m)), all.join("\n"));
    } finally {
      if (filler) await Deno.remove(filler).catch(() => {});
      await server.shutdown();
      await services.close();
      await run("umount", "-l", mnt);
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("disk full (injected ENOSPC): an upload answers 507 naming uploaded files; an unnamed one the data directory", async () => {
  const root = await Deno.makeTempDir({ prefix: "scalora-enospc-" });
  const store = await openStore({ dataDir: root, databaseUrl: null });
  try {
    const blobs = await BlobStore.open(`${root}/files`);
    // The filesystem's own error, as Deno raises it for ENOSPC.
    const enospc = () => Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
    blobs.stage = () => Promise.reject(enospc());
    const app = buildApp({
      models: staticResolver([]),
      ready: () => true,
      logRequest: () => {},
      files: { files: new FileService(store, blobs) },
    });
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", new Blob(["{}\n"]), "x.jsonl");
    await expect507(await app.request("/v1/files", { method: "POST", body: form }), /uploaded files/);
    const mapped = await import("../routes/errors.ts").then((m) => m.toApiError(enospc()));
    assert.ok(mapped instanceof InsufficientStorageError);
    assert.equal(mapped.status, 507);
    assert.match(mapped.message, /the data directory/);
  } finally {
    await store.close();
    await Deno.remove(root, { recursive: true });
  }
});
