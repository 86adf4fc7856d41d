/**
 * The fine-tuning API's domain side (routes/fine_tuning.ts is the HTTP
 * side): checks a new job's model, files and options, resolves its
 * hyperparameters and stores it; cancel / pause / resume as compare-and-set
 * status changes that then reach the runner; event and checkpoint lists, and
 * live event watches.
 *
 * Files are checked for existence, purpose and status here (a clear 400
 * naming the parameter); their content is validated by the runner, line by
 * line, in the job's `validating_files` phase (a bad file fails the job with
 * the first bad line, as OpenAI does).
 */
import { ApiError } from "../errors.ts";
import { StoreError } from "../store/errors.ts";
import type { FileRecord } from "../store/file_queries.ts";
import type { FileService } from "../store/file_service.ts";
import type { CheckpointRecord } from "../store/checkpoint_queries.ts";
import type { EventRecord } from "../store/event_queries.ts";
import type { JobRecord } from "../store/job_queries.ts";
import type { Page, PageRequest } from "../store/pagination.ts";
import type { Store } from "../store/store.ts";
import { type JobJournal, type WatchItem, type WatchOptions } from "./job_events.ts";
import { TRAINING_DEFAULTS } from "../train/fine_tune_config.ts";
import {
  countJsonlLines,
  DEFAULTS,
  type HyperparameterRequest,
  parseStoredMethod,
  type PromotionRequest,
  type ResolvedHyperparameters,
  resolveHyperparameters,
  resolvePromotion,
  storedMethod,
} from "./job_spec.ts";
import type { ValidateOutcome, ValidateRequest } from "./job_worker_protocol.ts";
import type { BaseModelLookup, EvaluationData, JobControl } from "./ports.ts";

export type FineTuningErrorCode =
  /** The model is unknown here or cannot be fine-tuned. */
  | "model_not_available"
  /** The file id names no (live) file. */
  | "invalid_file_id"
  /** The file was uploaded for another purpose. */
  | "invalid_file_purpose"
  /** The file is not usable (its processing failed). */
  | "invalid_file_status"
  /** Parameters that cannot be combined (e.g. hyperparameters both in `method` and at the top level). */
  | "conflicting_parameters"
  /** A valid OpenAI option this server does not implement. */
  | "unsupported_parameter"
  /** An eval-gated promotion with nothing to evaluate on (no validation file, no eval file). */
  | "missing_evaluation_data";

/** The one error type of the fine-tuning domain (the store's own failures stay `StoreError`). */
export class FineTuningError extends ApiError {
  override name = "FineTuningError";
  declare readonly code: FineTuningErrorCode;
  constructor(code: FineTuningErrorCode, message: string, param: string | null) {
    super(400, message, "invalid_request_error", param, code);
  }
}

/** A create request after the HTTP layer's shape checks. */
export interface CreateJobInput {
  model: string;
  training_file: string;
  validation_file?: string | null;
  suffix?: string | null;
  seed?: number | null;
  method?: {
    type: "supervised" | "dpo" | "reinforcement";
    supervised?: { hyperparameters?: HyperparameterRequest | null } | null;
  } | null;
  /** Deprecated by OpenAI in favour of `method`; accepted when `method` carries none. */
  hyperparameters?: HyperparameterRequest | null;
  metadata?: Record<string, string> | null;
  integrations?: unknown[] | null;
  promote_to_alias?: string | null;
  /** Eval-gated promotion (ScaLoRA extension): point `alias` at the result only if it beats the alias's target. */
  promotion?: PromotionRequest | null;
}

export interface FineTuningServiceDeps {
  store: Store;
  files: FileService;
  journal: JobJournal;
  control: JobControl;
  baseModels: BaseModelLookup;
  /** Validates a file's lines as a job's `validating_files` phase does (checkFile); absent: not offered. */
  validate?: (request: Omit<ValidateRequest, "dataDir">) => Promise<ValidateOutcome>;
}

/** What checkFile found: the job's own validation, before any job exists. */
export interface FileCheck {
  file: FileRecord;
  outcome: ValidateOutcome;
  /** The values "auto" and the defaults resolve to for a job on this file (when it is valid). */
  hyperparameters: ResolvedHyperparameters | null;
}

const MAX_SEED = 2_147_483_647;

export class FineTuningService {
  constructor(private readonly deps: FineTuningServiceDeps) {}

