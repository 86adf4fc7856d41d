import assert from "node:assert/strict";
import { eq } from "drizzle-orm";
import { StoreError, type StoreErrorCode } from "../src/store/errors.ts";
import { lockDataDir } from "../src/store/data_dir_lock.ts";
import { canTransition, isTerminal, predecessors } from "../src/store/job_status.ts";
import { modelVersions } from "../src/store/schema.ts";
import { databaseOf, type Store } from "../src/store/store.ts";
import type { AliasChange } from "../src/store/alias_queries.ts";
import { resetStore } from "../src/store/testing.ts";
import { defineStoreTests } from "./helpers/store_backends.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

async function rejectsWith(p: Promise<unknown>, code: StoreErrorCode, param?: string): Promise<StoreError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof StoreError, `expected StoreError, got ${e}`);
    assert.equal(e.kind, code, e.message);
    if (param !== undefined) assert.equal(e.param, param);
    return e;
  }
  assert.fail(`expected StoreError ${code}`);
}

const newFile = (store: Store, sha256 = SHA_A, filename = "train.jsonl") =>
  store.files.create({ filename, purpose: "fine-tune", bytes: 10, sha256 });

async function newJob(store: Store, opts: { status?: "validating_files" | "queued"; trainingFile?: string } = {}) {
  const trainingFile = opts.trainingFile ?? (await newFile(store)).id;
  return await store.jobs.create({
    model: "base-model",
    trainingFile,
    suffix: "demo",
    seed: 42,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 3 } } },
    hyperparameters: { n_epochs: 3, batch_size: 1, learning_rate_multiplier: 1 },
    status: opts.status,
  });
}

const newVersion = (store: Store, name: string, jobId: string | null = null) =>
  store.versions.create({
    name,
    baseModel: "base-model",
    jobId,
    deltaFormat: "lowrank",
    artifactPath: `versions/${name}`,
    contentHash: SHA_B,
    sizeBytes: 1234,
    metadata: { rank: 8 },
  });

Deno.test("job status: transitions follow the lifecycle", () => {
  assert.ok(canTransition("validating_files", "queued"));
  assert.ok(canTransition("queued", "running"));
  assert.ok(canTransition("running", "paused"));
  assert.ok(canTransition("paused", "queued"));
  assert.ok(canTransition("running", "queued"));
  assert.ok(!canTransition("queued", "succeeded"));
  assert.ok(!canTransition("paused", "running"));
  for (const s of ["succeeded", "failed", "cancelled"] as const) {
    assert.ok(isTerminal(s));
    assert.ok(!canTransition(s, "queued") && !canTransition(s, "cancelled"));
  }
  assert.deepEqual(predecessors("succeeded"), ["running"]);
  assert.deepEqual(predecessors("cancelled"), ["validating_files", "queued", "running", "paused"]);
});

