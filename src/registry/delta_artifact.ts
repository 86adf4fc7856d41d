/**
 * A version's stored delta: one content-addressed safetensors file,
 * `<dataDir>/versions/<hash>/delta.safetensors`, holding per adapted layer
 * either the concatenated low-rank log (`<layer>.lora_U` [m, K] and
 * `<layer>.lora_V` [n, K], F32) or the dense delta (`<layer>.delta` [m, n],
 * F16, or BF16 when a value exceeds the f16 range).
 *
 * hash = sha256("scalora-delta-v1\0" + base id + "\0" + file bytes): the same
 * delta on the same base always lands in the same directory, so writing it
 * twice is a no-op and two names may share one artifact.
 */
import { createHash } from "node:crypto";
import { type FloatDtype, SafetensorsFile, type TensorToWrite, writeSafetensors } from "../model/safetensors.ts";
import {
  addDense,
  addLowRank,
  chooseFormat,
  concatFactors,
  type LayerFormat,
  maxAbs,
  weightName,
} from "./delta_codec.ts";
import { RegistryError } from "./errors.ts";
import type { LayerDelta } from "../train/layer_delta.ts";
import { pathExists } from "../path_checks.ts";
import { hashFile } from "../store/artifact_store.ts";

export const DELTA_FILE = "delta.safetensors";
const HASH_PREFIX = "scalora-delta-v1";
const F16_MAX = 65504;

export interface LayerInfo {
  /** HF layer name without `.weight`. */
  name: string;
  format: LayerFormat;
  m: number;
  n: number;
  /** Total rank K of the log (also recorded for dense layers). */
  rank: number;
  /** Storage dtype of this layer's tensors. */
  dtype: FloatDtype;
}

export interface WrittenArtifact {
  hash: string;
  /** Directory relative to the data dir: `versions/<hash>`. */
  relDir: string;
  sizeBytes: number;
  layers: LayerInfo[];
}

export interface WriteArtifactOptions {
  /** Dense storage dtype; "auto" = F16 unless a value exceeds its range. Default "auto". */
  denseDtype?: "F16" | "BF16" | "auto";
}

export function artifactDir(dataDir: string, hash: string): string {
  return `${dataDir}/versions/${hash}`;
}

/** Writes (or finds) the artifact of `deltas` on `baseModel`. */
export async function writeDeltaArtifact(
  dataDir: string,
  baseModel: string,
  deltas: readonly LayerDelta[],
  opts: WriteArtifactOptions = {},
): Promise<WrittenArtifact> {
  const ordered = [...deltas].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const layers: LayerInfo[] = [];
  const tensors: TensorToWrite[] = [];
  for (const d of ordered) {
    const format = chooseFormat(d);
    const { U, V, K } = concatFactors(d);
    if (format === "lowrank") {
      layers.push({ name: d.name, format, m: d.m, n: d.n, rank: K, dtype: "F32" });
      tensors.push({ name: `${d.name}.lora_U`, shape: [d.m, K], data: U, dtype: "F32" });
      tensors.push({ name: `${d.name}.lora_V`, shape: [d.n, K], data: V, dtype: "F32" });
    } else {
      const dense = addLowRank(null, U, V, d.m, d.n, K);
      const dtype = denseDtype(dense, opts.denseDtype ?? "auto");
      layers.push({ name: d.name, format, m: d.m, n: d.n, rank: K, dtype });
      tensors.push({ name: `${d.name}.delta`, shape: [d.m, d.n], data: dense, dtype });
    }
  }
  const versionsDir = `${dataDir}/versions`;
  await Deno.mkdir(versionsDir, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: versionsDir, prefix: ".build-" });
  try {
    const metadata = { format: "scalora-delta", base: baseModel, layers: JSON.stringify(layers) };
    await writeSafetensors(`${tmp}/${DELTA_FILE}`, tensors, { dtype: "F32", metadata });
    const hash = await hashArtifactFile(`${tmp}/${DELTA_FILE}`, baseModel);
    const sizeBytes = (await Deno.stat(`${tmp}/${DELTA_FILE}`)).size;
    const target = artifactDir(dataDir, hash);
    if (!(await pathExists(`${target}/${DELTA_FILE}`))) {
      try {
        await Deno.rename(tmp, target);
      } catch (e) {
        // A concurrent writer of the same content won the rename.
        if (!(await pathExists(`${target}/${DELTA_FILE}`))) throw e;
      }
    }
    return { hash, relDir: `versions/${hash}`, sizeBytes, layers };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

function denseDtype(dense: Float32Array, choice: "F16" | "BF16" | "auto"): "F16" | "BF16" {
  if (choice !== "auto") return choice;
  const max = maxAbs(dense);
  // Only values past the f16 range need bf16's (NaN is NaN in either).
  return max > F16_MAX ? "BF16" : "F16";
}

/** The content hash of an artifact file (streamed; the file is never held whole). */
export async function hashArtifactFile(path: string, baseModel: string): Promise<string> {
  const h = createHash("sha256");
  h.update(`${HASH_PREFIX}\0${baseModel}\0`);
  return (await hashFile(h, path)).digest("hex");
}

/** An opened artifact: per-layer access to the stored delta. */
export class DeltaArtifact {
  private constructor(
    readonly path: string,
    readonly baseModel: string,
    /** Keyed by weight name (`….weight`). */
    readonly layers: ReadonlyMap<string, LayerInfo>,
    readonly file: SafetensorsFile,
  ) {}

  static async open(path: string): Promise<DeltaArtifact> {
    let file: SafetensorsFile;
    try {
      file = await SafetensorsFile.open(path);
    } catch (e) {
      throw new RegistryError("load_failed", `version artifact ${path} cannot be opened: ${e}`, null, { cause: e });
    }
    const meta = file.metadata;
    let infos: LayerInfo[] | null = null;
    try {
      if (meta?.format === "scalora-delta" && meta.base !== undefined) infos = JSON.parse(meta.layers) as LayerInfo[];
    } catch {
      infos = null;
    }
    if (!meta?.base || !Array.isArray(infos)) {
      file.close();
      throw new RegistryError("load_failed", `${path} is not a scalora delta artifact`);
    }
    return new DeltaArtifact(path, meta.base, new Map(infos.map((l) => [weightName(l.name), l])), file);
  }

  /** W_base + delta for a weight this artifact adapts (W unchanged for others). */
  async apply(weight: string, base: Float32Array): Promise<Float32Array> {
    const info = this.layers.get(weight);
    if (!info) return base;
    if (info.format === "dense") return addDense(base, await this.file.read(`${info.name}.delta`));
    const U = await this.file.read(`${info.name}.lora_U`);
    const V = await this.file.read(`${info.name}.lora_V`);
    return addLowRank(base, U, V, info.m, info.n, info.rank);
  }

  close(): void {
    this.file.close();
  }
}
