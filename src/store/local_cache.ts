/**
 * A replica's bounded local cache of what it needs to run when artifacts
 * live in an object store: downloaded version deltas (`versions/<hash>`),
 * compiled serving directories (`compiled/patched/<key>`, `compiled/full/<key>`)
 * and export builds (`exports/<id>`), all rebuilt from the store (or from the
 * base model) when missing, so a fresh disk is only a slower start.
 *
 * Entries are the direct children of the cached roots. Past `budgetBytes`
 * the least recently used ones go, never one that is pinned (the serving
 * directory of a loaded engine, a delta being compiled). Hard-linked files
 * (serving directories link the base's weights and the delta) count once
 * per link set: size / link count.
 */
import { join } from "node:path";

export interface LocalCacheOptions {
  /** The data directory. */
  root: string;
  budgetBytes: number;
  /** Directories under `root` whose children are entries. */
  roots: readonly string[];
  log?: (message: string) => void;
}

export class LocalCache {
  readonly root: string;
  readonly budgetBytes: number;
  readonly #roots: readonly string[];
  readonly #lastUsed = new Map<string, number>();
  readonly #pins = new Map<string, number>();
  readonly #log: (message: string) => void;
  #enforcing: Promise<string[]> | null = null;
  #again = false;

  constructor(opts: LocalCacheOptions) {
    this.root = opts.root.replace(/\/+$/, "");
    this.budgetBytes = opts.budgetBytes;
    this.#roots = opts.roots.map((r) => r.replace(/^\/+|\/+$/g, ""));
    this.#log = opts.log ?? ((m) => console.error(`[cache] ${m}`));
  }

  /** The entry a path belongs to (null: not under a cached root). */
  entryOf(path: string): string | null {
    const rel = path.startsWith(`${this.root}/`) ? path.slice(this.root.length + 1) : null;
    if (rel === null) return null;
    for (const r of this.#roots) {
      if (rel.startsWith(`${r}/`)) {
        const name = rel.slice(r.length + 1).split("/")[0];
        return name ? join(this.root, r, name) : null;
      }
    }
    return null;
  }

  /** Marks the entry of `path` as used now. */
  touch(path: string): void {
    const e = this.entryOf(path);
    if (e) this.#lastUsed.set(e, Date.now());
  }

  /** Keeps the entry of `path` until the returned function is called. */
  pin(path: string): () => void {
    const e = this.entryOf(path);
    if (!e) return () => {};
    this.#pins.set(e, (this.#pins.get(e) ?? 0) + 1);
    this.#lastUsed.set(e, Date.now());
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#pins.get(e) ?? 1) - 1;
      if (n <= 0) this.#pins.delete(e);
      else this.#pins.set(e, n);
    };
  }

  /** Bytes the cached entries take now. */
  async usage(): Promise<number> {
    let total = 0;
    for (const e of await this.#entries()) total += e.bytes;
    return total;
  }

  /** Evicts least recently used, unpinned entries until the cache fits; returns what went. Serialized. */
  enforce(): Promise<string[]> {
    if (this.#enforcing) {
      this.#again = true;
      return this.#enforcing;
    }
    const run = async (): Promise<string[]> => {
      const out: string[] = [];
      do {
        this.#again = false;
        out.push(...await this.#enforceOnce());
      } while (this.#again);
      return out;
    };
    this.#enforcing = run().finally(() => (this.#enforcing = null));
    return this.#enforcing;
  }

  async #enforceOnce(): Promise<string[]> {
    const entries = await this.#entries();
    let total = entries.reduce((s, e) => s + e.bytes, 0);
    if (total <= this.budgetBytes) return [];
    const evicted: string[] = [];
    entries.sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of entries) {
      if (total <= this.budgetBytes) break;
      if (this.#pins.has(e.path)) continue;
      try {
        await Deno.remove(e.path, { recursive: true });
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) {
          this.#log(`evicting ${e.path} failed: ${err}`);
          continue;
        }
      }
      this.#lastUsed.delete(e.path);
      total -= e.bytes;
      evicted.push(e.path);
    }
    if (evicted.length > 0) {
      this.#log(`evicted ${evicted.length} entr${evicted.length > 1 ? "ies" : "y"}; ${total} bytes cached`);
    }
    return evicted;
  }

  async #entries(): Promise<{ path: string; bytes: number; lastUsed: number }[]> {
    const out: { path: string; bytes: number; lastUsed: number }[] = [];
    for (const r of this.#roots) {
      const dir = join(this.root, r);
      let children: Deno.DirEntry[];
      try {
        children = await Array.fromAsync(Deno.readDir(dir));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      for (const c of children) {
        // Builds in progress (`.build-…`, `.download-…`) are not entries yet.
        if (c.name.startsWith(".")) continue;
        const path = join(dir, c.name);
        const st = await Deno.stat(path).catch(() => null);
        if (!st) continue;
        out.push({
          path,
          bytes: await sizeOf(path, st),
          lastUsed: this.#lastUsed.get(path) ?? st.mtime?.getTime() ?? 0,
        });
      }
    }
    return out;
  }
}

async function sizeOf(path: string, st: Deno.FileInfo): Promise<number> {
  if (st.isFile) return st.size / Math.max(1, st.nlink ?? 1);
  if (!st.isDirectory) return 0;
  let total = 0;
  for await (const e of Deno.readDir(path)) {
    const child = `${path}/${e.name}`;
    const cst = await Deno.lstat(child).catch(() => null);
    if (cst) total += await sizeOf(child, cst);
  }
  return total;
}
