import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { RunRecorder } from "../src/jobs/job_recorder.ts";
import type { JobJournal } from "../src/jobs/job_events.ts";
import type { VersionSink } from "../src/jobs/ports.ts";
import type { JobRecord } from "../src/store/job_queries.ts";
import type { Store } from "../src/store/store.ts";

Deno.test("estimated_finish: from the steps after the first, at the measured rate", async () => {
  let clock = 1_000_000;
  const appended: { type?: string; data?: unknown }[] = [];
  const journal = {
    append: (_id: string, e: { type?: string; data?: unknown }) => (appended.push(e), Promise.resolve()),
  };
  const recorder = new RunRecorder(
    {
      store: {} as Store,
      journal: journal as unknown as JobJournal,
      sink: {} as VersionSink,
      log: () => {},
      now: () => clock,
    },
    { id: "ftjob-1" } as JobRecord,
    "ft:tiny:x",
  );
  const metrics = (step: number) => ({
    type: "metrics" as const,
    step,
    totalSteps: 10,
    epoch: 1,
    trainLoss: 1,
    tokenAccuracy: 0.5,
    tokensPerSecond: 123,
    learningRate: 1e-3,
    lrBoost: 1,
  });
  assert.equal(recorder.estimatedFinish(), undefined, "nothing timed yet");
  recorder.push(metrics(1)); // includes warm-up: the rate starts after it
  assert.equal(recorder.estimatedFinish(), undefined, "one step gives no rate");
  clock += 5_000;
  recorder.push(metrics(3));
  // 2 steps in 5 s → 2.5 s per step, 7 steps left.
  assert.equal(recorder.estimatedFinish()!.getTime(), clock + 7 * 2_500);
  clock += 1_000;
  recorder.push(metrics(4));
  assert.equal(recorder.estimatedFinish()!.getTime(), clock + 6 * 2_000);
  await recorder.drain();
  assert.equal(appended.length, 3);
  assert.equal((appended[2].data as Record<string, unknown>).tokens_per_second, 123);
});
