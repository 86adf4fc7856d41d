/**
 * One fine-tuning configuration: its defaults are the HTTP API's and the train
 * CLI's (neither restates one), and its trajectory keys keep the order in
 * which checkpoints were fingerprinted.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import {
  BASE_LEARNING_RATE,
  DEFAULTS,
  parseStoredMethod,
  type ResolvedHyperparameters,
  resolveHyperparameters,
  SCALING_METHODS,
  storedMethod,
  trainOptions,
} from "../src/jobs/job_spec.ts";
import {
  FineTuneOptionsError,
  parseFineTuneOptions,
  TRAINING_DEFAULTS,
  TRAJECTORY_KEYS,
} from "../src/train/fine_tune_config.ts";
import { TARGET_MODULES } from "../src/train/lm_training_graph.ts";

Deno.test("config: the training defaults", () => {
  assert.deepEqual(TRAINING_DEFAULTS, {
    method: "scalora",
    rank: 8,
    alpha: 16,
    rsLora: false,
    interval: 10,
    lipschitz: "auto",
    targetModules: [...TARGET_MODULES],
    epochs: 3,
    batchSize: 8,
    learningRate: 2e-4,
    warmupRatio: 0,
    schedule: "linear",
    maxGradNorm: 1,
    gradientAccumulation: 1,
    maxLength: 512,
    seed: 0,
    validationFraction: 0,
    weightDecay: 0,
  });
});

Deno.test("config: fineTune's options take the defaults; alpha follows the rank; bad values are refused", () => {
  const run = { model: "m", trainText: "", checkpointDir: "c" };
  const c = parseFineTuneOptions(run);
  for (const [k, v] of Object.entries(TRAINING_DEFAULTS)) assert.deepEqual(c[k as keyof typeof c], v, k);
  assert.equal(c.dataDir, "./data");
  assert.equal(c.checkpointEvery, 0);
  assert.equal(parseFineTuneOptions({ ...run, rank: 4 }).alpha, 8);
  assert.equal(parseFineTuneOptions({ ...run, rank: 4, alpha: 3 }).alpha, 3);
  assert.throws(() => parseFineTuneOptions({ ...run, rank: 0 }), FineTuneOptionsError);
});

Deno.test("config: the API's defaults are the configuration's", () => {
  const hp = resolveHyperparameters({}, 1000);
  assert.equal(hp.rank, TRAINING_DEFAULTS.rank);
  assert.equal(hp.alpha, TRAINING_DEFAULTS.alpha);
  assert.equal(SCALING_METHODS[hp.scaling], TRAINING_DEFAULTS.method);
  assert.equal(hp.interval, TRAINING_DEFAULTS.interval);
  assert.equal(hp.lipschitz, TRAINING_DEFAULTS.lipschitz);
  assert.deepEqual(hp.target_modules, TRAINING_DEFAULTS.targetModules);
  assert.equal(hp.max_length, TRAINING_DEFAULTS.maxLength);
  assert.equal(hp.learning_rate_multiplier * BASE_LEARNING_RATE, TRAINING_DEFAULTS.learningRate);
  assert.equal(DEFAULTS.alphaPerRank * 4, resolveHyperparameters({ rank: 4 }, 1000).alpha);
});

Deno.test("config: the API's merge_split reaches the auto rule; a job stored before the field reads the default", () => {
  const at = { model: "m", dataDir: "d", trainText: "", seed: 0, checkpointDir: "c" };
  const solve = resolveHyperparameters({ merge_split: "solve" }, 100);
  assert.deepEqual(trainOptions(solve, at).lipschitz, { split: "solve" });
  // The default split is plain "auto" (the fingerprint of runs checkpointed before the field is unchanged).
  const plain = resolveHyperparameters({}, 100);
  assert.equal(plain.merge_split, DEFAULTS.mergeSplit);
  assert.equal(trainOptions(plain, at).lipschitz, "auto");
  // A fixed L is the paper's mode: the split does not apply.
  assert.equal(trainOptions(resolveHyperparameters({ lipschitz: 30, merge_split: "solve" }, 100), at).lipschitz, 30);
  const { merge_split: _, ...older } = plain;
  const stored = parseStoredMethod(JSON.parse(JSON.stringify(storedMethod(older as typeof plain, null))));
  assert.equal(stored.supervised.hyperparameters.merge_split, DEFAULTS.mergeSplit);
});

Deno.test("config: the API's lr_boost reaches the auto rule; a job stored before the field reads the default", () => {
  const at = { model: "m", dataDir: "d", trainText: "", seed: 0, checkpointDir: "c" };
  assert.equal(resolveHyperparameters({}, 100).lr_boost, DEFAULTS.lrBoost);
  assert.deepEqual(trainOptions(resolveHyperparameters({ lr_boost: 1 }, 100), at).lipschitz, { lrBoost: 1 });
  assert.deepEqual(
    trainOptions(resolveHyperparameters({ lr_boost: 1.5, merge_split: "solve" }, 100), at).lipschitz,
    { split: "solve", lrBoost: 1.5 },
  );
  assert.equal(trainOptions(resolveHyperparameters({ lipschitz: 30, lr_boost: 1.5 }, 100), at).lipschitz, 30);
  const { lr_boost: _, ...older } = resolveHyperparameters({}, 100);
  const stored = parseStoredMethod(JSON.parse(JSON.stringify(storedMethod(older as ResolvedHyperparameters, null))));
  assert.equal(stored.supervised.hyperparameters.lr_boost, DEFAULTS.lrBoost);
  // …so its options stay plain "auto" and its checkpoints (fingerprinted with "auto") resume.
  assert.equal(trainOptions(stored.supervised.hyperparameters, at).lipschitz, "auto");
});

Deno.test("config: the trajectory keys, in the order checkpoints were fingerprinted with", () => {
  assert.deepEqual(TRAJECTORY_KEYS, [
    "method",
    "rank",
    "alpha",
    "rsLora",
    "interval",
    "lipschitz",
    "targetModules",
    "epochs",
    "batchSize",
    "learningRate",
    "warmupRatio",
    "schedule",
    "maxGradNorm",
    "gradientAccumulation",
    "maxLength",
    "seed",
    "validationFraction",
    "weightDecay",
  ]);
});
