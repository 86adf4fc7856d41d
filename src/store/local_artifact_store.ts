/**
 * The local backend of the artifact store: key `a/b/c` is `<root>/a/b/c`.
 * With root = DATA_DIR (the default) the keys are exactly the paths the
 * server has always used, so local operation is unchanged: putFile of a path
 * that already is the key's file is a no-op, and a move is a rename.
 *
 * sha256s are not recorded beside the files; a read is checked against the
 * sha256 the caller expects (content-addressed keys), else only its size.
 */
import { dirname, join, resolve } from "node:path";
import {
  type ArtifactInfo,
  type ArtifactRead,
  type ArtifactStore,
  checkKey,
  type PutFileOptions,
  verifyingStream,
  writeVerified,
} from "./artifact_store.ts";

export class LocalArtifactStore implements ArtifactStore {
  readonly kind = "local" as const;
  readonly remote = false;
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get location(): string {
    return this.root;
  }

  pathOf(key: string): string {
    return join(this.root, checkKey(key));
  }

  async head(key: string): Promise<ArtifactInfo | null> {
    try {
      const st = await Deno.stat(this.pathOf(key));
      return st.isFile ? { key, bytes: st.size, sha256: null } : null;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== null;
  }

  async putFile(key: string, path: string, opts: PutFileOptions = {}): Promise<ArtifactInfo> {
    const target = this.pathOf(key);
    const bytes = (await Deno.stat(path)).size;
    if (resolve(path) === target) return { key, bytes, sha256: opts.sha256 ?? null };
    await Deno.mkdir(dirname(target), { recursive: true });
    if (opts.move) {
      await Deno.rename(path, target);
    } else {
      const tmp = `${target}.put-${crypto.randomUUID().slice(0, 8)}`;
      try {
        await Deno.copyFile(path, tmp);
        await Deno.rename(tmp, target);
      } catch (e) {
        await Deno.remove(tmp).catch(() => {});
        throw e;
      }
    }
    return { key, bytes, sha256: opts.sha256 ?? null };
  }

  async putBytes(key: string, bytes: Uint8Array): Promise<ArtifactInfo> {
    const target = this.pathOf(key);
    await Deno.mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.put-${crypto.randomUUID().slice(0, 8)}`;
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, target);
    return { key, bytes: bytes.byteLength, sha256: null };
  }

  async get(key: string, opts: { sha256?: string } = {}): Promise<ArtifactRead | null> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.pathOf(key), { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    const { size } = await file.stat();
    const sha256 = opts.sha256 ?? null;
    return {
      stream: file.readable.pipeThrough(verifyingStream(key, { sha256, bytes: size })),
      bytes: size,
      sha256,
    };
  }

  async getFile(key: string, path: string, opts: { sha256?: string } = {}): Promise<boolean> {
    if (resolve(path) === this.pathOf(key)) return await this.exists(key);
    const read = await this.get(key, opts);
    if (!read) return false;
    await writeVerified(read.stream, path);
    return true;
  }

  async *list(prefix: string): AsyncIterable<ArtifactInfo> {
    const base = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
    const dir = base === "" ? this.root : join(this.root, checkKey(base));
    const out: ArtifactInfo[] = [];
    const walk = async (abs: string, rel: string): Promise<void> => {
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(abs));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return;
        throw e;
      }
      for (const e of entries) {
        const childRel = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory) await walk(`${abs}/${e.name}`, childRel);
        else if (e.isFile) {
          const st = await Deno.stat(`${abs}/${e.name}`).catch(() => null);
          if (st) out.push({ key: base ? `${base}/${childRel}` : childRel, bytes: st.size, sha256: null });
        }
      }
    };
    await walk(dir, "");
    yield* out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    await Deno.remove(this.pathOf(key)).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  async deletePrefix(prefix: string): Promise<number> {
    if (!prefix.endsWith("/")) throw new Error(`a prefix to delete ends with "/": ${JSON.stringify(prefix)}`);
    let n = 0;
    for await (const _ of this.list(prefix)) n++;
    const base = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
    await Deno.remove(join(this.root, checkKey(base)), { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    return n;
  }

  async check(): Promise<void> {
    await Deno.mkdir(this.root, { recursive: true });
  }

  close(): void {}
}
