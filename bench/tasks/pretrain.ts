/**
 * A small base model pretrained here, so that some suite tasks fine-tune a
 * model with structure rather than random weights.
 *
 * Text: the license texts Debian's `base-files` package ships in
 * /usr/share/common-licenses (GPL, LGPL, Apache, MPL, GFDL, Artistic, BSD,
 * CC0; ~240 KB of English prose, present on every Debian system). Model: the
 * tiny llama config of the test-model generator (bytes tokenizer, llama3 rope
 * scaling) widened to hidden 96 / 3 layers. Every parameter is trained (a
 * full-parameter graph: the decoder with every tensor as a graph input,
 * differentiated by src/onnx/autodiff), AdamW in float32 on the host, random
 * windows of the text. The result is a normal HF directory (config.json,
 * model.safetensors, tokenizer files) that every tool here loads. Built once
 * and cached by a hash of its recipe; same recipe → same weights (one
 * intra-op thread, seeded data order and init).
 */
import { parseModelConfig } from "../../src/model/config.ts";
import { buildDecoder } from "../../src/model/decoder_graph.ts";
import { weightLayout } from "../../src/model/layout.ts";
import { Rng } from "../../src/model/rng.ts";
import { writeSafetensors } from "../../src/model/safetensors.ts";
import { generateTinyModel } from "../../src/model/tiny_model.ts";
import { addBackward } from "../../src/onnx/autodiff.ts";
import { GraphBuilder } from "../../src/onnx/builder.ts";
import type { Value } from "../../src/onnx/ir.ts";
import { softmaxCrossEntropy } from "../../src/onnx/losses.ts";
import { serializeModel } from "../../src/onnx/writer.ts";
import { ort, type OrtTensor } from "../../src/runtime/ort.ts";

export const LICENSE_DIR = "/usr/share/common-licenses";
/** The distinct texts (GPL, LGPL and GFDL are symlinks to one of these). */
export const LICENSE_FILES = [
  "Apache-2.0",
  "Artistic",
  "BSD",
  "CC0-1.0",
  "GFDL-1.2",
  "GFDL-1.3",
  "GPL-1",
  "GPL-2",
  "GPL-3",
  "LGPL-2",
  "LGPL-2.1",
  "LGPL-3",
  "MPL-1.1",
  "MPL-2.0",
];

export interface PretrainRecipe {
  hidden: number;
  layers: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  seqLen: number;
  batch: number;
  steps: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  seed: number;
}

export const DEFAULT_RECIPE: PretrainRecipe = {
  hidden: 96,
  layers: 3,
  intermediate: 256,
  heads: 6,
  kvHeads: 2,
  seqLen: 128,
  batch: 16,
  steps: 2000,
  lr: 3e-3,
  warmup: 100,
  weightDecay: 0.01,
  seed: 0,
};