Deno.test({
  name: "data dir lock: a second holder fails fast with database_in_use",
  // The losing lock request stays pending until the holder releases (Deno has no try-lock).
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "scalora-lock-" });
    try {
      const held = await lockDataDir(dir);
      await rejectsWith(lockDataDir(dir, 100), "database_in_use");
      await held.release();
      await new Promise((r) => setTimeout(r, 50)); // the pending request gets and drops the lock
      const again = await lockDataDir(dir, 2000);
      await again.release();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

defineStoreTests("store", [
  {
    name: "files: create, get, list with cursor, purpose and order",
    async fn({ store }) {
      const created = [];
      for (let i = 0; i < 5; i++) created.push(await newFile(store, SHA_A, `f${i}.jsonl`));
      assert.match(created[0].id, /^file-[0-9A-Za-z]{24}$/);
      assert.equal(new Set(created.map((f) => f.id)).size, 5);
      const got = await store.files.get(created[2].id);
      assert.deepEqual(got, created[2]);
      assert.ok(got.createdAt instanceof Date);
      assert.equal(got.status, "processed");

      const p1 = await store.files.list({ limit: 2 });
      assert.deepEqual(p1.data.map((f) => f.filename), ["f4.jsonl", "f3.jsonl"]);
      assert.equal(p1.hasMore, true);
      const p2 = await store.files.list({ limit: 2, after: p1.data[1].id });
      assert.deepEqual(p2.data.map((f) => f.filename), ["f2.jsonl", "f1.jsonl"]);
      const p3 = await store.files.list({ limit: 2, after: p2.data[1].id });
      assert.deepEqual(p3.data.map((f) => f.filename), ["f0.jsonl"]);
      assert.equal(p3.hasMore, false);

      const asc = await store.files.list({ limit: 10, order: "asc", after: created[1].id });
      assert.deepEqual(asc.data.map((f) => f.filename), ["f2.jsonl", "f3.jsonl", "f4.jsonl"]);
      assert.equal((await store.files.list({ limit: 10, purpose: "fine-tune" })).data.length, 5);
      await rejectsWith(store.files.list({ limit: 2, after: "file-nope" }), "invalid_cursor", "after");
      await rejectsWith(store.files.get("file-nope"), "not_found", "id");
    },
  },
  {
    name: "files: soft delete hides the row but keeps it resolvable and a valid cursor",
    async fn({ store }) {
      const a = await newFile(store, SHA_A, "a");
      const b = await newFile(store, SHA_A, "b");
      const c = await newFile(store, SHA_A, "c");
      assert.deepEqual(await store.files.delete(b.id), { id: b.id, sha256: SHA_A });
      await rejectsWith(store.files.get(b.id), "not_found");
      await rejectsWith(store.files.delete(b.id), "not_found");
      const hidden = await store.files.get(b.id, { includeDeleted: true });
      assert.ok(hidden.deletedAt instanceof Date);
      assert.deepEqual((await store.files.list({ limit: 10 })).data.map((f) => f.id), [c.id, a.id]);
      // A page boundary that was deleted meanwhile still works as a cursor.
      assert.deepEqual((await store.files.list({ limit: 10, after: b.id })).data.map((f) => f.id), [a.id]);
    },
  },
  {
    name: "files: blob released only when no live file or active job references the hash",
    async fn({ store }) {
      const one = await newFile(store, SHA_A);
      const two = await newFile(store, SHA_A);
      let removed = 0;
      const remove = () => Promise.resolve(void removed++);
      await store.files.delete(one.id);
      assert.equal(await store.files.releaseBlobIfUnreferenced(SHA_A, remove), false, "two still live");
      const job = await newJob(store, { trainingFile: two.id, status: "queued" });
      await store.files.delete(two.id);
      assert.equal(await store.files.releaseBlobIfUnreferenced(SHA_A, remove), false, "queued job needs it");
      assert.deepEqual(await store.files.releasableBlobs(), []);
      // The job can still read its (deleted) training file.
      assert.equal((await store.files.get(two.id, { includeDeleted: true })).sha256, SHA_A);
      await store.jobs.transition(job.id, "cancelled");
      assert.deepEqual(await store.files.releasableBlobs(), [SHA_A]);
      assert.equal(await store.files.releaseBlobIfUnreferenced(SHA_A, remove), true);
      assert.equal(removed, 1);
      assert.deepEqual(await store.files.releasableBlobs(), [], "released blobs are not offered again");
      // The same bytes uploaded again are a new, live reference.
      await newFile(store, SHA_A);
      assert.equal(await store.files.releaseBlobIfUnreferenced(SHA_A, remove), false);
    },
  },
  {
    name: "files: the commit callback runs inside the insert; a failure inserts nothing",
    async fn({ store }) {
      await assert.rejects(
        store.files.create(
          { filename: "x", purpose: "fine-tune", bytes: 1, sha256: SHA_B },
          () => Promise.reject(new Error("disk full")),
        ),
        /disk full/,
      );
      assert.equal((await store.files.list({ limit: 10 })).data.length, 0);
      let committed = false;
      const f = await store.files.create({ filename: "x", purpose: "fine-tune", bytes: 1, sha256: SHA_B }, () => {
        committed = true;
        return Promise.resolve();
      });
      assert.ok(committed);
      assert.equal(f.sha256, SHA_B);
    },
  },
  {
    name: "jobs: create, get, list with cursor; unknown training file",
    async fn({ store }) {
      const jobs = [];
      for (let i = 0; i < 3; i++) jobs.push(await newJob(store));
      const j = jobs[0];
      assert.match(j.id, /^ftjob-[0-9A-Za-z]{24}$/);
      assert.equal(j.status, "validating_files");
      assert.deepEqual(j.method, { type: "supervised", supervised: { hyperparameters: { n_epochs: 3 } } });
      assert.deepEqual(j.resultFiles, []);
      assert.equal(j.attempts, 0);
      assert.equal(j.finishedAt, null);
      assert.deepEqual(await store.jobs.get(j.id), j);
      const page = await store.jobs.list({ limit: 2 });
      assert.deepEqual(page.data.map((x) => x.id), [jobs[2].id, jobs[1].id]);
      assert.ok(page.hasMore);
      assert.deepEqual((await store.jobs.list({ limit: 2, after: jobs[1].id })).data.map((x) => x.id), [j.id]);
      await rejectsWith(newJob(store, { trainingFile: "file-missing" }), "not_found", "training_file");
      await rejectsWith(store.jobs.get("ftjob-missing"), "not_found");
    },
  },
  {
    name: "jobs: compare-and-set transitions; invalid ones are rejected",
    async fn({ store }) {
      const job = await newJob(store);
      const queued = await store.jobs.transition(job.id, "queued", { from: "validating_files" });
      assert.equal(queued.status, "queued");
      await rejectsWith(store.jobs.transition(job.id, "queued", { from: "validating_files" }), "invalid_transition");
      await rejectsWith(store.jobs.transition(job.id, "succeeded"), "invalid_transition");
      await rejectsWith(store.jobs.transition(job.id, "running"), "invalid_transition", "fine_tuning_job_id");
      const failed = await store.jobs.transition(job.id, "failed", {
        patch: { error: { code: "invalid_training_file", message: "line 3: not JSON", param: "training_file" } },
      });
      assert.equal(failed.status, "failed");
      assert.ok(failed.finishedAt instanceof Date);
      assert.deepEqual(failed.error, {
        code: "invalid_training_file",
        message: "line 3: not JSON",
        param: "training_file",
      });
      for (const to of ["queued", "cancelled", "succeeded", "paused"] as const) {
        await rejectsWith(store.jobs.transition(job.id, to), "invalid_transition");
      }
      await rejectsWith(store.jobs.transition("ftjob-missing", "cancelled"), "not_found");
      // Racing cancels: exactly one wins.
      const other = await newJob(store, { status: "queued" });
      const results = await Promise.allSettled([1, 2, 3].map(() => store.jobs.transition(other.id, "cancelled")));
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    },
  },
  {
    name: "jobs: claim takes the oldest queued job once, with a lease",
    async fn({ store }) {
      assert.equal(await store.jobs.claimNext("w1", 60_000), null);
      const validating = await newJob(store);
      const first = await newJob(store, { status: "queued" });
      const second = await newJob(store, { status: "queued" });
      const [a, b, c] = await Promise.all([
        store.jobs.claimNext("w1", 60_000),
        store.jobs.claimNext("w2", 60_000),
        store.jobs.claimNext("w3", 60_000),
      ]);
      const claimed = [a, b, c].filter((x) => x !== null);
      assert.equal(claimed.length, 2, "two queued jobs, three claimers");
      assert.deepEqual(claimed.map((x) => x.id).sort(), [first.id, second.id].sort());
      for (const x of claimed) {
        assert.equal(x.status, "running");
        assert.equal(x.attempts, 1);
        assert.ok(x.leaseOwner && x.leaseExpiresAt && x.startedAt && x.heartbeatAt);
        assert.ok(x.leaseExpiresAt.getTime() > Date.now() + 30_000);
      }
      assert.equal((await store.jobs.get(validating.id)).status, "validating_files", "not claimable");
      assert.equal(await store.jobs.claimNext("w4", 60_000), null);
    },
  },
  {
    name: "jobs: heartbeat renews the lease; cancel and foreign owners lose it",
    async fn({ store }) {
      const job = await newJob(store, { status: "queued" });
      const claimed = await store.jobs.claimNext("w1", 60_000);
      assert.equal(claimed?.id, job.id);
      const beat = await store.jobs.heartbeat(job.id, "w1", 120_000, { trainedTokens: 500 });
      assert.ok(beat.held);
      assert.equal(beat.job.trainedTokens, 500);
      assert.ok(beat.job.leaseExpiresAt!.getTime() > claimed!.leaseExpiresAt!.getTime());
      assert.deepEqual(await store.jobs.heartbeat(job.id, "w2", 60_000), { held: false, status: "running" });
      await rejectsWith(store.jobs.transition(job.id, "succeeded", { leaseOwner: "w2" }), "lease_lost");
      // A user cancels while the worker runs: the worker's next beat tells it to stop.
      const cancelled = await store.jobs.transition(job.id, "cancelled");
      assert.equal(cancelled.leaseOwner, null);
      assert.deepEqual(await store.jobs.heartbeat(job.id, "w1", 60_000), { held: false, status: "cancelled" });
      await rejectsWith(store.jobs.transition(job.id, "succeeded", { leaseOwner: "w1" }), "lease_lost");
      assert.deepEqual(await store.jobs.heartbeat("ftjob-missing", "w1", 60_000), { held: false, status: null });
    },
  },
  {
    name: "jobs: an expired lease makes a running job claimable again (crash recovery)",
    async fn({ store }) {
      const job = await newJob(store, { status: "queued" });
      assert.equal((await store.jobs.claimNext("crashed", 1))?.id, job.id);
      await new Promise((r) => setTimeout(r, 20));
      const again = await store.jobs.claimNext("w2", 60_000);
      assert.equal(again?.id, job.id);
      assert.equal(again?.leaseOwner, "w2");
      assert.equal(again?.attempts, 2);
      assert.deepEqual(await store.jobs.heartbeat(job.id, "crashed", 60_000), { held: false, status: "running" });
      const done = await store.jobs.transition(job.id, "succeeded", {
        leaseOwner: "w2",
        patch: { fineTunedModel: "ft:base-model:demo:x", trainedTokens: 900, resultFiles: ["file-r"] },
      });
      assert.equal(done.status, "succeeded");
      assert.equal(done.fineTunedModel, "ft:base-model:demo:x");
      assert.equal(done.trainedTokens, 900);
      assert.deepEqual(done.resultFiles, ["file-r"]);
      assert.equal(done.leaseOwner, null);
    },
  },
  {
    name: "jobs: pause hands the lease back; resume requeues",
    async fn({ store }) {
      const job = await newJob(store, { status: "queued" });
      await store.jobs.claimNext("w1", 60_000);
      const paused = await store.jobs.transition(job.id, "paused", { from: "running" });
      assert.equal(paused.status, "paused");
      assert.equal(paused.leaseOwner, null);
      assert.equal(await store.jobs.claimNext("w2", 60_000), null, "paused jobs are not claimable");
      await store.jobs.transition(job.id, "queued", { from: "paused" });
      const resumed = await store.jobs.claimNext("w2", 60_000);
      assert.equal(resumed?.attempts, 2);
    },
  },
  {
    name: "events: append and paginate both ways; cursors are per job",
    async fn({ store }) {
      const job = await newJob(store);
      const other = await newJob(store);
      const ids = [];
      for (let i = 0; i < 5; i++) {
        const e = await store.events.append(job.id, {
          level: "info",
          message: `step ${i}`,
          type: i % 2 ? "metrics" : "message",
          data: i % 2 ? { step: i, train_loss: 1 / (i + 1) } : null,
        });
        ids.push(e.id);
      }
      const otherEvent = await store.events.append(other.id, { level: "warn", message: "other" });
      assert.match(ids[0], /^ftevent-/);
      const newest = await store.events.list(job.id, { limit: 2 });
      assert.deepEqual(newest.data.map((e) => e.message), ["step 4", "step 3"]);
      assert.ok(newest.hasMore);
      assert.deepEqual(newest.data[1].data, { step: 3, train_loss: 0.25 });
      assert.equal(newest.data[1].type, "metrics");
      const older = await store.events.list(job.id, { limit: 10, after: newest.data[1].id });
      assert.deepEqual(older.data.map((e) => e.message), ["step 2", "step 1", "step 0"]);
      assert.equal(older.hasMore, false);
      const tail = await store.events.list(job.id, { limit: 10, order: "asc", after: ids[2] });
      assert.deepEqual(tail.data.map((e) => e.message), ["step 3", "step 4"]);
      await rejectsWith(store.events.list(job.id, { limit: 10, after: otherEvent.id }), "invalid_cursor");
      await rejectsWith(store.events.append("ftjob-missing", { level: "info", message: "x" }), "not_found");
    },
  },
  {
    name: "checkpoints: add, list, latest; one per step",
    async fn({ store }) {
      const job = await newJob(store);
      for (const step of [10, 20, 30]) {
        await store.checkpoints.add(job.id, {
          step,
          metrics: { step, train_loss: 1 / step },
          artifactPath: `jobs/${job.id}/step-${step}`,
          fineTunedModelCheckpoint: `ft:base-model:demo:${job.id}:ckpt-step-${step}`,
        });
      }
      const page = await store.checkpoints.list(job.id, { limit: 2 });
      assert.deepEqual(page.data.map((c) => c.step), [30, 20]);
      assert.ok(page.hasMore);
      assert.match(page.data[0].id, /^ftckpt-/);
      assert.deepEqual(
        (await store.checkpoints.list(job.id, { limit: 5, after: page.data[1].id })).data.map((c) => c.step),
        [10],
      );
      assert.equal((await store.checkpoints.latest(job.id))?.step, 30);
      assert.equal(await store.checkpoints.latest((await newJob(store)).id), null);
      await rejectsWith(
        store.checkpoints.add(job.id, { step: 20, metrics: {}, artifactPath: "x", fineTunedModelCheckpoint: "y" }),
        "conflict",
      );
    },
  },
  {
    name: "versions: create, get by id or name, list, names unique, rows immutable",
    async fn({ store }) {
      const job = await newJob(store);
      const v1 = await newVersion(store, `ft:base-model:demo:${job.id}`, job.id);
      const v2 = await newVersion(store, "ft:base-model:other:ftjob-x");
      assert.match(v1.id, /^ftver-/);
      assert.equal(v1.deltaFormat, "lowrank");
      assert.deepEqual(v1.metadata, { rank: 8 });
      assert.deepEqual(await store.versions.get(v1.id), v1);
      assert.deepEqual(await store.versions.get(v1.name), v1);
      assert.equal(await store.versions.find("ft:nope"), null);
      await rejectsWith(store.versions.get("ft:nope"), "not_found");
      await rejectsWith(newVersion(store, v1.name), "conflict", "name");
      assert.deepEqual((await store.versions.list({ limit: 10 })).data.map((v) => v.id), [v2.id, v1.id]);
      assert.deepEqual((await store.versions.list({ limit: 10, jobId: job.id })).data.map((v) => v.id), [v1.id]);
      // Immutability is the database's too, not only the API's.
      const { db } = databaseOf(store);
      await assert.rejects(
        db.update(modelVersions).set({ artifactPath: "elsewhere" }).where(eq(modelVersions.id, v1.id)),
      );
      assert.equal((await store.versions.get(v1.id)).artifactPath, v1.artifactPath);
    },
  },
  {
    name: "aliases: set records history; same target is a no-op; unknown version rejected",
    async fn({ store }) {
      const v1 = await newVersion(store, "ft:base-model:a:1");
      const created = await store.aliases.set("prod", { kind: "base_model", model: "base-model" }, "bootstrap");
      assert.equal(created.changed, true);
      assert.deepEqual(
        { ...created.alias, updatedAt: null },
        { name: "prod", kind: "base_model", target: "base-model", versionId: null, updatedAt: null },
      );
      assert.equal((await store.aliases.set("prod", { kind: "base_model", model: "base-model" })).changed, false);
      const moved = await store.aliases.set("prod", { kind: "version", version: v1.id }, "promote");
      assert.equal(moved.alias.target, v1.name);
      assert.equal(moved.alias.versionId, v1.id);
      assert.deepEqual((await store.aliases.get("prod")).target, v1.name);
      // By name works too, and is the same target.
      assert.equal((await store.aliases.set("prod", { kind: "version", version: v1.name })).changed, false);
      await rejectsWith(store.aliases.set("prod", { kind: "version", version: "ft:nope" }), "not_found", "target");
      await rejectsWith(store.aliases.get("staging"), "not_found");
      assert.deepEqual((await store.aliases.list()).map((a) => a.name), ["prod"]);

      const history = await store.aliases.history("prod", { limit: 10 });
      assert.equal(history.data.length, 2);
      const [latest, first] = history.data;
      assert.equal(latest.action, "set");
      assert.equal(latest.reason, "promote");
      assert.deepEqual(latest.previous, { kind: "base_model", target: "base-model", versionId: null });
      assert.deepEqual(latest.next, { kind: "version", target: v1.name, versionId: v1.id });
      assert.equal(first.previous, null);
      assert.ok(first.at instanceof Date);
      const page = await store.aliases.history("prod", { limit: 1, afterSeq: latest.seq });
      assert.deepEqual(page.data.map((h) => h.seq), [first.seq]);
    },
  },
  {
    name: "aliases: rollback walks back through history",
    async fn({ store }) {
      const v = [];
      for (const n of [1, 2, 3]) v.push(await newVersion(store, `ft:base-model:s:${n}`));
      for (const x of v) await store.aliases.set("prod", { kind: "version", version: x.id });
      assert.equal((await store.aliases.rollback("prod", "bad eval")).target, v[1].name);
      assert.equal((await store.aliases.rollback("prod")).target, v[0].name);
      await rejectsWith(store.aliases.rollback("prod"), "no_previous_target", "alias");
      assert.equal((await store.aliases.get("prod")).target, v[0].name, "failed rollback changed nothing");
      // A new set after rollbacks is what the next rollback undoes.
      await store.aliases.set("prod", { kind: "base_model", model: "base-model" });
      assert.equal((await store.aliases.rollback("prod")).target, v[0].name);
      const history = await store.aliases.history("prod", { limit: 100, order: "asc" });
      assert.deepEqual(history.data.map((h) => h.action), [
        "set",
        "set",
        "set",
        "rollback",
        "rollback",
        "set",
        "rollback",
      ]);
      assert.equal(history.data[3].reason, "bad eval");
      assert.deepEqual(history.data[3].previous?.target, v[2].name);
      await rejectsWith(store.aliases.rollback("nope"), "not_found");
    },
  },
  {
    name: "aliases: an eval gate's refusal is a history row that changes nothing; rollback skips it; compare-and-set",
    async fn({ store }) {
      const v = [];
      for (const n of [1, 2, 3]) v.push(await newVersion(store, `ft:base-model:g:${n}`));
      await store.aliases.set("prod", { kind: "version", version: v[0].id });
      const evaluation = { decision: "switched", candidate: { model: v[1].name, score: 1.5 } };
      await store.aliases.set("prod", { kind: "version", version: v[1].id }, "gate passed", {
        evaluation,
        expectedTarget: v[0].name,
      });
      const refusal = { decision: "refused", candidate: { model: v[2].name, score: 2.5 } };
      const refused = await store.aliases.refuse("prod", { kind: "version", version: v[2].id }, "gate", refusal, {
        expectedTarget: v[1].name,
      });
      assert.equal(refused.action, "refused");
      assert.equal(refused.previous?.target, v[1].name);
      assert.equal(refused.next.target, v[2].name);
      assert.deepEqual(refused.evaluation, refusal);
      assert.equal((await store.aliases.get("prod")).target, v[1].name, "a refusal keeps the alias");
      const history = await store.aliases.history("prod", { limit: 10, order: "desc" });
      assert.deepEqual(history.data.map((h) => h.action), ["refused", "set", "set"]);
      assert.deepEqual(history.data[1].evaluation, evaluation);
      assert.equal(history.data[2].evaluation, null);
      // Compare-and-set: a gate compared against v[0] may not switch from v[1], nor refuse against it.
      await rejectsWith(
        store.aliases.set("prod", { kind: "version", version: v[2].id }, null, { expectedTarget: v[0].name }),
        "conflict",
        "alias",
      );
      await rejectsWith(
        store.aliases.refuse("prod", { kind: "version", version: v[2].id }, null, refusal, { expectedTarget: null }),
        "conflict",
        "alias",
      );
      // Rollback undoes the last set, not the refusal: back to v[0].
      assert.equal((await store.aliases.rollback("prod")).target, v[0].name);
      await rejectsWith(store.aliases.rollback("prod"), "no_previous_target", "alias");
    },
  },
  {
    name: "aliases: committed changes are broadcast",
    async fn({ store }) {
      const seen: AliasChange[] = [];
      const got = Promise.withResolvers<void>();
      const unsubscribe = await store.aliases.subscribe((c) => {
        seen.push(c);
        if (seen.length === 2) got.resolve();
      });
      try {
        const v = await newVersion(store, "ft:base-model:n:1");
        await store.aliases.set("prod", { kind: "base_model", model: "base-model" });
        await store.aliases.set("prod", { kind: "version", version: v.id });
        const timer = setTimeout(() => got.reject(new Error("no notification")), 5_000);
        await got.promise.finally(() => clearTimeout(timer));
        assert.deepEqual(seen, [
          { alias: "prod", kind: "base_model", target: "base-model", versionId: null },
          { alias: "prod", kind: "version", target: v.name, versionId: v.id },
        ]);
      } finally {
        await unsubscribe();
      }
    },
  },
], resetStore);
