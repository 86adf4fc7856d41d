-- Model versions are immutable: a served version must never change under its
-- name. Enforced in the database too, so no code path (or replica) can UPDATE one.
CREATE OR REPLACE FUNCTION model_versions_reject_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'model_versions rows are immutable (version %)', OLD.id
    USING ERRCODE = 'restrict_violation';
END;
$$;
--> statement-breakpoint
CREATE TRIGGER model_versions_immutable
  BEFORE UPDATE ON model_versions
  FOR EACH ROW EXECUTE FUNCTION model_versions_reject_update();