  async create(input: CreateJobInput): Promise<JobRecord> {
    const { store, journal, control } = this.deps;
    if (input.method && input.method.type !== "supervised") {
      throw new FineTuningError(
        "unsupported_parameter",
        `Fine-tuning method '${input.method.type}' is not supported; supported: supervised`,
        "method.type",
      );
    }
    const inMethod = input.method?.supervised?.hyperparameters ?? null;
    if (inMethod && input.hyperparameters) {
      throw new FineTuningError(
        "conflicting_parameters",
        "Give hyperparameters either in 'method.supervised.hyperparameters' or in the deprecated top-level " +
          "'hyperparameters', not both",
        "hyperparameters",
      );
    }
    if (input.integrations && input.integrations.length > 0) {
      throw new FineTuningError("unsupported_parameter", "Integrations are not supported", "integrations");
    }
    const promoteToAlias = input.promote_to_alias ?? null;
    if (promoteToAlias !== null && !control.canPromoteAliases) {
      throw new FineTuningError(
        "unsupported_parameter",
        "This server cannot promote models to aliases",
        "promote_to_alias",
      );
    }
    const promotion = input.promotion ? resolvePromotion(input.promotion) : null;
    if (promotion) {
      if (promoteToAlias !== null) {
        throw new FineTuningError(
          "conflicting_parameters",
          "Give either 'promote_to_alias' (switch on success) or 'promotion' (switch if the result wins its " +
            "evaluation), not both",
          "promotion",
        );
      }
      if (!control.canGatePromotions) {
        throw new FineTuningError("unsupported_parameter", "This server cannot evaluate promotions", "promotion");
      }
      if (!promotion.eval_file && !input.validation_file) {
        throw new FineTuningError(
          "missing_evaluation_data",
          "An eval-gated promotion needs data to evaluate on: give a 'validation_file' or 'promotion.eval_file'",
          "promotion.eval_file",
        );
      }
      if (promotion.eval_file) await this.#usableFile(promotion.eval_file, "promotion.eval_file");
    }
    if (this.deps.baseModels.resolve(input.model) === null) {
      throw new FineTuningError(
        "model_not_available",
        `Model ${input.model} is not available for fine-tuning or does not exist`,
        "model",
      );
    }
    const training = await this.#usableFile(input.training_file, "training_file");
    if (input.validation_file) await this.#usableFile(input.validation_file, "validation_file");

    // "auto" values depend on the example count: one line per example in a valid file.
    const { stream } = await this.deps.files.content(training.id);
    const examples = await countJsonlLines(stream);
    const hp = resolveHyperparameters(inMethod ?? input.hyperparameters ?? {}, examples);
    const job = await store.jobs.create({
      model: input.model,
      trainingFile: training.id,
      validationFile: input.validation_file ?? null,
      suffix: input.suffix ?? null,
      seed: input.seed ?? crypto.getRandomValues(new Uint32Array(1))[0] % (MAX_SEED + 1),
      method: storedMethod(hp, promoteToAlias, promotion),
      hyperparameters: { ...hp },
      metadata: input.metadata ?? null,
    }, (id) => ({ level: "info", message: `Created fine-tuning job: ${id}`, data: { status: "validating_files" } }));
    journal.notify(job.id);
    control.created(job.id);
    return job;
  }

  get(id: string): Promise<JobRecord> {
    return this.deps.store.jobs.get(id);
  }

  list(req: PageRequest): Promise<Page<JobRecord>> {
    return this.deps.store.jobs.list(req);
  }

  /** Any non-terminal job; a running one stops after its current step. */
  async cancel(id: string): Promise<JobRecord> {
    const job = await this.deps.store.jobs.transition(id, "cancelled");
    await this.deps.journal.status(id, "cancelled", "Job cancelled by request");
    this.deps.control.interrupt(id, "cancel");
    return job;
  }

  /** A running job: it stops after its current step and saves a checkpoint. */
  async pause(id: string): Promise<JobRecord> {
    const job = await this.deps.store.jobs.transition(id, "paused", { from: "running" });
    await this.deps.journal.status(id, "paused", "Job paused by request; it stops after the current step");
    this.deps.control.interrupt(id, "pause");
    return job;
  }

  /** A paused job: queued again; training continues from the pause checkpoint. */
  async resume(id: string): Promise<JobRecord> {
    const job = await this.deps.store.jobs.transition(id, "queued", { from: "paused" });
    await this.deps.journal.status(id, "queued", "Job resumed by request; queued");
    this.deps.control.queued(id);
    return job;
  }

