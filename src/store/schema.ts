/**
 * The drizzle schema: the single source for the SQL in migrations/ (drizzle-kit
 * generates from this file) and for the typed queries in src/store/. The same
 * tables serve PGlite (embedded) and PostgreSQL (DATABASE_URL).
 *
 * Conventions:
 * - Public ids are random strings with an OpenAI-style prefix (`file-…`).
 * - `seq` is an identity column: list order and `after` cursors use it, because
 *   random ids do not sort and `created_at` ties within a second.
 * - Status columns are text + CHECK (not pg enums) so adding a value is a plain
 *   migration; the TypeScript unions below are the source of the lists.
 *
 * Self-contained on purpose (only drizzle imports): drizzle-kit loads this file
 * with its own TypeScript loader, outside Deno.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

export const FILE_PURPOSES = ["fine-tune"] as const;
export const FILE_STATUSES = ["uploaded", "processed", "error"] as const;
export const JOB_STATUSES = [
  "validating_files",
  "queued",
  "running",
  "paused",
  "succeeded",
  "failed",
  "cancelled",
] as const;
export const EVENT_LEVELS = ["info", "warn", "error"] as const;
export const EVENT_TYPES = ["message", "metrics"] as const;
export const DELTA_FORMATS = ["lowrank", "dense"] as const;
export const ALIAS_TARGET_KINDS = ["version", "base_model"] as const;
export const ALIAS_HISTORY_ACTIONS = ["set", "rollback", "refused"] as const;

export type JobErrorJson = { code: string; message: string; param: string | null };
export type JsonObject = { [key: string]: unknown };

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });
const seq = () => bigint("seq", { mode: "number" }).generatedAlwaysAsIdentity();
/** `col IN ('a','b')` for a CHECK constraint (values are our own constants, never input). */
const oneOf = (col: string, values: readonly string[]) =>
  sql.raw(`${col} IN (${values.map((v) => `'${v}'`).join(", ")})`);

export const files = pgTable("files", {
  id: text("id").primaryKey(),
  seq: seq(),
  /** Display only: never a path. Control characters are stripped before insert. */
  filename: text("filename").notNull(),
  purpose: text("purpose", { enum: FILE_PURPOSES }).notNull(),
  bytes: bigint("bytes", { mode: "number" }).notNull(),
  /** Lower-case hex; also the blob's name in the content-addressed store. */
  sha256: text("sha256").notNull(),
  status: text("status", { enum: FILE_STATUSES }).notNull().default("processed"),
  statusDetails: text("status_details"),
  createdAt: ts("created_at").notNull().defaultNow(),
  /**
   * Soft delete: the API stops showing the file, but jobs that name it still
   * resolve it (and its blob is kept while a non-terminal job references it).
   */
  deletedAt: ts("deleted_at"),
  /** Set on deleted rows once their blob was removed (so sweeps skip them). */
  blobReleasedAt: ts("blob_released_at"),
}, (t) => [
  uniqueIndex("files_seq_idx").on(t.seq),
  index("files_sha256_idx").on(t.sha256),
  check("files_purpose_check", oneOf("purpose", FILE_PURPOSES)),
  check("files_status_check", oneOf("status", FILE_STATUSES)),
  check("files_sha256_check", sql`${t.sha256} ~ '^[0-9a-f]{64}$'`),
  check("files_bytes_check", sql`${t.bytes} >= 0`),
]);

export const fineTuningJobs = pgTable("fine_tuning_jobs", {
  id: text("id").primaryKey(),
  seq: seq(),
  model: text("model").notNull(),
  trainingFile: text("training_file").notNull().references(() => files.id),
  validationFile: text("validation_file").references(() => files.id),
  suffix: text("suffix"),
  seed: integer("seed").notNull(),
  /** OpenAI `method` ({type, supervised: {hyperparameters}}), as resolved at creation. */
  method: jsonb("method").$type<JsonObject>().notNull(),
  /** Resolved hyperparameters (the deprecated top-level field mirrors these). */
  hyperparameters: jsonb("hyperparameters").$type<JsonObject>().notNull(),
  metadata: jsonb("metadata").$type<Record<string, string>>(),
  status: text("status", { enum: JOB_STATUSES }).notNull().default("validating_files"),
  error: jsonb("error").$type<JobErrorJson>(),
  fineTunedModel: text("fine_tuned_model"),
  trainedTokens: bigint("trained_tokens", { mode: "number" }),
  resultFiles: jsonb("result_files").$type<string[]>().notNull().default(sql`'[]'::jsonb`),
  createdAt: ts("created_at").notNull().defaultNow(),
  startedAt: ts("started_at"),
  finishedAt: ts("finished_at"),
  estimatedFinish: ts("estimated_finish"),
  updatedAt: ts("updated_at").notNull().defaultNow(),
  // Crash safety / multi-replica: a running job is held by one worker until its
  // lease expires; an expired lease makes the job claimable again.
  leaseOwner: text("lease_owner"),
  leaseExpiresAt: ts("lease_expires_at"),
  heartbeatAt: ts("heartbeat_at"),
  /** How many times the job has been claimed (>1 = resumed after a crash or pause). */
  attempts: integer("attempts").notNull().default(0),
}, (t) => [
  uniqueIndex("fine_tuning_jobs_seq_idx").on(t.seq),
  index("fine_tuning_jobs_status_seq_idx").on(t.status, t.seq),
  index("fine_tuning_jobs_training_file_idx").on(t.trainingFile),
  index("fine_tuning_jobs_validation_file_idx").on(t.validationFile),
  check("fine_tuning_jobs_status_check", oneOf("status", JOB_STATUSES)),
]);

