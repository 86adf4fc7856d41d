/** Existence checks on the local filesystem, shared by loaders, caches and artifacts. */

/** True when `path` exists (file or directory); errors other than NotFound propagate. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** True when `path` is a readable regular file; any error reads as "no". */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}
