/**
 * The one error type of the registry domain (versions, aliases, engines).
 * `code` is what callers branch on; routes/registry_errors.ts maps it to the
 * OpenAI envelope once.
 */
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
  | "no_previous_target";

export class RegistryError extends Error {
  override name = "RegistryError";
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    /** The request parameter at fault, when there is one. */
    readonly param: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A short, single-line description of an unknown thrown value. */
export function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0].trim();
}
