/**
 * OpenAI fine-tuning JSONL → typed records, with one issue per bad line.
 * Tokenizer-free (structure only); token-level checks live in
 * example_tokenize.ts.
 *
 * Formats: chat (`{"messages": [{role, content, weight?}, ...]}`) and
 * prompt/completion (`{"prompt", "completion"}`). The file's format is that
 * of its first recognisable line; lines of the other format are
 * `mixed_formats`.
 */
import { z } from "zod";
import { DatasetError, type DatasetIssue } from "./dataset_errors.ts";

export type ChatRole = "system" | "user" | "assistant";
export type DatasetFormat = "chat" | "completion";

export interface ChatTurn {
  role: ChatRole;
  content: string;
  /** 0: context only (masked). Always 1 for non-assistant turns, which are masked anyway. */
  weight: 0 | 1;
}

export interface ChatRecord {
  format: "chat";
  /** 1-based line in the file. */
  line: number;
  messages: ChatTurn[];
}

export interface CompletionRecord {
  format: "completion";
  line: number;
  prompt: string;
  completion: string;
}

export type DatasetRecord = ChatRecord | CompletionRecord;

export interface ParsedJsonl {
  format: DatasetFormat | null;
  records: DatasetRecord[];
  issues: DatasetIssue[];
}

// ---- schemas of the leaves (the codes come from where a check fails) -------------------------

const TextPart = z.object({ type: z.literal("text"), text: z.string() });
const Content = z.union([z.string(), z.array(TextPart)]);
const Weight = z.union([z.literal(0), z.literal(1)]);
const Role = z.enum(["system", "developer", "user", "assistant"]);

const MESSAGE_KEYS = new Set(["role", "content", "name", "weight"]);
/** Known OpenAI keys of features we do not train (tool calling). */
const TOOL_MESSAGE_KEYS = new Set(["tool_calls", "function_call", "tool_call_id"]);
const TOOL_RECORD_KEYS = ["tools", "functions", "parallel_tool_calls"];

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Which format a parsed line claims, from its keys alone. */
function claimedFormat(obj: JsonObject): DatasetFormat | "both" | null {
  const chat = "messages" in obj;
  const completion = "prompt" in obj || "completion" in obj;
  return chat && completion ? "both" : chat ? "chat" : completion ? "completion" : null;
}

/** Lines with their 1-based numbers; blank lines dropped, BOM and CR stripped. */
function splitLines(text: string): { line: number; text: string }[] {
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  const out: { line: number; text: string }[] = [];
  lines.forEach((raw, i) => {
    const t = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (t.trim() !== "") out.push({ line: i + 1, text: t });
  });
  return out;
}

export function parseJsonl(text: string): ParsedJsonl {
  const lines = splitLines(text);
  if (lines.length === 0) {
    return {
      format: null,
      records: [],
      issues: [{ line: 0, code: "empty_file", message: "the file has no examples", param: null }],
    };
  }
  const issues: DatasetIssue[] = [];
  const parsed: { line: number; obj: JsonObject }[] = [];
  for (const { line, text: t } of lines) {
    let value: unknown;
    try {
      value = JSON.parse(t);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      issues.push({ line, code: "invalid_json", message: `not valid JSON: ${why}`, param: null });
      continue;
    }
    if (!isObject(value)) {
      const kind = Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`;
      issues.push({ line, code: "data_type", message: `each line must be a JSON object, got ${kind}`, param: null });
      continue;
    }
    parsed.push({ line, obj: value });
  }

  // The file's format: that of its first line which claims exactly one.
  let format: DatasetFormat | null = null;
  let formatLine = 0;
  for (const { line, obj } of parsed) {
    const f = claimedFormat(obj);
    if (f === "chat" || f === "completion") {
      format = f;
      formatLine = line;
      break;
    }
  }

  const records: DatasetRecord[] = [];
  for (const { line, obj } of parsed) {
    try {
      const f = claimedFormat(obj);
      if (f === "both") {
        throw new DatasetError("mixed_formats", "a line has both `messages` and `prompt`/`completion`");
      }
      if (f === null) {
        throw format === "completion"
          ? new DatasetError("missing_prompt", "no `prompt` and `completion` keys", "prompt")
          : new DatasetError("missing_messages", "no `messages` key (chat format)", "messages");
      }
      if (f !== format) {
        const name = (x: DatasetFormat | null) => x === "chat" ? "chat (`messages`)" : "prompt/completion";
        throw new DatasetError(
          "mixed_formats",
          `this line is ${name(f)} but the file is ${name(format)} (from line ${formatLine})`,
        );
      }
      records.push(f === "chat" ? parseChat(obj, line) : parseCompletion(obj, line));
    } catch (e) {
      if (!(e instanceof DatasetError)) throw e;
      issues.push({ line, code: e.code, message: e.message, param: e.param });
    }
  }
  issues.sort((a, b) => a.line - b.line);
  return { format, records, issues };
}

function parseChat(obj: JsonObject, line: number): ChatRecord {
  for (const key of TOOL_RECORD_KEYS) {
    if (key in obj) throw new DatasetError("unsupported_feature", `\`${key}\` (tool calling) is not supported`, key);
  }
  const raw = obj.messages;
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new DatasetError("missing_messages", "`messages` must be a non-empty array", "messages");
  }
  const messages = raw.map((m, i) => parseMessage(m, `messages[${i}]`));
  const assistants = messages.filter((m) => m.role === "assistant");
  if (assistants.length === 0) {
    throw new DatasetError("no_assistant_message", "the conversation has no assistant message", "messages");
  }
  if (assistants.every((m) => m.weight === 0)) {
    throw new DatasetError("no_trainable_tokens", "every assistant message has weight 0", "messages");
  }
  return { format: "chat", line, messages };
}

