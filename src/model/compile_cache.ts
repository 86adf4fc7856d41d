/**
 * Compiled serving models, cached under DATA_DIR by a key over the checkpoint's
 * files and the compiler version, so a restart reuses the ONNX model instead
 * of rewriting it. Each entry is a complete transformers.js model directory.
 */
import { encodeHex } from "./hex.ts";
import type { ComputeDType } from "./decoder_graph.ts";
import { pathExists } from "../path_checks.ts";
import { exportModelDirectory, servingModelPath, type WeightSource } from "./serving_graph.ts";

/** Bump when the graph a checkpoint compiles to changes. */
export const COMPILER_VERSION = 6;

async function fileStamp(path: string): Promise<string> {
  const st = await Deno.stat(path);
  return `${path}:${st.size}:${st.mtime?.getTime() ?? 0}`;
}

export async function compileKey(dir: string, dtype: ComputeDType): Promise<string> {
  const stamps: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /\.(safetensors|json)$/.test(e.name)) stamps.push(await fileStamp(`${dir}/${e.name}`));
  }
  stamps.sort();
  const text = JSON.stringify({ v: COMPILER_VERSION, dtype, dir: await Deno.realPath(dir), stamps });
  return encodeHex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))).slice(0, 24);
}

/** Returns the compiled directory for `source` (from checkpoint dir `dir`), building it if absent. */
export async function compiledModelDir(
  source: WeightSource,
  dir: string,
  cacheRoot: string,
  dtype: ComputeDType,
): Promise<string> {
  const target = `${cacheRoot}/${await compileKey(dir, dtype)}`;
  return await buildModelDirOnce(target, dtype, (tmp) => exportModelDirectory(source, dir, tmp, dtype));
}

/**
 * Builds the model directory `target` with `build(tmpDir)` unless its serving
 * model exists already. Built beside the target and renamed into place, so a
 * crash never leaves a half-written entry and concurrent builders agree.
 */
export async function buildModelDirOnce(
  target: string,
  dtype: ComputeDType,
  build: (dir: string) => Promise<void>,
): Promise<string> {
  if (await pathExists(servingModelPath(target, dtype))) return target;
  const root = target.slice(0, target.lastIndexOf("/"));
  await Deno.mkdir(root, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: root, prefix: ".build-" });
  try {
    await build(tmp);
    await Deno.rename(tmp, target);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    // A concurrent builder may have won the rename.
    if (!(await pathExists(servingModelPath(target, dtype)))) throw e;
  }
  return target;
}
