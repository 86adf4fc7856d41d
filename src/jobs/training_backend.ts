/**
 * What the job runner needs from training: validate a job's files, and run
 * one training that reports events and can be stopped. `WorkerBackend` does
 * both in a fresh Worker per call (job_worker.ts); tests substitute fakes to
 * drive the runner through states deterministically.
 */
import { deviceLockBuffer } from "../runtime/device_lock.ts";
import type { TrainOptions } from "./job_spec.ts";
import type {
  FromWorker,
  ToWorker,
  TrainEvent,
  TrainOutcome,
  ValidateOutcome,
  ValidateRequest,
} from "./job_worker_protocol.ts";

export interface TrainingRun {
  /** Settles once training has stopped for good (never rejects). */
  readonly done: Promise<TrainOutcome>;
  /** Ask it to stop after the current step (a checkpoint is written first). */
  abort(reason: string): void;
}

export interface TrainingBackend {
  validate(request: ValidateRequest): Promise<ValidateOutcome>;
  /** `onEvent` is called in order, without waiting (the caller queues its own persistence). */
  train(options: TrainOptions, onEvent: (e: TrainEvent) => void): TrainingRun;
}

/** One Worker per validation or training; the worker is terminated when it is done. */
export class WorkerBackend implements TrainingBackend {
  constructor(private readonly workerUrl = new URL("./job_worker.ts", import.meta.url)) {}

  validate(request: ValidateRequest): Promise<ValidateOutcome> {
    return this.#run<ValidateOutcome>({ type: "validate", request }, (m, settle) => {
      if (m.type === "validated") settle(m.outcome);
    }, (message): ValidateOutcome => ({ kind: "error", error: { code: "worker_crashed", message, param: null } })).done;
  }

  train(options: TrainOptions, onEvent: (e: TrainEvent) => void): TrainingRun {
    return this.#run<TrainOutcome>({ type: "train", options, deviceLock: deviceLockBuffer() }, (m, settle) => {
      if (m.type === "event") onEvent(m.event);
      else if (m.type === "trained") settle(m.outcome);
    }, (message): TrainOutcome => ({ kind: "failed", error: { code: "worker_crashed", message, param: null } }));
  }

  #run<T>(
    request: ToWorker,
    onMessage: (m: FromWorker, settle: (v: T) => void) => void,
    crashed: (message: string) => T,
  ): { done: Promise<T>; abort(reason: string): void } {
    const worker = new Worker(this.workerUrl, { type: "module" });
    let settled = false;
    let resolveDone!: (v: T) => void;
    const done = new Promise<T>((resolve) => (resolveDone = resolve));
    const settle = (v: T) => {
      if (settled) return;
      settled = true;
      worker.terminate();
      resolveDone(v);
    };
    worker.onmessage = (e: MessageEvent<FromWorker>) => onMessage(e.data, settle);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault(); // a crashed job must not take the server down
      settle(crashed(`the training worker crashed: ${e.message}`));
    };
    worker.onmessageerror = () => settle(crashed("the training worker sent an unreadable message"));
    worker.postMessage(request);
    return {
      done,
      abort: (reason) => {
        if (!settled) worker.postMessage({ type: "abort", reason } satisfies ToWorker);
      },
    };
  }
}
