/**
 * Worker entry point of the job runner: validates a job's files or trains it
 * with fineTune, posting events back. Training blocks its thread (ORT runs are
 * synchronous), which is why it lives here and not on the HTTP thread; the
 * store stays on the main thread (PGlite is single-process), so this worker
 * only computes and reports.
 *
 * An `abort` message fires fineTune's signal: it stops between steps, saves a
 * checkpoint and the outcome is `aborted`.
 */
/// <reference lib="deno.worker" />
import "./worker_globals.ts"; // before anything loads transformers.js
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { adoptDeviceLock } from "../runtime/device_lock.ts";
import { fineTune, FineTuneAborted } from "../train/fine_tune.ts";
import type { TrainOptions } from "./job_spec.ts";
import { jobFailure, validateJobFiles } from "./job_validation.ts";
import type { FromWorker, ToWorker, TrainOutcome } from "./job_worker_protocol.ts";

const post = (m: FromWorker) => self.postMessage(m);
const controller = new AbortController();

async function train(options: TrainOptions): Promise<TrainOutcome> {
  try {
    const result = await fineTune({
      ...options,
      signal: controller.signal,
      onEvent: async (e) => {
        // Deltas are materialized here: a closure over the trainer cannot cross threads.
        post({ type: "event", event: e.type === "checkpoint" ? { ...e, deltas: await e.deltas() } : e });
      },
    });
    return { kind: "succeeded", result };
  } catch (e) {
    if (e instanceof FineTuneAborted) return { kind: "aborted", step: e.step, checkpoint: e.checkpoint };
    return { kind: "failed", error: jobFailure(e) };
  }
}

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  switch (msg.type) {
    case "abort":
      controller.abort(msg.reason);
      return;
    case "validate":
      post({ type: "validated", outcome: await validateJobFiles(msg.request) });
      return;
    case "train":
      adoptDeviceLock(msg.deviceLock);
      post({ type: "trained", outcome: await train(msg.options) });
      return;
  }
};
