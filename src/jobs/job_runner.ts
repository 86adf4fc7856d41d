/**
 * The fine-tuning job runner (main thread): validates new jobs' files, then
 * trains claimed jobs one at a time (one device) in a Worker, persisting what
 * the worker reports — events, checkpoints (store row + registry version),
 * the final version — and holding the job's lease with heartbeats. Only this
 * thread touches the store (PGlite is single-process).
 *
 * Lifecycle: validating_files → queued (or failed, with the first bad line)
 * → running (claimNext) → succeeded | failed. Cancel and pause are status
 * changes made by the API (fine_tuning_service.ts) that then `interrupt` the
 * run here: the worker stops between steps and saves a checkpoint; resume
 * re-queues the job and fineTune continues from that checkpoint bit-exactly.
 * Another replica's cancel shows up as a lost lease at the next heartbeat.
 *
 * Crash safety: the lease owner is stable across restarts of the same server
 * (host + data dir), so on start the runner re-queues the running jobs it
 * owned (a kill -9 left them leased to it) and re-validates jobs left in
 * validating_files; a crashed replica's jobs are reclaimed by anyone once
 * their lease expires (claimNext). A run marker in the job directory counts
 * runs that died without finishing; past `maxCrashes` the job fails with a
 * clear error instead of crash-looping. Checkpoints live under
 * `<dataDir>/jobs/<job-id>/` and are removed once the job is terminal.
 */
import { hostname } from "node:os";
import { resolve } from "node:path";
import type { Device } from "../runtime/device.ts";
import { type DiskSpace, isDiskFull } from "../disk_space.ts";
import { StoreError } from "../store/errors.ts";
import type { FileService } from "../store/file_service.ts";
import type { JobRecord } from "../store/job_queries.ts";
import { isTerminal } from "../store/job_status.ts";
import type { Store } from "../store/store.ts";
import { formatIssue } from "../train/dataset_errors.ts";
import type { CheckpointStore } from "./checkpoint_store.ts";
import { JobDirs } from "./job_dirs.ts";
import type { JobJournal } from "./job_events.ts";
import { RunRecorder } from "./job_recorder.ts";
import {
  fineTunedModelName,
  parseStoredMethod,
  promotionGate,
  type StoredMethod,
  type StoredPromotion,
  trainOptions,
} from "./job_spec.ts";
import type { JobFailure, TrainOutcome } from "./job_worker_protocol.ts";
import type { BaseModelLookup, EvaluationData, JobControl, VersionSink } from "./ports.ts";
import { type TrainingBackend, type TrainingRun, WorkerBackend } from "./training_backend.ts";

export interface JobRunnerOptions {
  store: Store;
  files: FileService;
  journal: JobJournal;
  sink: VersionSink;
  baseModels: BaseModelLookup;
  /** Job directories go under `<dataDir>/jobs/`; the hub cache is `<dataDir>/hub`. */
  dataDir: string;
  backend?: TrainingBackend;
  /** Lease owner name; must be unique per live server and stable across its restarts. Default `<host>:<dataDir>`. */
  owner?: string;
  /** Default 60 s. */
  leaseMs?: number;
  /** Default leaseMs / 4. */
  heartbeatMs?: number;
  /** Claim poll while idle (covers other replicas' queues). Default 2 s. */
  pollMs?: number;
  /** Re-validation sweep for jobs stuck in validating_files (a replica died mid-validation). Default 5 min. */
  sweepMs?: number;
  /** Runs of one job that may die without finishing before it is failed. Default 3. */
  maxCrashes?: number;
  device?: Device;
  threads?: number;
  /** Validation issues listed in the job's error event. Default 10. */
  maxListedIssues?: number;
  log?: (message: string) => void;
  /**
   * The data directory's filesystem: a job paused because the disk filled is
   * queued again once it has `lowFreeBytes` free (checked every
   * `diskPollMs`, default 10 s). Without it such a job waits for a resume.
   */
  disk?: DiskSpace;
  diskPollMs?: number;
  /**
   * Checkpoints in a shared artifact store: uploaded as they are written,
   * restored before a run, so any replica that claims the job resumes it.
   * Without it (or with the local store) the job directory is the only copy.
   */
  checkpoints?: CheckpointStore;
}

