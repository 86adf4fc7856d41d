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

export const USAGE = "usage: deno task tiny-model --out DIR [--arch qwen3|llama|qwen2|mistral] " +
  "[--preset tiny|smollm2-135m|llama3.2-1b] [--tokenizer bytes|qwen3] [--seed N] [--dtype f32|f16|bf16] " +
  "[--shards N]";

export class CliUsageError extends Error {
  override readonly name = "CliUsageError";
}

const DTYPES: Record<string, FloatDtype> = { f32: "F32", f16: "F16", bf16: "BF16" };
const FLAGS = ["out", "arch", "preset", "tokenizer", "seed", "dtype", "shards"] as const;
type Flag = typeof FLAGS[number];

/**
 * Parses the flags (`--flag value` or `--flag=value`). Defaults: arch qwen3
 * (llama for the presets with a real model's shapes), preset tiny, tokenizer bytes, seed 0,
 * dtype f32, shards 1.
 */
export function parseTinyModelArgs(argv: readonly string[]): TinyModelOptions {
  const values = new Map<Flag, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") throw new CliUsageError("help requested");
    if (!arg.startsWith("--")) throw new CliUsageError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!(FLAGS as readonly string[]).includes(name)) {
      throw new CliUsageError(`unknown flag --${name}; flags: ${FLAGS.map((f) => `--${f}`).join(", ")}`);
    }
    const flag = name as Flag;
    if (values.has(flag)) throw new CliUsageError(`--${flag} given twice`);
    let value: string | undefined;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      value = argv[i + 1];
      if (value === undefined || value.startsWith("--")) throw new CliUsageError(`--${flag} needs a value`);
      i++;
    }
    if (value === "") throw new CliUsageError(`--${flag} needs a value`);
    values.set(flag, value);
  }

  const out = values.get("out");
  if (out === undefined) throw new CliUsageError("--out DIR is required");
  const preset = oneOf<TinyPreset>("preset", values.get("preset") ?? "tiny", TINY_PRESETS);
  const arch = oneOf<Architecture>(
    "arch",
    values.get("arch") ?? presetArchitecture(preset) ?? "qwen3",
    TINY_ARCHITECTURES,
  );
  const fixed = presetArchitecture(preset);
  if (fixed && arch !== fixed) {
    throw new CliUsageError(`--preset ${preset} is a ${fixed} model; drop --arch or use --arch ${fixed}`);
  }
  const tokenizer = oneOf<TinyTokenizer>("tokenizer", values.get("tokenizer") ?? "bytes", TINY_TOKENIZERS);
  const dtypeName = (values.get("dtype") ?? "f32").toLowerCase();
  const dtype = DTYPES[dtypeName];
  if (dtype === undefined) {
    throw new CliUsageError(`--dtype must be one of f32, f16, bf16 (got ${JSON.stringify(values.get("dtype"))})`);
  }
  return {
    out,
    arch,
    preset,
    tokenizer,
    seed: integer("seed", values.get("seed") ?? "0", Number.MIN_SAFE_INTEGER),
    dtype,
    shards: integer("shards", values.get("shards") ?? "1", 1),
  };
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new CliUsageError(`--${flag} must be one of ${allowed.join(", ")} (got ${JSON.stringify(value)})`);
  }
  return value as T;
}

function integer(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) {
    throw new CliUsageError(
      `--${flag} must be an integer${min === 1 ? " >= 1" : ""} (got ${JSON.stringify(value)})`,
    );
  }
  return n;
}

async function main(argv: string[]): Promise<number> {
  let opts: TinyModelOptions;
  try {
    opts = parseTinyModelArgs(argv);
  } catch (e) {
    if (!(e instanceof CliUsageError)) throw e;
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
