/**
 * deno task train --model DIR --data train.jsonl [--validation valid.jsonl] [training options]
 *   [--out DIR] [--checkpoint-dir DIR] [--checkpoint-every N] [--resume] [--device auto|cpu|cuda|webgpu]
 *   [--threads N] [--dtype F32|F16|BF16] [--log-every N] [--data-dir DIR]
 *
 * The training options (--method, --rank, --alpha, --lr, …; `--help` lists
 * them with their defaults) set the fields of the fine-tuning configuration
 * (src/train/fine_tune_config.ts), which holds the defaults.
 *
 * Fine-tunes with src/train/fine_tune.ts and writes the merged model directory
 * to --out (default `<model>-ft`); checkpoints go to --checkpoint-dir (default
 * `<out>.checkpoints`). Progress on stderr, the summary on stdout. Bad data
 * lines are listed with their line numbers and the exit code is 1 (nothing is
 * trained). Ctrl-C stops after the current step and writes a checkpoint;
 * rerun with --resume to continue.
 */
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
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
import {
  ALPHA_PER_RANK,
  type FineTuneConfigInput,
  METHODS,
  parseFineTuneOptions,
  SCHEDULES,
  TRAINING_DEFAULTS,
  type TrainingConfig,
} from "../train/fine_tune_config.ts";
import { MergedModelError } from "../train/merged_model.ts";
import { TARGET_MODULES } from "../train/lm_training_graph.ts";
import { integerFlag, numberFlag, oneOfFlag, parseFlags, UsageError } from "./flags.ts";
import { formatDuration, Progress } from "./progress.ts";

/**
 * The flags that set a training field: flag, field, and what it takes (N: an
 * integer, X: a number, a|b: one of those; lipschitz and target-modules are
 * read as documented).
 */
const TRAINING_FLAGS: readonly [flag: string, field: keyof TrainingConfig, takes: string][] = [
  ["method", "method", METHODS.join("|")],
  ["rank", "rank", "N"],
  ["alpha", "alpha", "X"],
  ["interval", "interval", "N"],
  ["lipschitz", "lipschitz", "auto|L|JSON"],
  ["target-modules", "targetModules", "q_proj,v_proj,..."],
  ["epochs", "epochs", "N"],
  ["batch-size", "batchSize", "N"],
  ["lr", "learningRate", "X"],
  ["warmup-ratio", "warmupRatio", "X"],
  ["schedule", "schedule", SCHEDULES.join("|")],
  ["max-grad-norm", "maxGradNorm", "X"],
  ["grad-accum", "gradientAccumulation", "N"],
  ["max-length", "maxLength", "N"],
  ["seed", "seed", "N"],
  ["validation-fraction", "validationFraction", "X"],
];

const FLAGS = {
  model: { type: "string" },
  data: { type: "string" },
  validation: { type: "string" },
  ...Object.fromEntries(TRAINING_FLAGS.map(([flag]) => [flag, { type: "string" } as const])),
  out: { type: "string" },
  "checkpoint-dir": { type: "string" },
  "checkpoint-every": { type: "string" },
  resume: { type: "boolean" },
  device: { type: "string" },
  threads: { type: "string" },
  dtype: { type: "string" },
  "log-every": { type: "string" },
  "data-dir": { type: "string" },
} as const;

const USAGE = "usage: deno task train --model DIR --data FILE.jsonl [--validation FILE.jsonl] " +
  TRAINING_FLAGS.map(([flag, , takes]) => `[--${flag} ${takes}]`).join(" ") +
  " [--out DIR] [--checkpoint-dir DIR] [--checkpoint-every N] [--resume] " +
  `[--device ${DEVICE_REQUESTS.join("|")}] [--threads N] [--dtype F32|F16|BF16] [--log-every N] [--data-dir DIR]`;

/** `--help`: the usage, then each training option with its default. */
function help(): string {
  const shown = (field: keyof TrainingConfig) =>
    field === "alpha" ? `${ALPHA_PER_RANK} x rank` : JSON.stringify(TRAINING_DEFAULTS[field]);
  return `${USAGE}\n\ntraining options (default):\n` +
    TRAINING_FLAGS.map(([flag, field, takes]) => `  --${flag} ${takes}  (${shown(field)})`).join("\n");
}