/** The `error` a job paused for a full disk carries until it resumes (and how the runner knows to resume it). */
const STORAGE_PAUSE = "insufficient_storage";

type StopReason = "cancel" | "pause" | "shutdown" | "lease_lost";

interface ActiveRun {
  jobId: string;
  run: TrainingRun | null;
  reason: StopReason | null;
}

type Settings =
  & Required<Omit<JobRunnerOptions, "device" | "threads" | "owner" | "backend" | "disk" | "checkpoints">>
  & JobRunnerOptions;

const LIST_PAGE = 1000;
const describe = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class JobRunner implements JobControl {
  readonly owner: string;
  readonly #o: Settings;
  readonly #backend: TrainingBackend;
  readonly #dirs: JobDirs;
  readonly #validationQueue: string[] = [];
  readonly #sleepers = new Set<() => void>();
  #active: ActiveRun | null = null;
  /** Jobs paused because the disk filled: queued again when there is room. */
  readonly #pausedForSpace = new Set<string>();
  #stopped = false;
  #loops: Promise<void>[] = [];

  constructor(opts: JobRunnerOptions) {
    const leaseMs = opts.leaseMs ?? 60_000;
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as JobRunnerOptions;
    this.#o = {
      leaseMs,
      heartbeatMs: Math.max(50, Math.floor(leaseMs / 4)),
      pollMs: 2000,
      sweepMs: 300_000,
      maxCrashes: 3,
      maxListedIssues: 10,
      diskPollMs: 10_000,
      log: (m) => console.error(`[job-runner] ${m}`),
      ...given,
    };
    this.#backend = opts.backend ?? new WorkerBackend();
    this.#dirs = new JobDirs(opts.dataDir);
    this.owner = opts.owner ?? `${hostname()}:${resolve(opts.dataDir)}`;
  }

  get canPromoteAliases(): boolean {
    return this.#o.sink.promoteAlias !== undefined;
  }

  get canGatePromotions(): boolean {
    return this.#o.sink.promoteAliasGated !== undefined;
  }

  /** The id of the job training right now, if any. */
  get activeJob(): string | null {
    return this.#active?.jobId ?? null;
  }

  /** Recovers what a previous run of this server left behind, then starts validating and training. */
  async start(): Promise<void> {
    await Deno.mkdir(this.#dirs.root, { recursive: true });
    await this.#recover();
    this.#loops = [this.#trainLoop(), this.#validationLoop()];
  }

  /** Stops taking work; a running job is checkpointed and handed back to the queue (it resumes on restart). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#active) this.#stopRun(this.#active, "shutdown");
    this.#wake();
    await Promise.all(this.#loops);
  }

  created(jobId: string): void {
    if (!this.#validationQueue.includes(jobId)) this.#validationQueue.push(jobId);
    this.#wake();
  }

  queued(_jobId: string): void {
    this.#wake();
  }

  interrupt(jobId: string, reason: "cancel" | "pause"): void {
    if (this.#active?.jobId === jobId) this.#stopRun(this.#active, reason);
    // Cancelled while paused or queued: its checkpoints (if here) can go now.
    else if (reason === "cancel") void this.#cleanUp(jobId);
  }

  #stopRun(active: ActiveRun, reason: StopReason): void {
    // A cancel overrides an earlier pause: the job is gone for good, its files can go too.
    if (active.reason === null || reason === "cancel") active.reason = reason;
    active.run?.abort(reason);
  }

  // ---------- loops ----------

  /** Resolves after `ms`, or earlier on a new job or stop. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#sleepers.add(done);
    });
  }

  #wake(): void {
    for (const done of [...this.#sleepers]) done();
  }

  async #trainLoop(): Promise<void> {
    while (!this.#stopped) {
      await this.#resumeWhenSpace().catch((e) => this.#o.log(`resuming jobs paused for space failed: ${describe(e)}`));
      let job: JobRecord | null = null;
      try {
        job = await this.#o.store.jobs.claimNext(this.owner, this.#o.leaseMs);
      } catch (e) {
        this.#o.log(`claiming a job failed: ${describe(e)}`);
      }
      if (!job) {
        await this.#sleep(this.#o.pollMs);
        continue;
      }
      if (this.#stopped) {
        // Claimed while stopping: hand it straight back.
        await this.#o.store.jobs.transition(job.id, "queued", { from: "running", leaseOwner: this.owner })
          .catch((e) => this.#o.log(`job ${job.id}: could not re-queue it: ${describe(e)}`));
        break;
      }
      const active: ActiveRun = { jobId: job.id, run: null, reason: null };
      this.#active = active;
      try {
        await this.#train(job, active);
      } catch (e) {
        this.#o.log(`job ${job.id}: ${e instanceof Error ? e.stack : e}`);
        const error = { code: "internal_error", message: `internal error: ${describe(e)}`, param: null };
        if (await this.#fail(job.id, error, { leaseOwner: this.owner }).catch(() => false)) {
          await this.#cleanUp(job.id);
        }
      } finally {
        this.#active = null;
      }
    }
  }

  async #validationLoop(): Promise<void> {
    let nextSweep = performance.now() + this.#o.sweepMs;
    while (!this.#stopped) {
      if (performance.now() >= nextSweep) {
        nextSweep = performance.now() + this.#o.sweepMs;
        await this.#sweepStaleValidations().catch((e) => this.#o.log(`validation sweep failed: ${describe(e)}`));
      }
      const jobId = this.#validationQueue.shift();
      if (jobId === undefined) {
        await this.#sleep(Math.max(0, nextSweep - performance.now()));
        continue;
      }
      try {
        await this.#validate(jobId);
      } catch (e) {
        this.#o.log(`validating ${jobId}: ${e instanceof Error ? e.stack : e}`);
        const error = { code: "internal_error", message: `internal error: ${describe(e)}`, param: null };
        await this.#fail(jobId, error, { from: "validating_files" }).catch(() => {});
      }
    }
  }

  // ---------- recovery ----------

  async *#allJobs(): AsyncGenerator<JobRecord> {
    let after: string | null = null;
    for (;;) {
      const page = await this.#o.store.jobs.list({ after, limit: LIST_PAGE, order: "asc" });
      yield* page.data;
      if (!page.hasMore || page.data.length === 0) return;
      after = page.data[page.data.length - 1].id;
    }
  }

  async #recover(): Promise<void> {
    for await (const job of this.#allJobs()) {
      if (job.status === "running" && job.leaseOwner === this.owner) {
        // Leased to us, but we just started: the previous process died with it.
        try {
          await this.#o.store.jobs.transition(job.id, "queued", { from: "running", leaseOwner: this.owner });
          await this.#o.journal.status(
            job.id,
            "queued",
            "The server restarted while the job was running; it is queued again and resumes from its latest checkpoint",
            "warn",
          );
        } catch (e) {
          if (!(e instanceof StoreError)) throw e;
        }
      } else if (job.status === "validating_files") {
        this.created(job.id);
      } else if (job.status === "paused" && job.error?.code === STORAGE_PAUSE) {
        this.#pausedForSpace.add(job.id);
      }
    }
    // Files of jobs that ended while their cleanup did not run (a crash in between).
    let removed = false;
    for await (const entry of Deno.readDir(this.#dirs.root)) {
      if (await this.#endedOrGone(entry.name)) {
        await Deno.remove(`${this.#dirs.root}/${entry.name}`, { recursive: true });
        removed = true;
      }
    }
    // The same for checkpoints in a shared store (any replica may have left them).
    for (const jobId of await this.#o.checkpoints?.jobIds().catch(() => []) ?? []) {
      if (await this.#endedOrGone(jobId)) {
        await this.#o.checkpoints!.remove(jobId).catch((e) =>
          this.#o.log(`removing the stored checkpoints of ${jobId} failed: ${describe(e)}`)
        );
      }
    }
    if (removed) await this.#collectGarbage();
  }

  /** Whether a job has ended or is not in the store at all (its leftover files may go). */
  async #endedOrGone(jobId: string): Promise<boolean> {
    try {
      return isTerminal((await this.#o.store.jobs.get(jobId)).status);
    } catch (e) {
      if (e instanceof StoreError && e.kind === "not_found") return true;
      throw e;
    }
  }

  async #sweepStaleValidations(): Promise<void> {
    const staleBefore = Date.now() - this.#o.leaseMs;
    for await (const job of this.#allJobs()) {
      if (job.status === "validating_files" && job.updatedAt.getTime() < staleBefore) this.created(job.id);
    }
  }

  // ---------- validation ----------

  async #readFile(id: string): Promise<string> {
    const { stream } = await this.#o.files.content(id, { includeDeleted: true });
    return await new Response(stream).text();
  }

  async #validate(jobId: string): Promise<void> {
    const job = await this.#o.store.jobs.get(jobId);
    if (job.status !== "validating_files") return;
    const spec = parseStoredMethod(job.method);
    const model = this.#o.baseModels.resolve(job.model);
    if (model === null) return void await this.#failUnavailableModel(job, { from: "validating_files" });
    const { journal } = this.#o;
    await journal.append(jobId, {
      level: "info",
      message: `Validating training file: ${job.trainingFile}` +
        (job.validationFile ? ` and validation file: ${job.validationFile}` : ""),
    });
    const maxLength = spec.supervised.hyperparameters.max_length;
    const outcome = await this.#backend.validate({
      model,
      dataDir: this.#o.dataDir,
      maxLength,
      trainText: await this.#readFile(job.trainingFile),
      ...(job.validationFile ? { validationText: await this.#readFile(job.validationFile) } : {}),
      maxIssues: this.#o.maxListedIssues,
    });
    if (outcome.kind === "error") return void await this.#fail(jobId, outcome.error, { from: "validating_files" });
    if (outcome.kind === "invalid") {
      const { file, issues, issueCount } = outcome;
      const more = issueCount - 1;
      const error: JobFailure = {
        code: issues[0].code,
        message: `${file}: ${formatIssue(issues[0])}` +
          (more > 0 ? ` (and ${more} more problem${more > 1 ? "s" : ""})` : ""),
        param: file,
      };
      const fileId = file === "training_file" ? job.trainingFile : job.validationFile;
      await journal.append(jobId, {
        level: "error",
        message: `${file} ${fileId} has ${issueCount} problem${issueCount > 1 ? "s" : ""}:\n` +
          issues.map(formatIssue).join("\n") + (issueCount > issues.length ? "\n…" : ""),
        data: { file, issue_count: issueCount, issues: issues.map((i) => ({ ...i })) },
      });
      return void await this.#fail(jobId, error, { from: "validating_files" });
    }
    const { train, validation } = outcome;
    const stats = `${train.examples} training examples (${train.trainableTokens} trainable tokens)` +
      (validation ? `, ${validation.examples} validation examples` : "") +
      (train.truncated ? `; ${train.truncated} truncated to ${maxLength} tokens` : "");
    try {
      await this.#o.store.jobs.transition(jobId, "queued", { from: "validating_files" });
    } catch (e) {
      if (e instanceof StoreError) return; // cancelled meanwhile (or another replica got there first)
      throw e;
    }
    await journal.status(jobId, "queued", `Files validated: ${stats}. Job queued`);
    this.#wake();
  }

  // ---------- training ----------

  async #train(job: JobRecord, active: ActiveRun): Promise<void> {
    const leased = { leaseOwner: this.owner };
    const spec = parseStoredMethod(job.method);
    const model = this.#o.baseModels.resolve(job.model);
    if (model === null) return void await this.#failUnavailableModel(job, leased);

    const crashes = await this.#dirs.runStarts(job.id);
    if (crashes > this.#o.maxCrashes) {
      const message = `the server died ${crashes} times while training this job; giving up`;
      await this.#fail(job.id, { code: "training_interrupted", message, param: null }, leased);
      return await this.#cleanUp(job.id);
    }
    await this.#o.journal.status(
      job.id,
      "running",
      job.attempts > 1 || crashes > 0
        ? `Fine-tuning job resumed${
          crashes > 0 ? " after an interrupted run" : ""
        }: continuing from its latest checkpoint`
        : "Fine-tuning job started",
    );

    const restored = await this.#restoreCheckpoint(job.id);
    if (restored !== null) {
      await this.#o.journal.append(job.id, {
        level: "info",
        message: `Checkpoint at step ${restored} restored from the artifact store`,
      });
    }
    const recorder = new RunRecorder(this.#o, job, fineTunedModelName(job.model, job.suffix, job.id));
    const run = this.#backend.train(
      trainOptions(spec.supervised.hyperparameters, {
        model,
        dataDir: this.#o.dataDir,
        trainText: await this.#readFile(job.trainingFile),
        ...(job.validationFile ? { validationText: await this.#readFile(job.validationFile) } : {}),
        checkpointDir: this.#dirs.checkpoints(job.id),
        seed: job.seed,
        device: this.#o.device,
        threads: this.#o.threads,
      }),
      (e) => recorder.push(e),
    );
    active.run = run;
    if (active.reason) run.abort(active.reason); // interrupted while starting

    // The lease is renewed from this thread, whatever the worker is doing; losing it stops the run.
    const heartbeat = setInterval(async () => {
      try {
        const beat = await this.#o.store.jobs.heartbeat(job.id, this.owner, this.#o.leaseMs, {
          estimatedFinish: recorder.estimatedFinish(),
        });
        if (!beat.held) {
          this.#stopRun(
            active,
            beat.status === "paused" ? "pause" : beat.status === "cancelled" ? "cancel" : "lease_lost",
          );
        }
      } catch (e) {
        this.#o.log(`job ${job.id}: heartbeat failed: ${describe(e)}`);
      }
    }, this.#o.heartbeatMs);
    let outcome: TrainOutcome;
    try {
      outcome = await run.done;
    } finally {
      clearInterval(heartbeat);
      await recorder.drain();
    }
    await this.#finish(job, spec, recorder, outcome, active.reason);
    await this.#dirs.runEnded(job.id);
  }

  /** The shared store's newest checkpoint into the job directory (null: none, or no shared store). */
  async #restoreCheckpoint(jobId: string): Promise<number | null> {
    if (!this.#o.checkpoints) return null;
    try {
      return await this.#o.checkpoints.restore(jobId, this.#dirs.checkpoints(jobId));
    } catch (e) {
      // The run goes on from what is local (or from scratch): same trajectory, more steps.
      this.#o.log(`job ${jobId}: restoring its checkpoint from the artifact store failed: ${describe(e)}`);
      return null;
    }
  }

  /** A pause point or shutdown checkpoint into the shared store, so another replica can resume from it. */
  async #uploadCheckpoint(jobId: string, dir: string | null): Promise<void> {
    if (!dir || !this.#o.checkpoints) return;
    await this.#o.checkpoints.upload(jobId, dir).catch((e) =>
      this.#o.log(`job ${jobId}: uploading the checkpoint ${dir} failed: ${describe(e)}`)
    );
  }

  async #finish(
    job: JobRecord,
    spec: StoredMethod,
    recorder: RunRecorder,
    outcome: TrainOutcome,
    reason: StopReason | null,
  ): Promise<void> {
    const { journal, store } = this.#o;
    const leased = { leaseOwner: this.owner };
    if (outcome.kind === "failed") {
      if (outcome.error.code === STORAGE_PAUSE) return void await this.#pauseForSpace(job.id, outcome.error.message);
      if (await this.#fail(job.id, outcome.error, leased)) await this.#cleanUp(job.id);
      return;
    }
    if (outcome.kind === "aborted") {
      const { step } = outcome;
      if (reason === "pause" || reason === "shutdown") {
        await this.#uploadCheckpoint(job.id, outcome.checkpoint);
      }
      if (reason === "pause") {
        const where = outcome.checkpoint ? `; it resumes from step ${step}` : "";
        await journal.append(job.id, { level: "info", message: `Training paused at step ${step}${where}` });
      } else if (reason === "cancel") {
        await journal.append(job.id, { level: "info", message: `Training stopped at step ${step}` });
        await this.#cleanUp(job.id);
      } else if (reason === "lease_lost") {
        this.#o.log(`job ${job.id}: lease lost at step ${step}; another worker owns it now`);
      } else {
        // Shutdown: hand the job back so the next start (or another replica) resumes it.
        try {
          await store.jobs.transition(job.id, "queued", { from: "running", ...leased });
          await journal.status(job.id, "queued", `The server is shutting down: job re-queued at step ${step}`);
        } catch (e) {
          if (!(e instanceof StoreError)) throw e;
        }
      }
      return;
    }
    const { result } = outcome;
    let name: string;
    try {
      name = await recorder.registerFinal(result);
    } catch (e) {
      if (isDiskFull(e)) return void await this.#pauseForSpace(job.id, describe(e));
      const message = `training finished but the model could not be registered: ${describe(e)}`;
      if (await this.#fail(job.id, { code: "registry_error", message, param: null }, leased)) {
        await this.#cleanUp(job.id);
      }
      return;
    }
    // Before the final status: a crash in between re-runs this, and promotion is idempotent.
    if (spec.promotion !== null) {
      const promotion = spec.promotion;
      await recorder.promoteGated(
        promotion.alias,
        name,
        promotionGate(promotion),
        () => this.#evaluationData(job, spec, promotion),
      );
    } else if (spec.promote_to_alias !== null) await recorder.promote(spec.promote_to_alias, name);
    try {
      await store.jobs.transition(job.id, "succeeded", {
        ...leased,
        patch: { fineTunedModel: name, trainedTokens: result.trainedTokens, estimatedFinish: null },
      });
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      this.#o.log(`job ${job.id}: finished, but its status changed meanwhile (${e.message})`);
      return;
    }
    await journal.status(job.id, "succeeded", "The job has successfully completed");
    await this.#cleanUp(job.id);
  }

  /** A gated promotion's evaluation set: its eval file, else the job's validation file, as the job tokenized it. */
  async #evaluationData(job: JobRecord, spec: StoredMethod, promotion: StoredPromotion): Promise<EvaluationData> {
    const file = promotion.eval_file ?? job.validationFile;
    if (!file) throw new Error("no validation file or eval_file to evaluate on");
    const hp = spec.supervised.hyperparameters;
    return {
      text: await this.#readFile(file),
      source: `${promotion.eval_file ? "eval_file" : "validation_file"} ${file}`,
      maxLength: hp.max_length,
      batchSize: hp.batch_size,
      seed: job.seed,
    };
  }

  // ---------- a full disk ----------

  /**
   * A run that could not write (checkpoints, its version) because the disk is
   * full is paused, not failed: its last checkpoint stays, and it is queued
   * again once there is room (#resumeWhenSpace), continuing from there.
   */
  async #pauseForSpace(jobId: string, detail: string): Promise<void> {
    const error = { code: STORAGE_PAUSE, message: `paused: the disk is full (${detail})`, param: null };
    const when = this.#o.disk
      ? `it resumes by itself once DATA_DIR has ${this.#o.disk.lowFreeBytes} bytes free`
      : "resume it once there is room";
    const message = `Training paused: the disk is full (${detail}); ${when}, from its latest checkpoint`;
    try {
      // The status and its event in one transaction: a full disk cannot leave a pause without its reason.
      await this.#o.store.jobs.transition(jobId, "paused", {
        from: "running",
        leaseOwner: this.owner,
        patch: { error, estimatedFinish: null },
        event: { level: "warn", message, data: { status: "paused" } },
      });
    } catch (e) {
      if (e instanceof StoreError) return; // cancelled or taken over meanwhile
      if (!isDiskFull(e)) throw e;
      // Not even the pause could be written: the lease runs out and the job is claimed again later.
      this.#o.log(`job ${jobId}: could not record the pause for space: ${describe(e)}`);
      return;
    }
    this.#o.journal.notify(jobId);
    this.#pausedForSpace.add(jobId);
  }

  #nextSpaceCheck = 0;

  async #resumeWhenSpace(): Promise<void> {
    const disk = this.#o.disk;
    if (!disk || this.#pausedForSpace.size === 0 || performance.now() < this.#nextSpaceCheck) return;
    this.#nextSpaceCheck = performance.now() + this.#o.diskPollMs;
    const usage = await disk.usage();
    if (!usage || usage.freeBytes < disk.lowFreeBytes) return;
    for (const jobId of [...this.#pausedForSpace]) {
      this.#pausedForSpace.delete(jobId);
      try {
        await this.#o.store.jobs.transition(jobId, "queued", { from: "paused", patch: { error: null } });
      } catch (e) {
        if (e instanceof StoreError) continue; // resumed or cancelled by hand meanwhile
        throw e;
      }
      await this.#o.journal.status(
        jobId,
        "queued",
        `Space is available again (${usage.freeBytes} bytes free): job queued`,
      );
    }
  }

  // ---------- endings ----------

  /** Fails the job (compare-and-set); false when it is no longer in a state that can fail. */
  async #fail(
    jobId: string,
    error: JobFailure,
    opts: { from?: "validating_files"; leaseOwner?: string },
  ): Promise<boolean> {
    try {
      await this.#o.store.jobs.transition(jobId, "failed", { ...opts, patch: { error, estimatedFinish: null } });
    } catch (e) {
      if (e instanceof StoreError) return false;
      throw e;
    }
    await this.#o.journal.status(jobId, "failed", `Job failed: ${error.message}`, "error");
    await this.#collectGarbage();
    return true;
  }

  #failUnavailableModel(job: JobRecord, opts: { from?: "validating_files"; leaseOwner?: string }): Promise<boolean> {
    return this.#fail(job.id, {
      code: "model_not_available",
      message: `the base model '${job.model}' is not available for fine-tuning on this server`,
      param: "model",
    }, opts);
  }

  /** Removes a finished job's files (checkpoints, marker) and the uploads only it still needed. */
  async #cleanUp(jobId: string): Promise<void> {
    await this.#dirs.remove(jobId).catch((e) => this.#o.log(`removing the files of ${jobId} failed: ${describe(e)}`));
    await this.#o.checkpoints?.remove(jobId).catch((e) =>
      this.#o.log(`removing the stored checkpoints of ${jobId} failed: ${describe(e)}`)
    );
    await this.#collectGarbage();
  }

  async #collectGarbage(): Promise<void> {
    await this.#o.files.collectGarbage().catch((e) => this.#o.log(`file garbage collection failed: ${describe(e)}`));
  }
}
