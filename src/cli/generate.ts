/**
 * deno task generate --model DIR --prompt "..." [--chat] [--max-tokens N]
 *   [--temperature T] [--top-p P] [--top-k K] [--seed N] [--stop S]... [--device auto|cpu|cuda|webgpu]
 *
 * Streams the completion to stdout; timing and token counts go to stderr.
 */
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { ModelLoadError } from "../model/errors.ts";
import { ChatTemplateError, TokenizerLoadError } from "../model/tokenizer.ts";
import { DEVICE_REQUESTS, resolveDevice } from "../runtime/device.ts";
import { SessionError } from "../runtime/session.ts";
import { generate, GenerationError } from "../serve/generate.ts";
import { loadModel } from "../serve/load_model.ts";
import { integerFlag, numberFlag, oneOfFlag, parseFlags, UsageError } from "./flags.ts";

const USAGE = "usage: deno task generate --model DIR --prompt TEXT [--chat] [--max-tokens N] [--temperature T] " +
  "[--top-p P] [--top-k K] [--seed N] [--stop S]... [--device auto|cpu|cuda|webgpu] [--data-dir DIR]";

const FLAGS = {
  model: { type: "string" },
  prompt: { type: "string" },
  chat: { type: "boolean" },
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-p": { type: "string" },
  "top-k": { type: "string" },
  seed: { type: "string" },
  stop: { type: "string", multiple: true },
  device: { type: "string" },
  "data-dir": { type: "string" },
} as const;

async function main(argv: string[]): Promise<void> {
  const v = parseFlags(argv, FLAGS);
  if (v.help) return console.log(USAGE);
  if (!v.model) throw new UsageError("--model is required");
  if (v.prompt === undefined) throw new UsageError("--prompt is required");
  const device = oneOfFlag("device", v.device ?? "auto", DEVICE_REQUESTS);
  const maxTokens = v["max-tokens"] === undefined ? 128 : integerFlag("max-tokens", v["max-tokens"]);
  const sampling = {
    temperature: v.temperature === undefined ? 0 : numberFlag("temperature", v.temperature),
    topP: v["top-p"] === undefined ? 1 : numberFlag("top-p", v["top-p"]),
    topK: v["top-k"] === undefined ? 0 : integerFlag("top-k", v["top-k"]),
    seed: v.seed === undefined ? undefined : integerFlag("seed", v.seed),
  };

  const model = await loadModel(v.model, {
    dataDir: v["data-dir"] ?? Deno.env.get("DATA_DIR"),
    device: resolveDevice(device),
  });
  const promptIds = v.chat
    ? model.tokenizer.encodeChat([{ role: "user", content: v.prompt }], { addGenerationPrompt: true })
    : model.tokenizer.encode(v.prompt);
  const encoder = new TextEncoder();
  const started = performance.now();
  const result = await generate(model.lm, model.tokenizer, promptIds, {
    maxTokens,
    sampling,
    stop: v.stop ?? [],
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