export const fineTuningEvents = pgTable("fine_tuning_events", {
  id: text("id").primaryKey(),
  seq: seq(),
  jobId: text("job_id").notNull().references(() => fineTuningJobs.id, { onDelete: "cascade" }),
  createdAt: ts("created_at").notNull().defaultNow(),
  level: text("level", { enum: EVENT_LEVELS }).notNull(),
  message: text("message").notNull(),
  type: text("type", { enum: EVENT_TYPES }).notNull().default("message"),
  data: jsonb("data").$type<JsonObject>(),
}, (t) => [
  uniqueIndex("fine_tuning_events_seq_idx").on(t.seq),
  index("fine_tuning_events_job_seq_idx").on(t.jobId, t.seq),
  check("fine_tuning_events_level_check", oneOf("level", EVENT_LEVELS)),
  check("fine_tuning_events_type_check", oneOf("type", EVENT_TYPES)),
]);

export const fineTuningCheckpoints = pgTable("fine_tuning_checkpoints", {
  id: text("id").primaryKey(),
  seq: seq(),
  jobId: text("job_id").notNull().references(() => fineTuningJobs.id, { onDelete: "cascade" }),
  step: integer("step").notNull(),
  metrics: jsonb("metrics").$type<JsonObject>().notNull(),
  /** Where the checkpoint's artifact lives (path under DATA_DIR or a shared-store ref). */
  artifactPath: text("artifact_path").notNull(),
  fineTunedModelCheckpoint: text("fine_tuned_model_checkpoint").notNull(),
  createdAt: ts("created_at").notNull().defaultNow(),
}, (t) => [
  uniqueIndex("fine_tuning_checkpoints_seq_idx").on(t.seq),
  uniqueIndex("fine_tuning_checkpoints_job_step_idx").on(t.jobId, t.step),
]);

/** Immutable once written (a trigger in the migrations rejects UPDATE). */
export const modelVersions = pgTable("model_versions", {
  id: text("id").primaryKey(),
  seq: seq(),
  /** `ft:<base>:<suffix>:<job-id>`: the model id clients send. */
  name: text("name").notNull(),
  baseModel: text("base_model").notNull(),
  jobId: text("job_id").references(() => fineTuningJobs.id),
  deltaFormat: text("delta_format", { enum: DELTA_FORMATS }).notNull(),
  artifactPath: text("artifact_path").notNull(),
  contentHash: text("content_hash").notNull(),
  sizeBytes: bigint("size_bytes", { mode: "number" }).notNull(),
  metadata: jsonb("metadata").$type<JsonObject>().notNull().default(sql`'{}'::jsonb`),
  createdAt: ts("created_at").notNull().defaultNow(),
}, (t) => [
  uniqueIndex("model_versions_seq_idx").on(t.seq),
  uniqueIndex("model_versions_name_idx").on(t.name),
  index("model_versions_job_idx").on(t.jobId),
  check("model_versions_delta_format_check", oneOf("delta_format", DELTA_FORMATS)),
]);

export const modelAliases = pgTable("model_aliases", {
  name: text("name").primaryKey(),
  targetKind: text("target_kind", { enum: ALIAS_TARGET_KINDS }).notNull(),
  /** The model id the alias serves: a version's name or a base model id. */
  target: text("target").notNull(),
  /** Set when target_kind = 'version' (keeps the version from vanishing underneath). */
  targetVersionId: text("target_version_id").references(() => modelVersions.id),
  updatedAt: ts("updated_at").notNull().defaultNow(),
}, (t) => [
  check("model_aliases_kind_check", oneOf("target_kind", ALIAS_TARGET_KINDS)),
  check(
    "model_aliases_version_ref_check",
    sql`(${t.targetKind} = 'version') = (${t.targetVersionId} IS NOT NULL)`,
  ),
]);

export const modelAliasHistory = pgTable("model_alias_history", {
  seq: seq(),
  alias: text("alias").notNull(),
  /** Null when the change created the alias. */
  previousKind: text("previous_kind", { enum: ALIAS_TARGET_KINDS }),
  previousTarget: text("previous_target"),
  // No FKs in history: it must not pin versions forever.
  previousVersionId: text("previous_version_id"),
  newKind: text("new_kind", { enum: ALIAS_TARGET_KINDS }).notNull(),
  newTarget: text("new_target").notNull(),
  newVersionId: text("new_version_id"),
  /**
   * A rollback undoes the latest not-yet-undone `set` (stack semantics). `refused`: an eval-gated
   * promotion kept the alias where it was (`new_*` = the candidate it refused); rollbacks skip it.
   */
  action: text("action", { enum: ALIAS_HISTORY_ACTIONS }).notNull(),
  reason: text("reason"),
  /** The gate's decision with both scores, when an evaluation decided this row. */
  evaluation: jsonb("evaluation").$type<JsonObject>(),
  at: ts("at").notNull().defaultNow(),
}, (t) => [
  primaryKey({ name: "model_alias_history_pkey", columns: [t.seq] }),
  index("model_alias_history_alias_seq_idx").on(t.alias, t.seq),
  check("model_alias_history_action_check", sql`${t.action} IN ('set', 'rollback', 'refused')`),
]);
