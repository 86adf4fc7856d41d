ALTER TABLE "model_alias_history" DROP CONSTRAINT "model_alias_history_action_check";--> statement-breakpoint
ALTER TABLE "model_alias_history" ADD COLUMN "evaluation" jsonb;--> statement-breakpoint
ALTER TABLE "model_alias_history" ADD CONSTRAINT "model_alias_history_action_check" CHECK ("model_alias_history"."action" IN ('set', 'rollback', 'refused'));