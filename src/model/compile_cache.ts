/**
 * Compiled serving models, cached under DATA_DIR by a key over the checkpoint's
 * files and the compiler version, so a restart reuses the ONNX model instead
 * of rewriting it. Each entry is a complete transformers.js model directory.
 */
import { encodeHex } from "./hex.ts";
import type { ComputeDType } from "./decoder_graph.ts";
import { exportModelDirectory, servingModelPath, type WeightSource } from "./serving_graph.ts";

/** Bump when the graph a checkpoint compiles to changes. */
export const COMPILER_VERSION = 2;

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
  try {
    await Deno.stat(servingModelPath(target, dtype));
    return target;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(cacheRoot, { recursive: true });
  // Build beside the target and rename, so a crash never leaves a half-written entry.
  const tmp = await Deno.makeTempDir({ dir: cacheRoot, prefix: ".build-" });
  try {
    await exportModelDirectory(source, dir, tmp, dtype);
    await Deno.rename(tmp, target);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    // A concurrent builder may have won the rename.
    try {
      await Deno.stat(servingModelPath(target, dtype));
    } catch {
      throw e;
    }
  }
  return target;
}
