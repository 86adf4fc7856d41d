/** The scheduler's pure plan step: no worker, no model, only data in and a plan out. */
import assert from "node:assert/strict";
import {
  admissionWaitMs,
  type PlanLimits,
  planStep,
  type QueuedSequence,
  type RunningSequence,
} from "../src/serve/schedule_plan.ts";

const LIMITS: PlanLimits = { maxBatchSize: 4, prefillTokensPerStep: 100, prefillPaddingRatio: 0.25 };

const queued = (id: number, promptLength: number, allLogits = false): QueuedSequence => ({
  id,
  promptLength,
  allLogits,
});
const running = (id: number, cancelled = false): RunningSequence => ({ id, cancelled });

Deno.test("an idle engine with nothing queued plans nothing", () => {
  assert.deepEqual(planStep([], [], LIMITS), { leave: [], join: [], prefills: [], decode: [] });
});

Deno.test("a running batch with an empty queue decodes everyone", () => {
  const plan = planStep([], [running(3), running(1), running(2)], LIMITS);
  assert.deepEqual(plan, { leave: [], join: [], prefills: [], decode: [3, 1, 2] });
});

Deno.test("queued sequences join up to the batch size, in arrival order, then decode after the running ones", () => {
  const plan = planStep([queued(5, 10), queued(6, 10), queued(7, 10)], [running(1), running(2)], LIMITS);
  assert.deepEqual(plan.join, [5, 6]);
  assert.deepEqual(plan.decode, [1, 2, 5, 6]);
  assert.deepEqual(plan.prefills, [{ seqs: [5, 6], allLogits: false }], "equal lengths: one pass");
});

Deno.test("cancelled sequences leave first and free their slots", () => {
  const plan = planStep([queued(5, 10), queued(6, 10)], [running(1, true), running(2), running(3, true)], {
    ...LIMITS,
    maxBatchSize: 3,
  });
  assert.deepEqual(plan.leave, [1, 3]);
  assert.deepEqual(plan.join, [5, 6]);
  assert.deepEqual(plan.decode, [2, 5, 6]);
});

Deno.test("the prefill token budget stops joining at the first prompt that does not fit", () => {
  // 60 + 30 fit in 100; 20 would too, but does not overtake the 50 ahead of it.
  const plan = planStep([queued(1, 60), queued(2, 30), queued(3, 50), queued(4, 20)], [], LIMITS);
  assert.deepEqual(plan.join, [1, 2]);
});

Deno.test("one prompt always joins, however long", () => {
  const plan = planStep([queued(1, 5000), queued(2, 1)], [], LIMITS);
  assert.deepEqual(plan.join, [1]);
  assert.deepEqual(plan.prefills, [{ seqs: [1], allLogits: false }]);
  assert.deepEqual(plan.decode, [1]);
});

Deno.test("nothing joins a full batch", () => {
  const plan = planStep([queued(9, 1)], [1, 2, 3, 4].map((id) => running(id)), LIMITS);
  assert.deepEqual(plan.join, []);
  assert.deepEqual(plan.prefills, []);
  assert.deepEqual(plan.decode, [1, 2, 3, 4]);
});

Deno.test("prompts of similar length are prefilled together; prompt-logprob ones alone", () => {
  const plan = planStep(
    [queued(1, 10), queued(2, 40), queued(3, 12, true), queued(4, 36)],
    [],
    { ...LIMITS, prefillTokensPerStep: 1000 },
  );
  assert.deepEqual(plan.join, [1, 2, 3, 4]);
  // By length: 40 and 36 share a pass (10% padding); 10 would pad it by 40%.
  assert.deepEqual(plan.prefills, [
    { seqs: [3], allLogits: true },
    { seqs: [2, 4], allLogits: false },
    { seqs: [1], allLogits: false },
  ]);
  assert.deepEqual(plan.decode, [1, 2, 3, 4], "the decode batch keeps arrival order");
});

Deno.test("an idle engine waits for a quiet gap after the last arrival, and 10x the quiet time at most", () => {
  // Started at 0, quiet time 3 ms.
  assert.equal(admissionWaitMs(1, 0, 0, 3), 2, "3 ms after the one arrival");
  assert.equal(admissionWaitMs(5, 4, 0, 3), 2, "a later arrival restarts the gap");
  assert.ok(admissionWaitMs(7, 4, 0, 3) <= 0, "quiet for 3 ms: start");
  assert.equal(admissionWaitMs(29, 28.5, 0, 3), 1, "arrivals never stop: capped at 30 ms");
  assert.ok(admissionWaitMs(30, 29.9, 0, 3) <= 0);
  assert.ok(admissionWaitMs(0, 0, 0, 0) <= 0, "no quiet time: start at once");
});
