/**
 * The cross-replica part of bench:swap: two replicas (src/main.ts processes
 * with their own data directories) on one PostgreSQL database and one
 * S3-compatible store (s3rver from npm, as the multi-replica test tier runs
 * them). This process writes two versions of the bench model into the shared
 * database and bucket (as a job on any replica would), then switches an
 * alias between them through replica A's API and times when replica B serves
 * the new target (B's own switch event, pushed by NOTIFY):
 *
 * - cold: B has never loaded the target (fetch the delta from the store,
 *   compile the patch, load, validate), one sample per version;
 * - warm: both targets loaded on B, `runs` switches alternating between them:
 *   the NOTIFY round trip plus B's reconcile (store read, validation probe reused).
 *
 * Times run from the PUT on A to B's switch (B's event time; same machine
 * clock), and A's own PUT is reported alongside. Needs a PostgreSQL server:
 * BENCH_DATABASE_URL, else TEST_DATABASE_URL (a throwaway database is created
 * on it and dropped after).
 */
import postgres from "postgres";
import { BaseModels } from "../src/registry/base_models.ts";
import { VersionService } from "../src/registry/versions.ts";
import type { LayerDelta } from "../src/train/layer_delta.ts";
import { openStore } from "../src/store/store.ts";
import { type Json, Replica } from "../tests/helpers/replica.ts";
import { S3Server } from "../tests/helpers/s3_server.ts";

export interface CrossReplicaResult {
  replicas: 2;
  store: "s3rver (npm) over HTTP on loopback";
  database: "postgresql";
  runs: number;
  cold_ms: number[];
  warm: { median_ms: number; p99_ms: number; min_ms: number; max_ms: number };
  a_put: { median_ms: number; p99_ms: number };
  samples_ms: number[];
  method: string;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

const round = (x: number) => Math.round(x * 10) / 10;

export function databaseUrlForBench(): string | null {
  return Deno.env.get("BENCH_DATABASE_URL") || Deno.env.get("TEST_DATABASE_URL") || null;
}

export async function crossReplicaSwitch(opts: {
  modelDir: string;
  deltas: (seed: number) => LayerDelta[];
  runs: number;
  databaseUrl: string;
  log?: (m: string) => void;
}): Promise<CrossReplicaResult> {
  const log = opts.log ?? ((m: string) => console.error(`[cross-replica] ${m}`));
  const root = await Deno.makeTempDir({ prefix: "bench-swap-replicas-" });
  const dbName = `scalora_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(opts.databaseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE "${dbName}"`);
  const url = new URL(opts.databaseUrl);
  url.pathname = `/${dbName}`;
  const s3 = await S3Server.start();
  const replicas: Replica[] = [];
  // The model id the replicas serve (MODEL) and versions name as their base.
  const baseId = await Deno.realPath(opts.modelDir);
  try {
    const env = { MODEL: baseId, DATABASE_URL: url.href, ...s3.env("bench"), REGISTRY_REFRESH_MS: "30000" };
    log("starting two replicas…");
    const [a, b] = await Promise.all([
      Replica.start("replica-a", `${root}/a`, env),
      Replica.start("replica-b", `${root}/b`, env),
    ]);
    replicas.push(a, b);

    // Two versions written into the shared database and bucket.
    const store = await openStore({ dataDir: `${root}/writer`, databaseUrl: url.href });
    const names: string[] = [];
    try {
      const bases = new BaseModels([{ id: baseId, source: opts.modelDir }], {
        dataDir: `${root}/writer`,
        device: "cpu",
      });
      const artifacts = s3.store("bench");
      const versions = new VersionService({ store, bases, compileOnCreate: false, artifacts });
      const file = await store.files.create({
        filename: "t.jsonl",
        purpose: "fine-tune",
        bytes: 1,
        sha256: "0".repeat(64),
      });
      const job = await store.jobs.create({
        model: baseId,
        trainingFile: file.id,
        seed: 0,
        method: {},
        hyperparameters: {},
      });
      await store.jobs.transition(job.id, "cancelled");
      for (const seed of [1, 2]) {
        const v = await versions.createVersion({
          name: `ft:${baseId}:xswap${seed}:${job.id}`,
          kind: "final",
          jobId: job.id,
          baseModel: baseId,
          deltas: opts.deltas(seed),
        });
        names.push(v.name);
      }
      artifacts.close();
    } finally {
      await store.close();
    }

    const serving = async (r: Replica) => (await r.json("/v1/aliases/xswap")).serving as string | null;
    /** PUT on A; resolves with ms from the PUT to B's switch event, and A's PUT time. */
    const switchTo = async (target: string): Promise<{ b: number; a: number }> => {
      const t0 = Date.now();
      const p0 = performance.now();
      await a.put("/v1/aliases/xswap", { target });
      const aMs = performance.now() - p0;
      const until = performance.now() + 120_000;
      while ((await serving(b)) !== target) {
        if (performance.now() > until) throw new Error(`B never switched to ${target}:\n${b.log(40)}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      const events = (await b.json("/v1/aliases/xswap")).events as Json[];
      const ev = events.find((e) => e.type === "switched" && e.to === target);
      if (!ev) throw new Error("no switch event on B");
      return { b: (ev.at as number) * 1000 - t0, a: aMs };
    };

    await a.put("/v1/aliases/xswap", { target: baseId });
    while ((await serving(b)) !== baseId) await new Promise((r) => setTimeout(r, 10));
    log("cold switches (B loads each target for the first time)…");
    const cold: number[] = [];
    for (const name of names) cold.push((await switchTo(name)).b);
    log(`warm switches (${opts.runs})…`);
    const samples: number[] = [];
    const aPut: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const s = await switchTo(names[i % 2]);
      samples.push(s.b);
      aPut.push(s.a);
    }
    return {
      replicas: 2,
      store: "s3rver (npm) over HTTP on loopback",
      database: "postgresql",
      runs: opts.runs,
      cold_ms: cold.map(round),
      warm: {
        median_ms: round(quantile(samples, 0.5)),
        p99_ms: round(quantile(samples, 0.99)),
        min_ms: round(Math.min(...samples)),
        max_ms: round(Math.max(...samples)),
      },
      a_put: { median_ms: round(quantile(aPut, 0.5)), p99_ms: round(quantile(aPut, 0.99)) },
      samples_ms: samples.map(round),
      method: "PUT /v1/aliases/{name} on replica A -> replica B's own switch event (NOTIFY -> read alias row -> " +
        "load/validate if needed -> switch); ms from the start of the PUT to B's event, same machine clock. cold: " +
        "B fetches the delta from the store, compiles, loads and validates; warm: both targets already loaded on B.",
    };
  } finally {
    await Promise.all(replicas.map((r) => r.kill("SIGTERM")));
    await s3.stop();
    await admin.unsafe(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => {});
    await admin.end();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
