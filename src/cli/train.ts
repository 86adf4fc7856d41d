/**
 * deno task train --model DIR --data train.jsonl [--validation valid.jsonl]
 *   [--method scalora|lora|scalora-scalar] [--rank 8] [--alpha 16] [--interval 10] [--lipschitz auto|L]
 *   [--target-modules q_proj,v_proj,...] [--epochs 3] [--batch-size 8] [--lr 2e-4] [--warmup-ratio 0]
 *   [--schedule linear|cosine|constant] [--max-grad-norm 1] [--grad-accum 1] [--max-length 512] [--seed 0]
 *   [--validation-fraction 0] [--out DIR] [--checkpoint-dir DIR] [--checkpoint-every N] [--resume]
 *   [--device auto|cpu|cuda|webgpu] [--threads N] [--dtype F32|F16|BF16] [--log-every N] [--data-dir DIR]
 *
 * Fine-tunes with src/train/fine_tune.ts and writes the merged model directory
 * to --out (default `<model>-ft`); checkpoints go to --checkpoint-dir (default
 * `<out>.checkpoints`). Progress on stderr, the summary on stdout. Bad data
 * lines are listed with their line numbers and the exit code is 1 (nothing is
 * trained). Ctrl-C stops after the current step and writes a checkpoint;
 * rerun with --resume to continue.
 */
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { ModelLoadError } from "../model/errors.ts";
import type { FloatDtype } from "../model/safetensors.ts";
import { TokenizerLoadError } from "../model/tokenizer.ts";
import { DEVICE_REQUESTS, resolveDevice } from "../runtime/device.ts";
import { formatIssue } from "../train/dataset_errors.ts";
import {
  DatasetInvalidError,
  fineTune,
  FineTuneAborted,
  FineTuneCheckpointError,
  type FineTuneOptions,
  FineTuneOptionsError,
  writeMergedModel,
} from "../train/fine_tune.ts";
import { MergedModelError } from "../train/merged_model.ts";
import { TARGET_MODULES } from "../train/lm_training_graph.ts";
import { formatDuration, Progress } from "./progress.ts";

const USAGE = "usage: deno task train --model DIR --data FILE.jsonl [--validation FILE.jsonl] " +
  "[--method scalora|lora|scalora-scalar] [--rank N] [--alpha X] [--interval N] [--lipschitz auto|L] " +
  "[--target-modules a,b] [--epochs N] [--batch-size N] [--lr X] [--warmup-ratio X] " +
  "[--schedule linear|cosine|constant] [--max-grad-norm X] [--grad-accum N] [--max-length N] [--seed N] " +
  "[--validation-fraction X] [--out DIR] [--checkpoint-dir DIR] [--checkpoint-every N] [--resume] " +
  "[--device auto|cpu|cuda|webgpu] [--threads N] [--dtype F32|F16|BF16] [--log-every N] [--data-dir DIR]";

class UsageError extends Error {}

function num(name: string, value: string | undefined, dflt: number, integer = false): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

