/**
 * A fine-tuned model as a plain HF model directory: the base's config,
 * generation config and tokenizer files, and its weights with every adapted
 * layer replaced by W_base + Σ U Vᵀ over the layer's delta terms (Merge
 * kernel, float32). Tensors are streamed one at a time; weights are sharded
 * (with an index) above `maxShardBytes`, as `save_pretrained` does.
 *
 * Precision: each tensor keeps the base's storage dtype unless `dtype` says
 * otherwise (like PEFT's merge_and_unload). A bf16 base rounds small deltas
 * (relative step 2⁻⁸): pass dtype "F32" to keep them exact.
 */
import { MergeKernel } from "../../kernels/merge.ts";
import { type Checkpoint, openCheckpoint } from "../model/checkpoint.ts";
import type { FloatDtype, TensorToWrite } from "../model/safetensors.ts";
import { writeSafetensors } from "../model/safetensors.ts";
import type { LayerDelta } from "./layer_delta.ts";
import type { Device } from "../runtime/session.ts";
import { concatTerms } from "./merge_log.ts";

export interface MergedModelOptions {
  /** Storage dtype of every tensor; default each tensor's dtype in the base. */
  dtype?: FloatDtype;
  /** Hub cache root when `baseDir` is a hub id (`<dataDir>/hub`). */
  dataDir?: string;
  /** Largest weight file before sharding (default 5 GB, HF's default). */
  maxShardBytes?: number;
  device?: Device;
  threads?: number;
}

export class MergedModelError extends Error {
  override name = "MergedModelError";
}

/** Non-weight files of a HF model directory that a merged copy keeps. */
const COPIED_FILES = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "chat_template.json",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "tokenizer.model",
];

const TORCH_DTYPES: Record<FloatDtype, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };
const BYTES: Record<FloatDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export async function writeMergedModel(
  baseDir: string,
  deltas: readonly LayerDelta[],
  outDir: string,
  opts: MergedModelOptions = {},
): Promise<void> {
  const ckpt = await openCheckpoint(baseDir, { cacheDir: `${opts.dataDir ?? "./data"}/hub` });
  const kernel = new MergeKernel({ device: opts.device ?? "cpu", threads: opts.threads });
  try {
    const byName = checkDeltas(ckpt, deltas);
    const out = outDir.replace(/\/+$/, "") || ".";
    if ((await Deno.realPath(out).catch(() => null)) === ckpt.dir) {
      throw new MergedModelError(`the output directory is the base model's (${ckpt.dir})`);
    }
    await Deno.mkdir(out, { recursive: true });
    await removeOldWeights(out);

    const config = { ...ckpt.rawConfig };
    if (opts.dtype) config.torch_dtype = TORCH_DTYPES[opts.dtype];
    await Deno.writeTextFile(`${out}/config.json`, JSON.stringify(config, null, 2) + "\n");
    for (const name of COPIED_FILES) {
      try {
        await Deno.copyFile(`${ckpt.dir}/${name}`, `${out}/${name}`);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }

    const tensors: TensorToWrite[] = [...ckpt.tensors].map(([name, t]) => ({
      name,
      shape: t.shape,
      dtype: opts.dtype ?? t.dtype,
      data: async () => {
        const base = await ckpt.read(name);
        const delta = byName.get(name);
        return delta ? await applyDelta(kernel, base, delta) : base;
      },
    }));
    await writeShards(out, tensors, opts.maxShardBytes ?? 5e9);
  } finally {
    await kernel.release();
    ckpt.close();
  }
}

/** Deltas by weight tensor name, checked against the base's shapes. */
function checkDeltas(ckpt: Checkpoint, deltas: readonly LayerDelta[]): Map<string, LayerDelta> {
  const out = new Map<string, LayerDelta>();
  for (const d of deltas) {
    const name = `${d.name}.weight`, t = ckpt.tensors.get(name);
    if (!t) throw new MergedModelError(`delta for "${d.name}": the base model has no tensor "${name}"`);
    if (t.shape.length !== 2 || t.shape[0] !== d.m || t.shape[1] !== d.n) {
      throw new MergedModelError(`delta for "${d.name}" is ${d.m}x${d.n}, the base weight is [${t.shape}]`);
    }
    if (out.has(name)) throw new MergedModelError(`two deltas for "${d.name}"`);
    d.terms.forEach((term, i) => {
      if (!(term.k >= 0) || term.U.length !== d.m * term.k || term.V.length !== d.n * term.k) {
        throw new MergedModelError(`delta for "${d.name}": term ${i} does not match ${d.m}x${d.n} at rank ${term.k}`);
      }
    });
    out.set(name, d);
  }
  return out;
}

async function applyDelta(kernel: MergeKernel, W: Float32Array, d: LayerDelta): Promise<Float32Array> {
  const terms = d.terms.filter((t) => t.k > 0);
  if (terms.length === 0) return W;
  const k = terms.reduce((s, t) => s + t.k, 0);
  const { U, V } = concatTerms(terms, d.m, d.n);
  const [merged] = await kernel.run([{ m: d.m, n: d.n, k, W, A: U, B: V, c: new Float32Array(k).fill(1), s: 1 }]);
  return merged;
}

/** One `model.safetensors`, or `model-0000i-of-0000N.safetensors` + index when larger than `maxBytes`. */
async function writeShards(dir: string, tensors: TensorToWrite[], maxBytes: number): Promise<void> {
  const size = (t: TensorToWrite) => t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype!];
  const groups: TensorToWrite[][] = [[]];
  let bytes = 0;
  for (const t of tensors) {
    if (bytes > 0 && bytes + size(t) > maxBytes) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1].push(t);
    bytes += size(t);
  }
  const metadata = { format: "pt" };
  // writeSafetensors needs a file-wide default; every tensor carries its own.
  if (groups.length === 1) {
    await writeSafetensors(`${dir}/model.safetensors`, groups[0], { dtype: "F32", metadata });
    return;
  }
  const weightMap: Record<string, string> = {};
  const pad = (i: number) => String(i).padStart(5, "0");
  for (const [i, g] of groups.entries()) {
    const file = `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`;
    await writeSafetensors(`${dir}/${file}`, g, { dtype: "F32", metadata });
    for (const t of g) weightMap[t.name] = file;
  }
  const total = tensors.reduce((s, t) => s + size(t), 0);
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n",
  );
}

/** Drops weight files of an earlier export (another shard count would leave stale shards). */
async function removeOldWeights(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (
      e.isFile &&
      (e.name === "model.safetensors" || e.name === "model.safetensors.index.json" ||
        /^model-\d{5}-of-\d{5}\.safetensors$/.test(e.name))
    ) {
      await Deno.remove(`${dir}/${e.name}`);
    }
  }
}
