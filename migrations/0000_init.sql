CREATE TABLE "files" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "files_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"filename" text NOT NULL,
	"purpose" text NOT NULL,
	"bytes" bigint NOT NULL,
	"sha256" text NOT NULL,
	"status" text DEFAULT 'processed' NOT NULL,
	"status_details" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone,
	"blob_released_at" timestamp with time zone,
	CONSTRAINT "files_purpose_check" CHECK (purpose IN ('fine-tune')),
	CONSTRAINT "files_status_check" CHECK (status IN ('uploaded', 'processed', 'error')),
	CONSTRAINT "files_sha256_check" CHECK ("files"."sha256" ~ '^[0-9a-f]{64}$'),
	CONSTRAINT "files_bytes_check" CHECK ("files"."bytes" >= 0)
);
--> statement-breakpoint
CREATE TABLE "fine_tuning_checkpoints" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "fine_tuning_checkpoints_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"job_id" text NOT NULL,
	"step" integer NOT NULL,
	"metrics" jsonb NOT NULL,
	"artifact_path" text NOT NULL,
	"fine_tuned_model_checkpoint" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "fine_tuning_events" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "fine_tuning_events_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"job_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"level" text NOT NULL,
	"message" text NOT NULL,
	"type" text DEFAULT 'message' NOT NULL,
	"data" jsonb,
	CONSTRAINT "fine_tuning_events_level_check" CHECK (level IN ('info', 'warn', 'error')),
	CONSTRAINT "fine_tuning_events_type_check" CHECK (type IN ('message', 'metrics'))
);
--> statement-breakpoint
CREATE TABLE "fine_tuning_jobs" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "fine_tuning_jobs_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"model" text NOT NULL,
	"training_file" text NOT NULL,
	"validation_file" text,
	"suffix" text,
	"seed" integer NOT NULL,
	"method" jsonb NOT NULL,
	"hyperparameters" jsonb NOT NULL,
	"metadata" jsonb,
	"status" text DEFAULT 'validating_files' NOT NULL,
	"error" jsonb,
	"fine_tuned_model" text,
	"trained_tokens" bigint,
	"result_files" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"estimated_finish" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_owner" text,
	"lease_expires_at" timestamp with time zone,
	"heartbeat_at" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "fine_tuning_jobs_status_check" CHECK (status IN ('validating_files', 'queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'))
);
--> statement-breakpoint
CREATE TABLE "model_alias_history" (
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "model_alias_history_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"alias" text NOT NULL,
	"previous_kind" text,
	"previous_target" text,
	"previous_version_id" text,
	"new_kind" text NOT NULL,
	"new_target" text NOT NULL,
	"new_version_id" text,
	"action" text NOT NULL,
	"reason" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_alias_history_pkey" PRIMARY KEY("seq"),
	CONSTRAINT "model_alias_history_action_check" CHECK ("model_alias_history"."action" IN ('set', 'rollback'))
);
--> statement-breakpoint
CREATE TABLE "model_aliases" (
	"name" text PRIMARY KEY NOT NULL,
	"target_kind" text NOT NULL,
	"target" text NOT NULL,
	"target_version_id" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_aliases_kind_check" CHECK (target_kind IN ('version', 'base_model')),
	CONSTRAINT "model_aliases_version_ref_check" CHECK (("model_aliases"."target_kind" = 'version') = ("model_aliases"."target_version_id" IS NOT NULL))
);
--> statement-breakpoint
CREATE TABLE "model_versions" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "model_versions_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"name" text NOT NULL,
	"base_model" text NOT NULL,
	"job_id" text,
	"delta_format" text NOT NULL,
	"artifact_path" text NOT NULL,
	"content_hash" text NOT NULL,
	"size_bytes" bigint NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_versions_delta_format_check" CHECK (delta_format IN ('lowrank', 'dense'))
);
--> statement-breakpoint
ALTER TABLE "fine_tuning_checkpoints" ADD CONSTRAINT "fine_tuning_checkpoints_job_id_fine_tuning_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."fine_tuning_jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "fine_tuning_events" ADD CONSTRAINT "fine_tuning_events_job_id_fine_tuning_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."fine_tuning_jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "fine_tuning_jobs" ADD CONSTRAINT "fine_tuning_jobs_training_file_files_id_fk" FOREIGN KEY ("training_file") REFERENCES "public"."files"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "fine_tuning_jobs" ADD CONSTRAINT "fine_tuning_jobs_validation_file_files_id_fk" FOREIGN KEY ("validation_file") REFERENCES "public"."files"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_aliases" ADD CONSTRAINT "model_aliases_target_version_id_model_versions_id_fk" FOREIGN KEY ("target_version_id") REFERENCES "public"."model_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_versions" ADD CONSTRAINT "model_versions_job_id_fine_tuning_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."fine_tuning_jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "files_seq_idx" ON "files" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "files_sha256_idx" ON "files" USING btree ("sha256");--> statement-breakpoint
CREATE UNIQUE INDEX "fine_tuning_checkpoints_seq_idx" ON "fine_tuning_checkpoints" USING btree ("seq");--> statement-breakpoint
CREATE UNIQUE INDEX "fine_tuning_checkpoints_job_step_idx" ON "fine_tuning_checkpoints" USING btree ("job_id","step");--> statement-breakpoint
CREATE UNIQUE INDEX "fine_tuning_events_seq_idx" ON "fine_tuning_events" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "fine_tuning_events_job_seq_idx" ON "fine_tuning_events" USING btree ("job_id","seq");--> statement-breakpoint
CREATE UNIQUE INDEX "fine_tuning_jobs_seq_idx" ON "fine_tuning_jobs" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "fine_tuning_jobs_status_seq_idx" ON "fine_tuning_jobs" USING btree ("status","seq");--> statement-breakpoint
CREATE INDEX "fine_tuning_jobs_training_file_idx" ON "fine_tuning_jobs" USING btree ("training_file");--> statement-breakpoint
CREATE INDEX "fine_tuning_jobs_validation_file_idx" ON "fine_tuning_jobs" USING btree ("validation_file");--> statement-breakpoint
CREATE INDEX "model_alias_history_alias_seq_idx" ON "model_alias_history" USING btree ("alias","seq");--> statement-breakpoint
CREATE UNIQUE INDEX "model_versions_seq_idx" ON "model_versions" USING btree ("seq");--> statement-breakpoint
CREATE UNIQUE INDEX "model_versions_name_idx" ON "model_versions" USING btree ("name");--> statement-breakpoint
CREATE INDEX "model_versions_job_idx" ON "model_versions" USING btree ("job_id");