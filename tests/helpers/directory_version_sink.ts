/**
 * A VersionSink that writes each version as one JSON file (deltas included),
 * so a test can read what a server process registered, even after killing it.
 * Writes are atomic (temp file + rename): a kill -9 leaves whole files only.
 */
import type { NewVersion } from "../../src/registry/types.ts";
import type { LayerDelta } from "../../src/train/layer_delta.ts";
import type { VersionSink } from "../../src/jobs/ports.ts";

interface StoredVersion extends Omit<NewVersion, "deltas"> {
  deltas: { name: string; m: number; n: number; terms: { k: number; U: number[]; V: number[] }[] }[];
}

export class DirectoryVersionSink implements VersionSink {
  constructor(readonly dir: string) {}

  #path(name: string): string {
    return `${this.dir}/${encodeURIComponent(name)}.json`;
  }

  async createVersion(v: NewVersion): Promise<{ name: string }> {
    await Deno.mkdir(this.dir, { recursive: true });
    const stored: StoredVersion = {
      ...v,
      deltas: v.deltas.map((d) => ({
        name: d.name,
        m: d.m,
        n: d.n,
        terms: d.terms.map((t) => ({ k: t.k, U: Array.from(t.U), V: Array.from(t.V) })),
      })),
    };
    const tmp = `${this.#path(v.name)}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(stored));
    await Deno.rename(tmp, this.#path(v.name));
    return { name: v.name };
  }

  async hasVersion(name: string): Promise<boolean> {
    return await Deno.stat(this.#path(name)).then(() => true, () => false);
  }

  /** The version as written (float32 values round-trip exactly through JSON). */
  async read(name: string): Promise<NewVersion> {
    const s = JSON.parse(await Deno.readTextFile(this.#path(name))) as StoredVersion;
    const deltas: LayerDelta[] = s.deltas.map((d) => ({
      ...d,
      terms: d.terms.map((t) => ({ k: t.k, U: Float32Array.from(t.U), V: Float32Array.from(t.V) })),
    }));
    return { ...s, deltas };
  }
}
