/**
 * deno task tiny-model --out DIR [--arch qwen3|llama|qwen2|mistral]
 *   [--preset tiny|smollm2-135m|llama3.2-1b] [--tokenizer bytes|qwen3] [--seed N]
 *   [--dtype f32|f16|bf16] [--shards N]
 *
 * Writes a deterministic random-weight HF model directory (see
 * src/model/tiny_model.ts).
 */
import type { Architecture } from "../model/config.ts";
import { ModelLoadError } from "../model/errors.ts";
import type { FloatDtype } from "../model/safetensors.ts";
import {
  generateTinyModel,
  presetArchitecture,
  TINY_ARCHITECTURES,
  TINY_PRESETS,
  TINY_TOKENIZERS,
  TinyModelError,
  type TinyModelOptions,
  type TinyPreset,
  type TinyTokenizer,
} from "../model/tiny_model.ts";
import { integerFlag, oneOfFlag, parseFlags, UsageError } from "./flags.ts";

export const USAGE = "usage: deno task tiny-model --out DIR [--arch qwen3|llama|qwen2|mistral] " +
  "[--preset tiny|smollm2-135m|llama3.2-1b] [--tokenizer bytes|qwen3] [--seed N] [--dtype f32|f16|bf16] " +
  "[--shards N]";

const DTYPES: Record<string, FloatDtype> = { f32: "F32", f16: "F16", bf16: "BF16" };

const FLAGS = {
  out: { type: "string" },
  arch: { type: "string" },
  preset: { type: "string" },
  tokenizer: { type: "string" },
  seed: { type: "string" },
  dtype: { type: "string" },
  shards: { type: "string" },
} as const;

/**
 * Parses the flags (`--flag value` or `--flag=value`). Defaults: arch qwen3
 * (llama for the presets with a real model's shapes), preset tiny, tokenizer bytes, seed 0,
 * dtype f32, shards 1. `--help` throws a UsageError "help requested".
 */
export function parseTinyModelArgs(argv: readonly string[]): TinyModelOptions {
  const v = parseFlags(argv, FLAGS);
  if (v.help) throw new UsageError("help requested");
  if (v.out === undefined) throw new UsageError("--out DIR is required");
  const preset = oneOfFlag<TinyPreset>("preset", v.preset ?? "tiny", TINY_PRESETS);
  const fixed = presetArchitecture(preset);
  const arch = oneOfFlag<Architecture>("arch", v.arch ?? fixed ?? "qwen3", TINY_ARCHITECTURES);
  if (fixed && arch !== fixed) {
    throw new UsageError(`--preset ${preset} is a ${fixed} model; drop --arch or use --arch ${fixed}`);
  }
  const dtype = DTYPES[oneOfFlag("dtype", (v.dtype ?? "f32").toLowerCase(), Object.keys(DTYPES))];
  return {
    out: v.out,
    arch,
    preset,
    tokenizer: oneOfFlag<TinyTokenizer>("tokenizer", v.tokenizer ?? "bytes", TINY_TOKENIZERS),
    seed: v.seed === undefined ? 0 : integerFlag("seed", v.seed),
    dtype,
    shards: v.shards === undefined ? 1 : integerFlag("shards", v.shards, 1),
  };
}

async function main(argv: string[]): Promise<number> {
  let opts: TinyModelOptions;
  try {
    opts = parseTinyModelArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (e.message === "help requested") {
      console.log(USAGE);
      return 0;
    }
    console.error(`error: ${e.message}\n${USAGE}`);
    return 2;
  }
  try {
    const started = performance.now();
    const result = await generateTinyModel(opts);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const params = (result.parameterCount / 1e6).toFixed(2);
    console.log(
      `wrote ${result.dir}: ${opts.arch} ${opts.preset}, ${params}M parameters, ${opts.dtype}, ` +
        `${result.files.length} files in ${seconds} s`,
    );
    return 0;
  } catch (e) {
    if (e instanceof TinyModelError || e instanceof ModelLoadError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
