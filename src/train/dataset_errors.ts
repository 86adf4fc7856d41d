/**
 * Fine-tuning file validation errors. Codes follow OpenAI's fine-tuning data
 * checks (the cookbook's `missing_messages`, `missing_content`, `data_type`,
 * `message_unrecognized_key`, ...) plus the token-level ones only a local
 * tokenizer can report (`too_long`, `no_trainable_tokens`, `template_error`).
 */

export const DATASET_ERROR_CODES = [
  /** The file has no non-blank line. */
  "empty_file",
  /** The line is not valid JSON. */
  "invalid_json",
  /** The line is JSON but not an object. */
  "data_type",
  /** Neither `messages` (chat) nor `prompt`/`completion`, or `messages` is not a non-empty array. */
  "missing_messages",
  /** The line's format (chat vs prompt/completion) differs from the file's (its first recognisable line). */
  "mixed_formats",
  /** A message is not an object, or has no `role`. */
  "missing_role",
  /** A message has a key other than role, content, name, weight. */
  "message_unrecognized_key",
  /** A role other than system, developer, user, assistant. */
  "unknown_role",
  /** A message has no content (absent or null), or an assistant message is empty. */
  "missing_content",
  /** Content of the wrong type, a non-text content part, or a special token inside the text. */
  "invalid_content",
  /** `weight` is not 0 or 1, or is set on a non-assistant message. */
  "invalid_weight",
  /** No assistant message to learn from. */
  "no_assistant_message",
  /** Tool / function calling fields, which this trainer does not support. */
  "unsupported_feature",
  /** prompt/completion format: `prompt` absent or null. */
  "missing_prompt",
  /** prompt/completion format: `completion` absent, null or empty. */
  "missing_completion",
  /** The model has no chat template, or it failed to render the conversation. */
  "template_error",
  /** The example exceeds the maximum length (when truncation is off). */
  "too_long",
  /** No token left to train on (every assistant message has weight 0, or truncation cut them all). */
  "no_trainable_tokens",
] as const;

export type DatasetErrorCode = typeof DATASET_ERROR_CODES[number];

/** One problem of one line; `line` is 1-based (0 for file-level errors), `param` a path inside the line. */
export interface DatasetIssue {
  line: number;
  code: DatasetErrorCode;
  message: string;
  param: string | null;
}

/** Thrown by per-line helpers; the validator turns it into a `DatasetIssue` of that line. */
export class DatasetError extends Error {
  override readonly name = "DatasetError";
  constructor(readonly code: DatasetErrorCode, message: string, readonly param: string | null = null) {
    super(message);
  }
}

/** `line 3: messages[1].role: unknown_role: ...` — one line per issue, for the CLI. */
export function formatIssue(issue: DatasetIssue): string {
  const where = issue.line > 0 ? `line ${issue.line}` : "file";
  const param = issue.param ? ` (${issue.param})` : "";
  return `${where}: [${issue.code}] ${issue.message}${param}`;
}

/** Validation failed before training; `issues` lists every bad line of `file`. */
export class DatasetInvalidError extends Error {
  override name = "DatasetInvalidError";
  constructor(readonly issues: DatasetIssue[], readonly file: "training_file" | "validation_file") {
    super(`${file}: ${issues.length} problem${issues.length === 1 ? "" : "s"} (first: line ${issues[0]?.line})`);
  }
}
