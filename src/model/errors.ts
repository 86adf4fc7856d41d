/**
 * The one error type for every failure while loading a model (config,
 * checkpoint files, hub download). Messages are a single line that names the
 * file and, where there is one, the field or tensor, so a server can print
 * them as-is at startup.
 */
export class ModelLoadError extends Error {
  override readonly name = "ModelLoadError";
  /** The config field or tensor name at fault, when there is one. */
  readonly field?: string;
  /** The file at fault, when there is one. */
  readonly file?: string;

  constructor(
    message: string,
    opts: { field?: string; file?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    if (opts.field !== undefined) this.field = opts.field;
    if (opts.file !== undefined) this.file = opts.file;
  }
}

/** A short, single-line description of an unknown thrown value. */
export function describeError(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0].trim();
}