/** The corpus as bytes (the bytes tokenizer's ids are the byte values). */
export async function licenseCorpus(): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (const f of LICENSE_FILES) {
    try {
      parts.push(await Deno.readFile(`${LICENSE_DIR}/${f}`));
    } catch {
      throw new Error(
        `${LICENSE_DIR}/${f} is missing: the pretrained suite tasks need Debian's base-files license texts`,
      );
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

async function recipeHash(recipe: PretrainRecipe, corpus: Uint8Array): Promise<string> {
  const enc = new TextEncoder().encode(JSON.stringify(recipe));
  const both = new Uint8Array(enc.length + corpus.length);
  both.set(enc);
  both.set(corpus, enc.length);
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", both));
  return [...d.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The directory of the pretrained base model under `root`, built first when
 * absent (a few minutes on one core). `log` gets progress lines.
 */
export async function pretrainedBase(
  root: string,
  recipe: PretrainRecipe = DEFAULT_RECIPE,
  log: (line: string) => void = () => {},
): Promise<string> {
  const corpus = await licenseCorpus();
  const dir = `${root}/license-llama-${await recipeHash(recipe, corpus)}`;
  if (await Deno.stat(`${dir}/model.safetensors`).catch(() => null)) return dir;
  const tmp = `${dir}.partial-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  // A generated tiny llama gives the tokenizer files and the config to widen.
  await generateTinyModel({ out: tmp, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: recipe.seed });
  const raw = JSON.parse(await Deno.readTextFile(`${tmp}/config.json`));
  Object.assign(raw, {
    hidden_size: recipe.hidden,
    num_hidden_layers: recipe.layers,
    intermediate_size: recipe.intermediate,
    num_attention_heads: recipe.heads,
    num_key_value_heads: recipe.kvHeads,
  });
  const t0 = performance.now();
  const { weights, trainLoss, heldOutLoss } = await pretrain(raw, corpus, recipe, log);
  raw.pretraining = {
    corpus: `${LICENSE_DIR} (Debian base-files): ${LICENSE_FILES.join(", ")}`,
    recipe,
    final_train_loss: Number(trainLoss.toFixed(4)),
    held_out_loss: Number(heldOutLoss.toFixed(4)),
    seconds: Math.round((performance.now() - t0) / 1000),
  };
  await Deno.writeTextFile(`${tmp}/config.json`, JSON.stringify(raw, null, 2) + "\n");
  const layout = weightLayout(parseModelConfig(raw));
  await writeSafetensors(
    `${tmp}/model.safetensors`,
    layout.map((t) => ({ name: t.name, shape: t.shape, data: weights.get(t.name)! })),
    { dtype: "F32", metadata: { format: "pt" } },
  );
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, dir);
  return dir;
}

/** Standard init: N(0, 1/fan_in) linears (residual writes / sqrt(2·layers)), unit norms, N(0, 1) embeddings. */
function initWeights(raw: Record<string, unknown>, seed: number): Map<string, Float32Array> {
  const config = parseModelConfig(raw);
  const out = new Map<string, Float32Array>();
  for (const t of weightLayout(config)) {
    const rng = new Rng(seed, `pretrain/${t.name}`);
    const n = t.shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
    if (t.name.endsWith("norm.weight")) data.fill(1);
    else if (t.name === "model.embed_tokens.weight") rng.fillNormal(data, 1);
    else {
      const residual = /o_proj|down_proj/.test(t.name) ? 1 / Math.sqrt(2 * config.numLayers) : 1;
      rng.fillNormal(data, residual / Math.sqrt(t.shape[1]));
    }
    out.set(t.name, data);
  }
  return out;
}

async function pretrain(
  raw: Record<string, unknown>,
  corpus: Uint8Array,
  recipe: PretrainRecipe,
  log: (line: string) => void,
): Promise<{ weights: Map<string, Float32Array>; trainLoss: number; heldOutLoss: number }> {
  const config = parseModelConfig(raw);
  const layout = weightLayout(config);
  const weights = initWeights(raw, recipe.seed);

  const g = new GraphBuilder("pretrain");
  const inputs = new Map<string, Value>();
  const weight = (name: string): Value => {
    let v = inputs.get(name);
    if (!v) {
      v = g.input(name, "float32", layout.find((t) => t.name === name)!.shape);
      inputs.set(name, v);
    }
    return v;
  };
  const dec = buildDecoder(g, config, { dtype: "float32", kvCache: false, weight });
  if (!dec.logits) throw new Error("the decoder built no logits");
  const labels = g.input("labels", "int64", ["batch_size", "sequence_length"]);
  const V = config.vocabSize;
  const logits = g.reshape(g.slice(dec.logits, [0], [-1], [1]), [-1, V]);
  const targets = g.reshape(g.slice(labels, [1], [Number.MAX_SAFE_INTEGER], [1]), [-1]);
  const ones = g.cast(g.op1("GreaterOrEqual", [targets, g.constant(0, "int64", [])]), "float32");
  const loss = softmaxCrossEntropy(g, logits, targets, ones);
  const wrt = [...inputs.values()];
  const { grads } = addBackward(g, loss, wrt);
  g.output(loss, "loss");
  for (const w of wrt) g.output(grads.get(w.name)!, `grad.${w.name}`);
  const session = await ort.InferenceSession.create(await serializeModel(g.build()), {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });

  // The last 5% of the text is held out (reported, not trained on).
  const split = Math.floor(corpus.length * 0.95);
  const { batch: B, seqLen: T } = recipe;
  const feedsFor = (starts: number[]): Record<string, OrtTensor> => {
    const ids = new BigInt64Array(B * T), mask = new BigInt64Array(B * T).fill(1n), pos = new BigInt64Array(B * T);
    starts.forEach((s, b) => {
      for (let t = 0; t < T; t++) {
        ids[b * T + t] = BigInt(corpus[s + t]);
        pos[b * T + t] = BigInt(t);
      }
    });
    const dims = [B, T];
    const feeds: Record<string, OrtTensor> = {
      input_ids: new ort.Tensor("int64", ids, dims),
      attention_mask: new ort.Tensor("int64", mask, dims),
      position_ids: new ort.Tensor("int64", pos, dims),
      labels: new ort.Tensor("int64", ids, dims),
    };
    for (const [name, v] of inputs) feeds[name] = new ort.Tensor("float32", weights.get(name)!, v.shape as number[]);
    return feeds;
  };

  const m = new Map([...weights].map(([k, w]) => [k, new Float32Array(w.length)]));
  const v = new Map([...weights].map(([k, w]) => [k, new Float32Array(w.length)]));
  const rng = new Rng(recipe.seed, "pretrain/windows");
  const b1 = 0.9, b2 = 0.95, eps = 1e-8;
  let ema = 0;
  for (let step = 1; step <= recipe.steps; step++) {
    const starts = Array.from({ length: B }, () => rng.nextInt(split - T));
    const out = await session.run(feedsFor(starts));
    const l = (out.loss.data as Float32Array)[0];
    ema = step === 1 ? l : 0.98 * ema + 0.02 * l;
    const progress = Math.max(0, (step - recipe.warmup) / (recipe.steps - recipe.warmup));
    const lr = step <= recipe.warmup
      ? recipe.lr * step / recipe.warmup
      : recipe.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * progress)));
    const c1 = 1 - b1 ** step, c2 = 1 - b2 ** step;
    for (const [name, w] of weights) {
      const gr = out[`grad.${name}`].data as Float32Array, mm = m.get(name)!, vv = v.get(name)!;
      const decay = name.endsWith("norm.weight") ? 0 : recipe.weightDecay;
      for (let i = 0; i < w.length; i++) {
        mm[i] = b1 * mm[i] + (1 - b1) * gr[i];
        vv[i] = b2 * vv[i] + (1 - b2) * gr[i] * gr[i];
        w[i] -= lr * ((mm[i] / c1) / (Math.sqrt(vv[i] / c2) + eps) + decay * w[i]);
      }
    }
    if (step % 200 === 0) log(`pretrain step ${step}/${recipe.steps}: loss ${ema.toFixed(3)} (nats/byte)`);
  }
  // Held-out loss over consecutive windows of the last 5%.
  let held = 0, nHeld = 0;
  for (let s = split; s + B * T <= corpus.length; s += B * T) {
    const out = await session.run(feedsFor(Array.from({ length: B }, (_, b) => s + b * T)));
    held += (out.loss.data as Float32Array)[0];
    nHeld++;
  }
  await session.release();
  return { weights, trainLoss: ema, heldOutLoss: nHeld ? held / nHeld : NaN };
}