  /** Newest first (OpenAI's order). */
  async events(id: string, req: Omit<PageRequest, "order">): Promise<Page<EventRecord>> {
    await this.deps.store.jobs.get(id); // 404 for an unknown job, not an empty list
    return await this.deps.store.events.list(id, { ...req, order: "desc" });
  }

  async checkpoints(id: string, req: Omit<PageRequest, "order">): Promise<Page<CheckpointRecord>> {
    await this.deps.store.jobs.get(id);
    return await this.deps.store.checkpoints.list(id, { ...req, order: "desc" });
  }

  /** Checks the job exists (so a stream can still answer 404), then watches its events oldest first. */
  async watch(id: string, opts: WatchOptions): Promise<AsyncGenerator<WatchItem>> {
    await this.deps.store.jobs.get(id);
    // A bad cursor is a 400 now, not an error event after the 200.
    if (opts.after) await this.deps.store.events.list(id, { after: opts.after, limit: 1, order: "asc" });
    return this.deps.journal.watch(id, opts);
  }

  /**
   * Validates a fine-tune file's lines for `model` exactly as a job's `validating_files` phase will (the
   * model's tokenizer, `max_length`), listing up to `maxIssues` problems with their lines, so a client can
   * show them before it starts a job.
   */
  async checkFile(id: string, opts: { model: string; maxLength?: number; maxIssues?: number }): Promise<FileCheck> {
    if (!this.deps.validate) {
      throw new FineTuningError("unsupported_parameter", "This server cannot check files", "file");
    }
    const model = this.deps.baseModels.resolve(opts.model);
    if (model === null) {
      throw new FineTuningError("model_not_available", `Model ${opts.model} is not available for fine-tuning`, "model");
    }
    const file = await this.#usableFile(id, "file");
    const { stream } = await this.deps.files.content(file.id);
    const outcome = await this.deps.validate({
      model,
      maxLength: opts.maxLength ?? DEFAULTS.maxLength,
      trainText: await new Response(stream).text(),
      maxIssues: opts.maxIssues ?? 100,
    });
    const hyperparameters = outcome.kind === "valid"
      ? resolveHyperparameters({ max_length: opts.maxLength ?? null }, outcome.train.examples)
      : null;
    return { file, outcome, hyperparameters };
  }

  /**
   * The evaluation set of an eval-gated alias switch (PUT /v1/aliases/{name} with `evaluate`): `file`
   * when given, else the validation file of `jobId` (the job that trained the candidate); tokenized with
   * that job's max_length and batched by its batch_size (no job: the configuration's defaults).
   */
  async evaluationData(opts: { file?: string | null; jobId?: string | null }): Promise<EvaluationData> {
    const job = opts.jobId ? await this.deps.store.jobs.get(opts.jobId) : null;
    const hp = job ? parseStoredMethod(job.method).supervised.hyperparameters : null;
    const file = opts.file ?? job?.validationFile ?? null;
    if (!file) {
      throw new FineTuningError(
        "missing_evaluation_data",
        job
          ? `The candidate's job ${job.id} has no validation file: name an evaluation file (evaluate.file)`
          : "Name an evaluation file (evaluate.file): the candidate was not trained by a job with a validation file",
        "evaluate.file",
      );
    }
    if (opts.file) await this.#usableFile(file, "evaluate.file");
    const { stream } = await this.deps.files.content(file, { includeDeleted: !opts.file });
    return {
      text: await new Response(stream).text(),
      source: opts.file ? `eval_file ${file}` : `validation_file ${file} of ${job!.id}`,
      maxLength: hp?.max_length ?? DEFAULTS.maxLength,
      batchSize: hp?.batch_size ?? TRAINING_DEFAULTS.batchSize,
      seed: job?.seed ?? 0,
    };
  }

  async #usableFile(
    id: string,
    param: "training_file" | "validation_file" | "promotion.eval_file" | "evaluate.file" | "file",
  ): Promise<FileRecord> {
    let file: FileRecord;
    try {
      file = await this.deps.files.get(id);
    } catch (e) {
      if (e instanceof StoreError && e.kind === "not_found") {
        throw new FineTuningError("invalid_file_id", `Invalid ${param}: no such file: ${id}`, param);
      }
      throw e;
    }
    if (file.purpose !== "fine-tune") {
      throw new FineTuningError(
        "invalid_file_purpose",
        `Invalid ${param}: file ${id} has purpose '${file.purpose}'; upload it with purpose 'fine-tune'`,
        param,
      );
    }
    if (file.status === "error") {
      throw new FineTuningError("invalid_file_status", `Invalid ${param}: file ${id} failed processing`, param);
    }
    return file;
  }
}
