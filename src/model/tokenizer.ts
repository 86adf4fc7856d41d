/**
 * Tokenizer + chat template for a local HF model directory, backed by
 * transformers.js (`AutoTokenizer.from_pretrained`), loaded fully offline.
 * Entry points import src/runtime/ort_env.ts before this module (transformers.js
 * reads `Float16Array` when it loads).
 */
import { AutoTokenizer, env, type PreTrainedTokenizer } from "@huggingface/transformers";
import { resolve } from "node:path";
import { ApiError } from "../errors.ts";
import { isFile } from "../path_checks.ts";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  addGenerationPrompt?: boolean;
  /** Extra template variables, e.g. `{ enable_thinking: false }` for Qwen3. */
  templateKwargs?: Record<string, unknown>;
}

export interface Tokenizer {
  /** `addSpecialTokens` defaults to true (as in HF): post-processor BOS/EOS, if any. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** Rendered prompt text. Throws `ChatTemplateError` if the model has none. */
  applyChatTemplate(
    messages: ChatMessage[],
    opts?: ChatTemplateOptions,
  ): string;
  /** `encode(applyChatTemplate(...))` without adding special tokens (the template owns BOS). */
  encodeChat(messages: ChatMessage[], opts?: ChatTemplateOptions): number[];
  readonly hasChatTemplate: boolean;
  /** generation_config.json (else config.json) eos_token_id, then tokenizer_config eos_token; deduplicated. */
  readonly eosTokenIds: number[];
  /** The tokenizer's own bos_token (null when it has none, e.g. Qwen). */
  readonly bosTokenId: number | null;
  /** Number of ids the tokenizer can produce (max id + 1, added tokens included). */
  readonly vocabSize: number;
  idToToken(id: number): string | null;
  isSpecial(id: number): boolean;
}

/** The directory cannot be loaded as a tokenizer (missing or broken files). */
export class TokenizerLoadError extends Error {
  override name = "TokenizerLoadError";
}

/** No chat template, or the template failed to render (e.g. `raise_exception`): a 400 naming `messages`. */
export class ChatTemplateError extends ApiError {
  override name = "ChatTemplateError";
  constructor(message: string) {
    super(400, message, "invalid_request_error", "messages", "chat_template_error");
  }
}

/**
 * Make transformers.js strictly offline and cache-free. Global, idempotent;
 * also what model loading through transformers.js needs.
 */
export function configureTransformersOffline(): void {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFS = true;
  // Caches are keyed by path: a stale cached copy could shadow the directory's
  // current files, and the FS cache would write into node_modules.
  env.useBrowserCache = false;
  env.useFSCache = false;
}

export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  // An absolute path never matches transformers.js' HF repo-id regex, so it is
  // used verbatim instead of being joined onto `env.localModelPath`.
  const abs = resolve(dir);
  for (const name of ["tokenizer.json", "tokenizer_config.json"]) {
    if (!(await isFile(`${abs}/${name}`))) {
      throw new TokenizerLoadError(`no ${name} in model directory ${abs}`);
    }
  }
  configureTransformersOffline();
  let hf: PreTrainedTokenizer;
  try {
    hf = await AutoTokenizer.from_pretrained(abs, { local_files_only: true });
  } catch (e) {
    throw new TokenizerLoadError(
      `cannot load tokenizer from ${abs}: ${errorMessage(e)}`,
    );
  }
  // Newer HF exports keep the template in chat_template.jinja, which
  // transformers.js 4.3.2 only reads for processors, not tokenizers.
  const jinjaTemplate = hf.chat_template ? null : await readOptionalText(`${abs}/chat_template.jinja`);
  const genEos = await eosFromJson(`${abs}/generation_config.json`) ??
    await eosFromJson(`${abs}/config.json`) ?? [];
  return new HfTokenizer(hf, abs, jinjaTemplate, genEos);
}

class HfTokenizer implements Tokenizer {
  readonly hasChatTemplate: boolean;
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
  readonly vocabSize: number;
  readonly #tokens: (string | undefined)[];
  readonly #special: Set<number>;

  constructor(
    private readonly hf: PreTrainedTokenizer,
    private readonly dir: string,
    private readonly templateOverride: string | null,
    generationEos: number[],
  ) {
    this.hasChatTemplate = Boolean(hf.chat_template) ||
      templateOverride !== null;
    const tokEos = optionalId(hf.eos_token_id);
    this.eosTokenIds = [
      ...new Set(tokEos === null ? generationEos : [...generationEos, tokEos]),
    ];
    this.bosTokenId = optionalId(hf.bos_token_id);
    this.#tokens = [];
    for (const [token, id] of hf.get_vocab()) this.#tokens[id] = token;
    this.vocabSize = this.#tokens.length;
    this.#special = new Set(hf.all_special_ids);
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.hf.encode(text, {
      add_special_tokens: opts.addSpecialTokens ?? true,
    });
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ""; // transformers.js throws on empty input
    return this.hf.decode(ids, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
    });
  }

  applyChatTemplate(
    messages: ChatMessage[],
    opts: ChatTemplateOptions = {},
  ): string {
    if (!this.hasChatTemplate) {
      throw new ChatTemplateError(`model in ${this.dir} has no chat template`);
    }
    try {
      return this.hf.apply_chat_template(messages, {
        ...opts.templateKwargs,
        chat_template: this.templateOverride,
        add_generation_prompt: opts.addGenerationPrompt ?? false,
        tokenize: false,
      });
    } catch (e) {
      throw new ChatTemplateError(
        `chat template of ${this.dir} failed: ${errorMessage(e)}`,
      );
    }
  }

  encodeChat(
    messages: ChatMessage[],
    opts: ChatTemplateOptions = {},
  ): number[] {
    return this.encode(this.applyChatTemplate(messages, opts), {
      addSpecialTokens: false,
    });
  }

  idToToken(id: number): string | null {
    return this.#tokens[id] ?? null;
  }

  isSpecial(id: number): boolean {
    return this.#special.has(id);
  }
}

/** transformers.js yields undefined/null ids for tokens the config leaves unset. */
function optionalId(id: number | null | undefined): number | null {
  return typeof id === "number" ? id : null;
}

/** `eos_token_id` (number or number[]) of a JSON file; null if file or key absent. */
async function eosFromJson(path: string): Promise<number[] | null> {
  const text = await readOptionalText(path);
  if (text === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new TokenizerLoadError(`invalid JSON in ${path}: ${errorMessage(e)}`);
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const eos = (parsed as { eos_token_id?: unknown }).eos_token_id;
  if (typeof eos === "number") return [eos];
  if (Array.isArray(eos)) {
    return eos.filter((x): x is number => typeof x === "number");
  }
  return null;
}

async function readOptionalText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