function parseMessage(m: unknown, at: string): ChatTurn {
  if (!isObject(m)) throw new DatasetError("data_type", "a message must be a JSON object", at);
  for (const key of Object.keys(m)) {
    if (TOOL_MESSAGE_KEYS.has(key)) {
      throw new DatasetError("unsupported_feature", `\`${key}\` (tool calling) is not supported`, `${at}.${key}`);
    }
    if (!MESSAGE_KEYS.has(key)) {
      throw new DatasetError("message_unrecognized_key", `unrecognized key \`${key}\` in a message`, `${at}.${key}`);
    }
  }
  if (m.role === undefined || m.role === null) {
    throw new DatasetError("missing_role", "message has no role", `${at}.role`);
  }
  const role = Role.safeParse(m.role);
  if (!role.success) {
    throw new DatasetError(
      "unknown_role",
      `role ${JSON.stringify(m.role)} is not supported (use system, developer, user or assistant)`,
      `${at}.role`,
    );
  }
  const r: ChatRole = role.data === "developer" ? "system" : role.data;

  if (m.content === undefined || m.content === null) {
    throw new DatasetError("missing_content", "message has no content", `${at}.content`);
  }
  const content = Content.safeParse(m.content);
  if (!content.success) {
    const bad = Array.isArray(m.content) ? m.content.findIndex((p) => !TextPart.safeParse(p).success) : -1;
    throw bad >= 0
      ? new DatasetError("invalid_content", "only text content parts are supported", `${at}.content[${bad}]`)
      : new DatasetError("invalid_content", "content must be a string or an array of text parts", `${at}.content`);
  }
  const text = typeof content.data === "string" ? content.data : content.data.map((p) => p.text).join("");

  let weight: 0 | 1 = 1;
  if (m.weight !== undefined) {
    if (r !== "assistant") {
      throw new DatasetError("invalid_weight", "`weight` is only allowed on assistant messages", `${at}.weight`);
    }
    const w = Weight.safeParse(m.weight);
    if (!w.success) {
      throw new DatasetError(
        "invalid_weight",
        `weight must be 0 or 1, got ${JSON.stringify(m.weight)}`,
        `${at}.weight`,
      );
    }
    weight = w.data;
  }
  if (r === "assistant" && weight === 1 && text === "") {
    throw new DatasetError("missing_content", "assistant message is empty", `${at}.content`);
  }
  return { role: r, content: text, weight };
}

function parseCompletion(obj: JsonObject, line: number): CompletionRecord {
  const field = (key: "prompt" | "completion"): string => {
    const v = obj[key];
    if (v === undefined || v === null) {
      throw key === "prompt"
        ? new DatasetError("missing_prompt", "no `prompt`", key)
        : new DatasetError("missing_completion", "no `completion`", key);
    }
    if (typeof v !== "string") throw new DatasetError("invalid_content", `\`${key}\` must be a string`, key);
    return v;
  };
  const prompt = field("prompt");
  const completion = field("completion");
  if (completion === "") throw new DatasetError("missing_completion", "`completion` is empty", "completion");
  return { format: "completion", line, prompt, completion };
}
