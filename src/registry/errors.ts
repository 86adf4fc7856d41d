/**
 * The one error type of the registry domain (versions, aliases, engines).
 * `kind` is what callers branch on; it also fixes the HTTP status and the
 * OpenAI envelope's code (an `ApiError`, answered as is by the app).
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ApiError } from "../errors.ts";

export type RegistryErrorCode =
  /** No such version, alias, base model or target. */
  | "not_found"
  /** A name is taken by something else (a version name with another hash, an alias shadowing a model). */
  | "conflict"
  /** The deltas handed to createVersion do not fit the base model. */
  | "invalid_delta"
  /** An alias name or target that is not acceptable. */
  | "invalid_alias"
  /** The target loaded but failed the probe (non-finite logits, failed smoke generation). */
  | "validation_failed"
  /** Building or loading the target's engine failed. */
  | "load_failed"
  /** Alias rollback with nothing to roll back to. */
  | "no_previous_target"
  /** A model that cannot be deleted (a base model, an alias). */
  | "not_deletable"
  /** An eval-gated switch cannot compare: bad or missing evaluation data, models of different base models. */
  | "invalid_evaluation"
  /** The evaluation itself failed (not the data's fault). */
  | "evaluation_failed";

const STATUS: Record<RegistryErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  conflict: 409,
  invalid_delta: 400,
  invalid_alias: 400,
  no_previous_target: 409,
  // The request was fine; the model it names is not servable (the old target keeps serving).
  validation_failed: 422,
  load_failed: 503,
  not_deletable: 403,
  invalid_evaluation: 400,
  evaluation_failed: 503,
};

/** The envelope's code: none for a plain 404 (as OpenAI's), else the kind. */
const CODES: Record<RegistryErrorCode, string | null> = {
  not_found: null,
  conflict: "conflict",
  invalid_delta: "invalid_delta",
  invalid_alias: "invalid_alias",
  no_previous_target: "no_previous_target",
  validation_failed: "validation_failed",
  load_failed: "model_load_failed",
  not_deletable: "model_not_deletable",
  invalid_evaluation: "invalid_evaluation",
  evaluation_failed: "evaluation_failed",
};

export class RegistryError extends ApiError {
  override name = "RegistryError";
  constructor(
    readonly kind: RegistryErrorCode,
    message: string,
    /** The request parameter at fault, when there is one. */
    param: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(STATUS[kind], message, undefined, param, CODES[kind], {}, options);
  }
}

/** A short, single-line description of an unknown thrown value. */
export function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0].trim();
}
