/**
 * Exports of a version's merged weights:
 * - "hf": a HF model directory (model.safetensors in the base's per-tensor
 *   dtypes, every non-weight file of the base copied: config, tokenizer,
 *   generation config), loadable by openCheckpoint / transformers.
 * - "onnx": the transformers.js model directory (exportModelDirectory).
 * Built beside the target and renamed into place; an existing export is
 * returned as is (versions are immutable).
 */
import type { Checkpoint } from "../model/checkpoint.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { weightLayout } from "../model/layout.ts";
import { writeSafetensors } from "../model/safetensors.ts";
import { exportModelDirectory, type WeightSource } from "../model/serving_graph.ts";

export type ExportFormat = "hf" | "onnx";
export const EXPORT_FORMATS: readonly ExportFormat[] = ["hf", "onnx"];

/** The directory names of a version's exports (`exports/<version id>/<name>`), one per format and dtype. */
export const EXPORT_NAMES = ["hf", "onnx-float32", "onnx-float16"] as const;
export type ExportName = typeof EXPORT_NAMES[number];

export function exportName(format: ExportFormat, dtype: ComputeDType): ExportName {
  return format === "hf" ? "hf" : dtype === "float16" ? "onnx-float16" : "onnx-float32";
}

export interface ExportedFile {
  /** Relative to the export directory, `/`-separated (`config.json`, `onnx/model.onnx`). */
  name: string;
  bytes: number;
}

/**
 * The files of a finished export (empty when there is none): the only names
 * a download may ask for, so a request can never name a path outside it.
 */
export async function exportedFiles(dir: string): Promise<ExportedFile[]> {
  try {
    await Deno.stat(`${dir}/${DONE_MARKER}`);
  } catch {
    return [];
  }
  const out: ExportedFile[] = [];
  const walk = async (rel: string): Promise<void> => {
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      if (e.name.startsWith(".")) continue;
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(name);
      else if (e.isFile) out.push({ name, bytes: (await Deno.stat(`${dir}/${name}`)).size });
    }
  };
  await walk("");
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Marks a finished export (written last, inside the renamed directory). */
const DONE_MARKER = ".export-complete";

export interface ExportJob {
  format: ExportFormat;
  dtype: ComputeDType;
  target: string;
  ckpt: Checkpoint;
  source: WeightSource;
}

export async function exportVersionDirectory(job: ExportJob): Promise<string> {
  try {
    await Deno.stat(`${job.target}/${DONE_MARKER}`);
    return job.target;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const root = job.target.slice(0, job.target.lastIndexOf("/"));
  await Deno.mkdir(root, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: root, prefix: ".build-" });
  try {
    if (job.format === "hf") await writeHfDirectory(job.ckpt, job.source, tmp);
    else await exportModelDirectory(job.source, job.ckpt.dir, tmp, job.dtype);
    await Deno.writeTextFile(`${tmp}/${DONE_MARKER}`, new Date().toISOString());
    await Deno.remove(job.target, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, job.target);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  return job.target;
}

const WEIGHT_FILE = /(^model.*\.safetensors$)|(^model\.safetensors\.index\.json$)|(^pytorch_model.*\.bin)/;

async function writeHfDirectory(ckpt: Checkpoint, source: WeightSource, dir: string): Promise<void> {
  const tensors = weightLayout(ckpt.config).map((spec) => ({
    name: spec.name,
    shape: spec.shape,
    dtype: ckpt.tensors.get(spec.name)?.dtype ?? "F32",
    data: () => source.read(spec.name),
  }));
  await writeSafetensors(`${dir}/model.safetensors`, tensors, { dtype: "F32", metadata: { format: "pt" } });
  for await (const e of Deno.readDir(ckpt.dir)) {
    if ((e.isFile || e.isSymlink) && !WEIGHT_FILE.test(e.name) && !e.name.startsWith(".")) {
      await Deno.copyFile(`${ckpt.dir}/${e.name}`, `${dir}/${e.name}`);
    }
  }
}