function readTrainingFlag(flag: string, takes: string, value: string): unknown {
  if (takes === "N") return integerFlag(flag, value);
  if (takes === "X") return numberFlag(flag, value);
  if (flag === "lipschitz") {
    if (value === "auto") return "auto";
    if (!value.trimStart().startsWith("{")) return numberFlag(flag, value);
    // The auto rule with its options, e.g. '{"split":"solve"}' (fineTune's configuration checks the keys).
    try {
      return JSON.parse(value);
    } catch {
      throw new UsageError(`--lipschitz: not a JSON object: ${value}`);
    }
  }
  if (flag === "target-modules") return value.split(",").map((s) => oneOfFlag(flag, s.trim(), TARGET_MODULES));
  return oneOfFlag(flag, value, takes.split("|"));
}

async function readData(path: string, flag: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`--${flag}: cannot read ${path} (${e instanceof Error ? e.message : e})`);
  }
}

async function main(argv: string[]): Promise<number> {
  const v = parseFlags(argv, FLAGS);
  if (v.help) {
    console.log(help());
    return 0;
  }
  if (!v.model) throw new UsageError("--model is required");
  if (!v.data) throw new UsageError("--data is required");
  const model = v.model.replace(/\/+$/, "");
  const out = v.out ?? `${model}-ft`;
  const dtype = v.dtype === undefined ? undefined : oneOfFlag<FloatDtype>("dtype", v.dtype, ["F32", "F16", "BF16"]);
  const device = resolveDevice(oneOfFlag("device", v.device ?? "auto", DEVICE_REQUESTS));
  const given = (flag: string) => (v as Record<string, unknown>)[flag] as string | undefined;
  const training = Object.fromEntries(
    TRAINING_FLAGS.filter(([flag]) => given(flag) !== undefined)
      .map(([flag, field, takes]) => [field, readTrainingFlag(flag, takes, given(flag)!)]),
  );
  const input = {
    ...training,
    model,
    dataDir: v["data-dir"] ?? Deno.env.get("DATA_DIR"),
    trainText: await readData(v.data, "data"),
    validationText: v.validation === undefined ? undefined : await readData(v.validation, "validation"),
    checkpointDir: v["checkpoint-dir"] ?? `${out.replace(/\/+$/, "")}.checkpoints`,
    checkpointEvery: v["checkpoint-every"] === undefined
      ? undefined
      : integerFlag("checkpoint-every", v["checkpoint-every"]),
    resume: v.resume,
    device,
    threads: v.threads === undefined ? undefined : integerFlag("threads", v.threads),
  };
  // The flags' values are checked (and the defaults filled in) by the configuration's schema.
  const config = parseFineTuneOptions(input as FineTuneConfigInput);
  const { checkpointDir } = config;

  const stderr = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s));
  const progress = new Progress(
    { tty: Deno.stderr.isTerminal(), write: stderr, columns: terminalColumns() },
    v["log-every"] === undefined ? undefined : integerFlag("log-every", v["log-every"], 1),
  );
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) Deno.exit(130); // a second Ctrl-C: stop now
    progress.note("interrupt: stopping after this step (Ctrl-C again to quit at once) ...");
    controller.abort("interrupted");
  };
  Deno.addSignalListener("SIGINT", onSigint);

  const opts: FineTuneOptions = {
    ...config,
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
    await writeMergedModel(model, result.deltas, out, {
      dtype,
      dataDir: config.dataDir,
      device: config.device,
      threads: config.threads,
    });
    const seconds = (performance.now() - started) / 1000;
    const { method, rank, interval, alpha } = config;
    const how = method === "lora" ? `lora r=${rank}` : `${method} r=${rank} I=${interval}`;
    console.log(
      `fine-tuned ${model} (${how}, alpha ${alpha}): ${result.steps} steps, ` +
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
