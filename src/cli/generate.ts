/**
 * deno task generate --model DIR --prompt "..." [--chat] [--max-tokens N]
 *   [--temperature T] [--top-p P] [--top-k K] [--seed N] [--stop S]... [--device auto|cpu|cuda|webgpu]
 *
 * Streams the completion to stdout; timing and token counts go to stderr.
 */
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { ModelLoadError } from "../model/errors.ts";
import { ChatTemplateError, TokenizerLoadError } from "../model/tokenizer.ts";
import { DEVICE_REQUESTS, type DeviceRequest, resolveDevice } from "../runtime/device.ts";
import { SessionError } from "../runtime/session.ts";
import { generate, GenerationError } from "../serve/generate.ts";
import { loadModel } from "../serve/load_model.ts";

const USAGE = "usage: deno task generate --model DIR --prompt TEXT [--chat] [--max-tokens N] [--temperature T] " +
  "[--top-p P] [--top-k K] [--seed N] [--stop S]... [--device auto|cpu|cuda|webgpu] [--data-dir DIR]";

class UsageError extends Error {}

function num(name: string, value: string | undefined, dflt: number, integer = false): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"}, got ${JSON.stringify(value)}`);
  }
  return n;
}

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        model: { type: "string" },
        prompt: { type: "string" },
        chat: { type: "boolean", default: false },
        "max-tokens": { type: "string" },
        temperature: { type: "string" },
        "top-p": { type: "string" },
        "top-k": { type: "string" },
        seed: { type: "string" },
        stop: { type: "string", multiple: true },
        device: { type: "string", default: "auto" },
        "data-dir": { type: "string", default: Deno.env.get("DATA_DIR") ?? "./data" },
      },
      strict: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const v = parsed.values;
  if (!v.model) throw new UsageError("--model is required");
  if (v.prompt === undefined) throw new UsageError("--prompt is required");
  if (!(DEVICE_REQUESTS as readonly string[]).includes(v.device)) {
    throw new UsageError(`--device must be one of ${DEVICE_REQUESTS.join(", ")}`);
  }
  const maxTokens = num("max-tokens", v["max-tokens"], 128, true);
  const sampling = {
    temperature: num("temperature", v.temperature, 0),
    topP: num("top-p", v["top-p"], 1),
    topK: num("top-k", v["top-k"], 0, true),
    seed: v.seed === undefined ? undefined : num("seed", v.seed, 0, true),
  };

  const model = await loadModel(v.model, {
    dataDir: v["data-dir"],
    device: resolveDevice(v.device as DeviceRequest),
  });
  const promptIds = v.chat
    ? model.tokenizer.encodeChat([{ role: "user", content: v.prompt }], { addGenerationPrompt: true })
    : model.tokenizer.encode(v.prompt);
  const encoder = new TextEncoder();
  const started = performance.now();
  const result = await generate(model.lm, model.tokenizer, promptIds, {
    maxTokens,
    sampling,
    stop: v.stop,
    onText: (delta) => Deno.stdout.writeSync(encoder.encode(delta)),
  });
  const seconds = (performance.now() - started) / 1000;
  console.log();
  console.error(
    `[${result.promptTokens} prompt + ${result.completionTokens} completion tokens, ` +
      `finish: ${result.finishReason}, ${(result.completionTokens / seconds).toFixed(1)} tok/s]`,
  );
  await model.lm.release();
}

try {
  await main(Deno.args);
} catch (e) {
  if (e instanceof UsageError) {
    console.error(`error: ${e.message}\n${USAGE}`);
    Deno.exit(2);
  }
  if (
    e instanceof ModelLoadError || e instanceof TokenizerLoadError || e instanceof SessionError ||
    e instanceof GenerationError || e instanceof ChatTemplateError
  ) {
    console.error(`error: ${e.message}`);
    Deno.exit(1);
  }
  throw e;
}