async function readData(path: string, flag: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`--${flag}: cannot read ${path} (${e instanceof Error ? e.message : e})`);
  }
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      options: {
        model: { type: "string" },
        data: { type: "string" },
        validation: { type: "string" },
        method: { type: "string", default: "scalora" },
        rank: { type: "string" },
        alpha: { type: "string" },
        interval: { type: "string" },
        lipschitz: { type: "string", default: "auto" },
        "target-modules": { type: "string" },
        epochs: { type: "string" },
        "batch-size": { type: "string" },
        lr: { type: "string" },
        "warmup-ratio": { type: "string" },
        schedule: { type: "string", default: "linear" },
        "max-grad-norm": { type: "string" },
        "grad-accum": { type: "string" },
        "max-length": { type: "string" },
        seed: { type: "string" },
        "validation-fraction": { type: "string" },
        out: { type: "string" },
        "checkpoint-dir": { type: "string" },
        "checkpoint-every": { type: "string" },
        resume: { type: "boolean", default: false },
        device: { type: "string", default: "auto" },
        threads: { type: "string" },
        dtype: { type: "string" },
        "log-every": { type: "string" },
        "data-dir": { type: "string", default: Deno.env.get("DATA_DIR") ?? "./data" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

async function main(argv: string[]): Promise<number> {
  const v = parse(argv);
  if (!v.model) throw new UsageError("--model is required");
  if (!v.data) throw new UsageError("--data is required");
  const model = v.model.replace(/\/+$/, "");
  const out = v.out ?? `${model}-ft`;
  const checkpointDir = v["checkpoint-dir"] ?? `${out.replace(/\/+$/, "")}.checkpoints`;
  const method = oneOf("method", v.method, ["scalora", "lora", "scalora-scalar"] as const);
  const targetModules = v["target-modules"]?.split(",").map((s) => oneOf("target-modules", s.trim(), TARGET_MODULES));
  const lipschitz = v.lipschitz === "auto" ? "auto" as const : num("lipschitz", v.lipschitz, 0);
  const dtype = v.dtype === undefined ? undefined : oneOf<FloatDtype>("dtype", v.dtype, ["F32", "F16", "BF16"]);
  const device = resolveDevice(oneOf("device", v.device, DEVICE_REQUESTS));
  const threads = v.threads === undefined ? undefined : num("threads", v.threads, 1, true);
  const trainText = await readData(v.data, "data");
  const validationText = v.validation === undefined ? undefined : await readData(v.validation, "validation");

  const stderr = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s));
  const progress = new Progress(
    { tty: Deno.stderr.isTerminal(), write: stderr, columns: terminalColumns() },
    num("log-every", v["log-every"], 10, true),
  );
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) Deno.exit(130); // a second Ctrl-C: stop now
    progress.note("interrupt: stopping after this step (Ctrl-C again to quit at once) ...");
    controller.abort("interrupted");
  };
  Deno.addSignalListener("SIGINT", onSigint);

  const opts: FineTuneOptions = {
    model,
    dataDir: v["data-dir"],
    trainText,
    validationText,
    method,
    rank: num("rank", v.rank, 8, true),
    alpha: num("alpha", v.alpha, 16),
    interval: num("interval", v.interval, 10, true),
    lipschitz,
    targetModules,
    epochs: num("epochs", v.epochs, 3, true),
    batchSize: num("batch-size", v["batch-size"], 8, true),
    learningRate: num("lr", v.lr, 2e-4),
    warmupRatio: num("warmup-ratio", v["warmup-ratio"], 0),
    schedule: oneOf("schedule", v.schedule, ["linear", "cosine", "constant"] as const),
    maxGradNorm: num("max-grad-norm", v["max-grad-norm"], 1),
    gradientAccumulation: num("grad-accum", v["grad-accum"], 1, true),
    maxLength: num("max-length", v["max-length"], 512, true),
    seed: num("seed", v.seed, 0, true),
    validationFraction: num("validation-fraction", v["validation-fraction"], 0),
    checkpointDir,
    checkpointEvery: num("checkpoint-every", v["checkpoint-every"], 0, true),
    resume: v.resume,
    device,
    threads,
    signal: controller.signal,
    onEvent: (e) => {
      if (e.type === "metrics") progress.update(e);
      else if (e.type === "checkpoint") progress.note(`checkpoint at step ${e.step}: ${e.dir}`);
      else progress.note(`${e.level === "info" ? "" : `${e.level}: `}${e.message}`);
    },
  };

  const started = performance.now();
  try {
    const result = await fineTune(opts);
    progress.finish();
    stderr(`writing the merged model to ${out} ...\n`);
    await writeMergedModel(model, result.deltas, out, { dtype, dataDir: v["data-dir"], device, threads });
    const seconds = (performance.now() - started) / 1000;
    const how = method === "lora" ? `lora r=${opts.rank}` : `${method} r=${opts.rank} I=${opts.interval}`;
    console.log(
      `fine-tuned ${model} (${how}, alpha ${opts.alpha}): ${result.steps} steps, ` +
        `${result.trainedTokens} tokens in ${formatDuration(seconds)}; final train loss ${
          result.finalTrainLoss.toFixed(4)
        }` +
        (result.finalValidLoss === undefined ? "" : `, validation loss ${result.finalValidLoss.toFixed(4)}`),
    );
    console.log(`merged model: ${out}`);
    console.log(`checkpoints: ${checkpointDir}`);
    return 0;
  } catch (e) {
    progress.finish();
    if (e instanceof DatasetInvalidError) {
      const path = e.file === "training_file" ? v.data : v.validation;
      for (const issue of e.issues) stderr(`${path}: ${formatIssue(issue)}\n`);
      stderr(`error: ${e.issues.length} invalid line(s) in ${path}; nothing was trained\n`);
      return 1;
    }
    if (e instanceof FineTuneAborted) {
      stderr(
        `stopped at step ${e.step}` + (e.checkpoint ? `; checkpoint ${e.checkpoint} (rerun with --resume)` : "") + "\n",
      );
      return 130;
    }
    throw e;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

function terminalColumns(): number | undefined {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined;
  }
}

try {
  Deno.exit(await main(Deno.args));
} catch (e) {
  if (e instanceof UsageError || e instanceof FineTuneOptionsError) {
    console.error(`error: ${e.message}\n${USAGE}`);
    Deno.exit(2);
  }
  if (
    e instanceof ModelLoadError || e instanceof TokenizerLoadError || e instanceof FineTuneCheckpointError ||
    e instanceof MergedModelError
  ) {
    console.error(`error: ${e.message}`);
    Deno.exit(1);
  }
  throw e;
}
