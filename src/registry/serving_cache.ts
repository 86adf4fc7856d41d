/**
 * Serving directories of registry models, cached under DATA_DIR/compiled:
 *
 * - `patched/<key>`: base compiled model + graph patch (+ a version's delta),
 *   keyed by the patch format, the base's compiled directory, the dtype and
 *   the version's content hash. Kilobytes to write (see version_graph.ts).
 * - `full/<key>`: a self-contained model directory compiled from the version's
 *   merged weights (buildServingGraph over the version WeightSource), keyed
 *   by the compiler version too; what transformers.js needs, and the slow
 *   path (writes the whole model).
 *
 * Entries are built atomically (`buildModelDirOnce`).
 */
import { createHash } from "node:crypto";
import { buildModelDirOnce, COMPILER_VERSION } from "../model/compile_cache.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { exportModelDirectory, type WeightSource } from "../model/serving_graph.ts";
import type { DeltaArtifact } from "./delta_artifact.ts";
import { writePatchedServingModel } from "./version_graph.ts";

/** Bump when the patch a model compiles to changes. */
export const PATCH_FORMAT = 2;

function key(parts: Record<string, unknown>): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 24);
}

export interface PatchedEntry {
  cacheRoot: string;
  baseCompiledDir: string;
  dtype: ComputeDType;
  /** The version's delta and content hash; null for the base model itself. */
  delta: { artifact: DeltaArtifact; hash: string } | null;
}

/** Where `patchedServingDir` builds (or finds) the entry for a base compiled dir, dtype and content hash. */
export async function patchedServingPath(
  e: { cacheRoot: string; baseCompiledDir: string; dtype: ComputeDType; hash: string | null },
): Promise<string> {
  const k = key({
    v: PATCH_FORMAT,
    base: await Deno.realPath(e.baseCompiledDir),
    dtype: e.dtype,
    hash: e.hash ?? undefined,
  });
  return `${e.cacheRoot}/patched/${k}`;
}

export async function patchedServingDir(e: PatchedEntry): Promise<string> {
  const target = await patchedServingPath({ ...e, hash: e.delta?.hash ?? null });
  return await buildModelDirOnce(target, e.dtype, async (dir) => {
    await writePatchedServingModel(e.baseCompiledDir, e.dtype, e.delta?.artifact ?? null, dir);
  });
}

export interface FullEntry {
  cacheRoot: string;
  /** Checkpoint directory of the base (config and tokenizer files are copied from it). */
  baseDir: string;
  dtype: ComputeDType;
  hash: string;
  source: WeightSource;
}

/** Where `fullServingDir` builds (or finds) the entry for a base checkpoint dir, dtype and content hash. */
export async function fullServingPath(e: Omit<FullEntry, "source">): Promise<string> {
  const k = key({
    v: PATCH_FORMAT,
    compiler: COMPILER_VERSION,
    full: true,
    base: await Deno.realPath(e.baseDir),
    dtype: e.dtype,
    hash: e.hash,
  });
  return `${e.cacheRoot}/full/${k}`;
}

export async function fullServingDir(e: FullEntry): Promise<string> {
  return await buildModelDirOnce(await fullServingPath(e), e.dtype, async (dir) => {
    await exportModelDirectory(e.source, e.baseDir, dir, e.dtype);
  });
}
