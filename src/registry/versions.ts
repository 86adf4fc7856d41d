/**
 * Model versions: `createVersion` (the job runner's entry point) stores a
 * delta as a content-addressed artifact, compiles its serving directory and
 * records an immutable row; the rest reads versions back, builds their
 * weights/serving directories, and exports them.
 *
 * Idempotent by name + content hash: re-creating a version with the same
 * delta returns the existing row; a different delta under a taken name is a
 * conflict.
 *
 * Artifacts go through the artifact store: by default the data directory
 * itself (`versions/<hash>/delta.safetensors`, `exports/<id>/<name>/…`);
 * with an object store (`ARTIFACT_STORE=s3://…`) the delta is uploaded
 * before the row is written (a row always names stored bytes), exports are
 * uploaded and downloaded from there, and the data directory only caches
 * deltas and serving directories (bounded by `cache`), fetched and checked
 * (sha256, then the content hash) on first use.
 */
import { onDiskFull } from "../disk_space.ts";
import { pathExists } from "../path_checks.ts";
import { ArtifactIntegrityError, type ArtifactStore } from "../store/artifact_store.ts";
import { LocalArtifactStore } from "../store/local_artifact_store.ts";
import type { LocalCache } from "../store/local_cache.ts";
import { weightLayout } from "../model/layout.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { StoreError } from "../store/errors.ts";
import type { Store } from "../store/store.ts";
import type { VersionListRequest, VersionRecord } from "../store/version_queries.ts";
import type { Page } from "../store/pagination.ts";
import type { BaseModels } from "./base_models.ts";
import {
  DELTA_FILE,
  DeltaArtifact,
  hashArtifactFile,
  type LayerInfo,
  type WriteArtifactOptions,
  writeDeltaArtifact,
} from "./delta_artifact.ts";
import { validateDeltas } from "./delta_codec.ts";
import { errorText, RegistryError } from "./errors.ts";
import { fullServingDir, fullServingPath, patchedServingDir, patchedServingPath } from "./serving_cache.ts";
import type { NewVersion, VersionKind } from "./types.ts";
import {
  type ExportedFile,
  exportedFiles,
  type ExportFormat,
  type ExportName,
  exportName,
  exportVersionDirectory,
} from "./version_export.ts";
import { versionWeightSource } from "./version_source.ts";

export type CompileMode = "patch" | "full";

export interface VersionServiceOptions {
  store: Store;
  bases: BaseModels;
  /** Compile the serving directory inside createVersion (before the job reports success). Default true. */
  compileOnCreate?: boolean;
  /** How serving directories are built. Default "patch" (see version_graph.ts). */
  compileMode?: CompileMode;
  denseDtype?: WriteArtifactOptions["denseDtype"];
  /** Where deltas and exports are stored. Default: the data directory (a LocalArtifactStore on it). */
  artifacts?: ArtifactStore;
  /** The bounded local cache of a replica on an object store (deltas, serving directories, exports). */
  cache?: LocalCache;
}

/** What the row's `metadata` holds (the row itself is immutable). */
export interface VersionMetadata {
  kind: VersionKind;
  jobId: string;
  layers: LayerInfo[];
  metrics: Record<string, unknown>;
}

export function versionMetadata(record: VersionRecord): VersionMetadata {
  const m = record.metadata as Partial<VersionMetadata>;
  return {
    kind: m.kind === "checkpoint" ? "checkpoint" : "final",
    jobId: typeof m.jobId === "string" ? m.jobId : record.jobId ?? "",
    layers: Array.isArray(m.layers) ? m.layers : [],
    metrics: m.metrics && typeof m.metrics === "object" ? m.metrics : {},
  };
}

export class VersionService {
  readonly store: Store;
  readonly bases: BaseModels;
  readonly compileMode: CompileMode;
  readonly #compileOnCreate: boolean;
  readonly #denseDtype: WriteArtifactOptions["denseDtype"];
  readonly artifacts: ArtifactStore;
  readonly cache: LocalCache | null;
  readonly #listeners = new Set<(v: VersionRecord) => void>();
  readonly #deletedListeners = new Set<(v: VersionRecord) => void | Promise<void>>();
  /** Artifact removals still running (after deletes: they wait for engines to drain). */
  readonly #collecting = new Set<Promise<void>>();
  /** Downloads in flight, by local path (concurrent users of one delta share one). */
  readonly #fetching = new Map<string, Promise<void>>();

  constructor(opts: VersionServiceOptions) {
    this.store = opts.store;
    this.bases = opts.bases;
    this.compileMode = opts.compileMode ?? "patch";
    this.#compileOnCreate = opts.compileOnCreate ?? true;
    this.#denseDtype = opts.denseDtype;
    this.artifacts = opts.artifacts ?? new LocalArtifactStore(this.bases.dataDir);
    this.cache = opts.cache ?? null;
  }

  get dataDir(): string {
    return this.bases.dataDir;
  }

  /** Called with every version this service creates (the registry's catalog listens). */
  onCreated(listener: (v: VersionRecord) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Called with every version this service deletes, before its files go (the
   * registry drops its engine); the files go once every returned promise
   * settled (the engine drained: in-flight requests finish first).
   */
  onDeleted(listener: (v: VersionRecord) => void | Promise<void>): () => void {
    this.#deletedListeners.add(listener);
    return () => this.#deletedListeners.delete(listener);
  }

  async createVersion(v: NewVersion): Promise<VersionRecord> {
    if (!/^ft:[^\s]+$/.test(v.name) || v.name.length > 256) {
      throw new RegistryError(
        "invalid_delta",
        `version name must look like ft:<base>:<suffix>:<job-id>, got ${JSON.stringify(v.name)}`,
        "name",
      );
    }
    const ckpt = await this.bases.openCheckpoint(v.baseModel).catch((e) => {
      throw new RegistryError(
        "not_found",
        `base model ${v.baseModel} cannot be opened: ${errorText(e)}`,
        "base_model",
        {
          cause: e,
        },
      );
    });
    try {
      validateDeltas(v.deltas, weightLayout(ckpt.config));
    } finally {
      ckpt.close();
    }
    const written = await onDiskFull(
      "versions",
      () => writeDeltaArtifact(this.dataDir, v.baseModel, v.deltas, { denseDtype: this.#denseDtype }),
    );
    // Stored before any row names it: a replica that sees the row can fetch the bytes.
    await this.#storeDelta(written.hash);
    const existing = await this.store.versions.find(v.name);
    if (existing) return this.#sameOrConflict(existing, written.hash, v.name);
    if (this.#compileOnCreate) await this.#compile(v.baseModel, written.hash);

    const metadata: VersionMetadata = {
      kind: v.kind,
      jobId: v.jobId,
      layers: written.layers,
      metrics: v.metrics ?? {},
    };
    let record: VersionRecord;
    try {
      record = await this.store.versions.create({
        name: v.name,
        baseModel: v.baseModel,
        jobId: v.jobId,
        deltaFormat: written.layers.every((l) => l.format === "lowrank") ? "lowrank" : "dense",
        artifactPath: `${written.relDir}/${DELTA_FILE}`,
        contentHash: written.hash,
        sizeBytes: written.sizeBytes,
        metadata: { ...metadata },
      });
    } catch (e) {
      // Lost a race with another creator of the same name.
      if (e instanceof StoreError && e.kind === "conflict") {
        const row = await this.store.versions.find(v.name);
        if (row) return this.#sameOrConflict(row, written.hash, v.name);
      }
      throw e;
    }
    for (const listener of this.#listeners) listener(record);
    return record;
  }

  #sameOrConflict(row: VersionRecord, hash: string, name: string): VersionRecord {
    if (row.contentHash === hash) return row;
    throw new RegistryError(
      "conflict",
      `Model version ${name} already exists with different content (hash ${row.contentHash.slice(0, 12)}, got ${
        hash.slice(0, 12)
      })`,
      "name",
    );
  }

  /** By id (`ftver-…`) or name (`ft:…`). */
  async get(idOrName: string): Promise<VersionRecord> {
    const row = await this.store.versions.find(idOrName);
    if (!row) throw new RegistryError("not_found", `No such model version: ${idOrName}`, "model");
    return row;
  }

  find(idOrName: string): Promise<VersionRecord | null> {
    return this.store.versions.find(idOrName);
  }

  list(req: VersionListRequest): Promise<Page<VersionRecord>> {
    return this.store.versions.list(req);
  }

  /**
   * Deletes a version and frees what it took: its delta artifact (unless
   * another version stores the same content), its serving directories and
   * its exports, in the artifact store and on local disk. Refuses (409)
   * while an alias points at it or its job has not ended. Listeners (the
   * registry: catalog and engine) hear of it first; the artifacts go once
   * they settled (a loaded engine drained), in the background: `collected()`
   * resolves when they are gone.
   */
  async delete(idOrName: string): Promise<VersionRecord> {
    const record = await this.store.versions.delete(idOrName);
    const drained = Promise.allSettled([...this.#deletedListeners].map(async (l) => await l(record)));
    this.#track(drained.then(() => this.#collect(record)));
    return record;
  }

  /** Resolves once the artifacts of every deleted version are removed. */
  async collected(): Promise<void> {
    while (this.#collecting.size > 0) await Promise.allSettled([...this.#collecting]);
  }

  #track(p: Promise<void>): void {
    const tracked = p.catch((e) => console.error(`removing a deleted version's artifacts failed: ${errorText(e)}`))
      .finally(() => this.#collecting.delete(tracked));
    this.#collecting.add(tracked);
  }

  async #collect(record: VersionRecord): Promise<void> {
    const unreferenced = (await this.store.versions.countByHash(record.contentHash)) === 0;
    if (unreferenced && this.artifacts.remote) await this.artifacts.delete(deltaKey(record.contentHash));
    if (this.artifacts.remote) await this.artifacts.deletePrefix(`exports/${record.id}/`);
    await this.purgeLocal(record, unreferenced);
  }

  /**
   * Removes a version's local files: its delta (when no other version stores
   * the same content), serving directories and exports. A replica runs this
   * for versions deleted anywhere (the registry, once their engine closed).
   * `unreferenced`: whether no version stores the same content (asked of the store when not given).
   */
  async purgeLocal(record: VersionRecord, unreferenced?: boolean): Promise<void> {
    const remove = (path: string) =>
      Deno.remove(path, { recursive: true }).catch((e) => {
        if (!(e instanceof Deno.errors.NotFound)) console.error(`deleting ${record.name}: cannot remove ${path}: ${e}`);
      });
    if (unreferenced ?? (await this.store.versions.countByHash(record.contentHash)) === 0) {
      await remove(`${this.dataDir}/versions/${record.contentHash}`);
      // Serving directories are keyed by the base's compiled directory: only a base served here has one.
      if (this.bases.has(record.baseModel)) {
        const cacheRoot = `${this.dataDir}/compiled`;
        const prepared = await this.bases.prepare(record.baseModel).catch(() => null);
        if (prepared) {
          await remove(
            await patchedServingPath({
              cacheRoot,
              baseCompiledDir: prepared.compiledDir,
              dtype: prepared.dtype,
              hash: record.contentHash,
            }),
          );
          await remove(
            await fullServingPath({
              cacheRoot,
              baseDir: prepared.dir,
              dtype: prepared.dtype,
              hash: record.contentHash,
            }),
          );
        }
      }
    }
    await remove(`${this.dataDir}/exports/${record.id}`);
  }

  /** Every version, oldest first (the registry's catalog at start). */
  async all(): Promise<VersionRecord[]> {
    const out: VersionRecord[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.store.versions.list({ limit: 1000, order: "asc", after });
      out.push(...page.data);
      if (!page.hasMore || page.data.length === 0) return out;
      after = page.data[page.data.length - 1].id;
    }
  }

  artifactPath(record: VersionRecord): string {
    return `${this.dataDir}/${record.artifactPath}`;
  }

  async openArtifact(record: VersionRecord): Promise<DeltaArtifact> {
    await this.#ensureDelta(record.contentHash, record.baseModel);
    return await DeltaArtifact.open(this.artifactPath(record));
  }

  /** Uploads a delta written locally to an object store (a no-op for the local store, or when already there). */
  async #storeDelta(hash: string): Promise<void> {
    if (!this.artifacts.remote || await this.artifacts.exists(deltaKey(hash))) return;
    await this.artifacts.putFile(deltaKey(hash), `${this.dataDir}/${deltaKey(hash)}`);
  }

  /**
   * Makes `versions/<hash>/delta.safetensors` present locally: from an object
   * store when this replica lacks it (a fresh disk, another replica's
   * version), checked twice: the object's sha256 while it streams, then the
   * version's content hash over the file.
   */
  async #ensureDelta(hash: string, baseModel: string): Promise<void> {
    const path = `${this.dataDir}/${deltaKey(hash)}`;
    if (await pathExists(path)) {
      this.cache?.touch(path);
      return;
    }
    if (!this.artifacts.remote) return; // DeltaArtifact.open reports the missing file
    let fetching = this.#fetching.get(path);
    if (!fetching) {
      fetching = this.#fetchDelta(hash, baseModel, path).finally(() => this.#fetching.delete(path));
      this.#fetching.set(path, fetching);
    }
    await fetching;
  }

  async #fetchDelta(hash: string, baseModel: string, path: string): Promise<void> {
    const tmp = `${this.dataDir}/versions/.download-${crypto.randomUUID().slice(0, 8)}`;
    try {
      const found = await onDiskFull("versions", () => this.artifacts.getFile(deltaKey(hash), `${tmp}/${DELTA_FILE}`));
      if (!found) {
        throw new RegistryError(
          "load_failed",
          `the delta of ${hash.slice(0, 12)} is missing from ${this.artifacts.location}`,
        );
      }
      const got = await hashArtifactFile(`${tmp}/${DELTA_FILE}`, baseModel);
      if (got !== hash) {
        throw new ArtifactIntegrityError(
          `${deltaKey(hash)} from ${this.artifacts.location} has content hash ${got.slice(0, 12)}, expected ${
            hash.slice(0, 12)
          }`,
        );
      }
      await Deno.rename(tmp, `${this.dataDir}/versions/${hash}`).catch(async (e) => {
        if (!await pathExists(path)) throw e; // else a concurrent fetch won
      });
      this.cache?.touch(path);
      this.#enforceCache();
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  }

  #enforceCache(): void {
    this.cache?.enforce().catch((e) => console.error(`local cache eviction failed: ${errorText(e)}`));
  }

  /** The serving directory of a version (built and cached on first use). */
  async servingDir(record: VersionRecord, mode: CompileMode = this.compileMode): Promise<string> {
    if (mode === "patch") return await this.#compile(record.baseModel, record.contentHash);
    const artifact = await this.openArtifact(record);
    const ckpt = await this.bases.openCheckpoint(record.baseModel);
    try {
      return await onDiskFull("serving directories", () =>
        fullServingDir({
          cacheRoot: `${this.dataDir}/compiled`,
          baseDir: ckpt.dir,
          dtype: this.bases.dtype,
          hash: record.contentHash,
          source: versionWeightSource(ckpt, artifact),
        }));
    } finally {
      ckpt.close();
      artifact.close();
    }
  }

  /** The serving directory of a base model in the same (patched) form as its versions. */
  async baseServingDir(baseId: string): Promise<string> {
    const prepared = await this.bases.prepare(baseId);
    return await onDiskFull("serving directories", () =>
      patchedServingDir({
        cacheRoot: `${this.dataDir}/compiled`,
        baseCompiledDir: prepared.compiledDir,
        dtype: prepared.dtype,
        delta: null,
      }));
  }

  async #compile(baseModel: string, hash: string): Promise<string> {
    const prepared = await this.bases.prepare(baseModel);
    const cacheRoot = `${this.dataDir}/compiled`;
    const target = await patchedServingPath({
      cacheRoot,
      baseCompiledDir: prepared.compiledDir,
      dtype: prepared.dtype,
      hash,
    });
    if (await pathExists(target)) {
      this.cache?.touch(target);
      return target;
    }
    await this.#ensureDelta(hash, baseModel);
    const deltaPath = `${this.dataDir}/${deltaKey(hash)}`;
    const unpin = this.cache?.pin(deltaPath) ?? (() => {});
    const artifact = await DeltaArtifact.open(deltaPath);
    try {
      const dir = await onDiskFull("serving directories", () =>
        patchedServingDir({
          cacheRoot,
          baseCompiledDir: prepared.compiledDir,
          dtype: prepared.dtype,
          delta: { artifact, hash },
        }));
      this.cache?.touch(dir);
      this.#enforceCache();
      return dir;
    } finally {
      artifact.close();
      unpin();
    }
  }

  /** Where a version's export of that name lives (it may not exist yet). */
  exportDir(record: VersionRecord, name: ExportName): string {
    return `${this.dataDir}/exports/${record.id}/${name}`;
  }

  /** The files of a finished export (none when it was not exported), from any replica when the store is shared. */
  async exportFiles(record: VersionRecord, name: ExportName): Promise<ExportedFile[]> {
    if (!this.artifacts.remote) return await exportedFiles(this.exportDir(record, name));
    const prefix = exportKey(record, name);
    const out: ExportedFile[] = [];
    let complete = false;
    for await (const o of this.artifacts.list(prefix)) {
      const file = o.key.slice(prefix.length);
      if (file === EXPORT_COMPLETE) complete = true;
      else if (!file.split("/").some((p) => p.startsWith("."))) out.push({ name: file, bytes: o.bytes });
    }
    return complete ? out.sort((a, b) => a.name.localeCompare(b.name)) : [];
  }

  /** One file of a finished export as a stream (sha256-checked when it comes from an object store). */
  async openExportFile(
    record: VersionRecord,
    name: ExportName,
    file: ExportedFile,
  ): Promise<{ stream: ReadableStream<Uint8Array>; bytes: number }> {
    if (!this.artifacts.remote) {
      const f = await Deno.open(`${this.exportDir(record, name)}/${file.name}`, { read: true });
      return { stream: f.readable, bytes: file.bytes };
    }
    const read = await this.artifacts.get(`${exportKey(record, name)}${file.name}`);
    if (!read) throw new RegistryError("not_found", `The exported file ${file.name} is gone`, "name");
    return { stream: read.stream, bytes: read.bytes };
  }

  /** Exports a version as a full HF checkpoint or a transformers.js ONNX directory; returns its path. */
  async exportVersion(idOrName: string, format: ExportFormat, dtype: ComputeDType = "float32"): Promise<string> {
    const record = await this.get(idOrName);
    const name = exportName(format, dtype);
    if (!this.artifacts.remote) return await this.#buildExport(record, format, dtype);
    // Exported before (here or by another replica): the store has it; else build here, upload, drop the local copy.
    if (await this.artifacts.exists(`${exportKey(record, name)}${EXPORT_COMPLETE}`)) {
      return this.exportDir(record, name);
    }
    const dir = await this.#buildExport(record, format, dtype);
    try {
      const files = await exportedFiles(dir);
      for (const f of files) await this.artifacts.putFile(`${exportKey(record, name)}${f.name}`, `${dir}/${f.name}`);
      // Last: the export counts as done (listed, downloadable) once the marker is there.
      await this.artifacts.putBytes(
        `${exportKey(record, name)}${EXPORT_COMPLETE}`,
        new TextEncoder().encode(new Date().toISOString()),
      );
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    return dir;
  }

  async #buildExport(record: VersionRecord, format: ExportFormat, dtype: ComputeDType): Promise<string> {
    const artifact = await this.openArtifact(record);
    const ckpt = await this.bases.openCheckpoint(record.baseModel);
    try {
      return await onDiskFull("exports", () =>
        exportVersionDirectory({
          format,
          dtype,
          target: this.exportDir(record, exportName(format, dtype)),
          ckpt,
          source: versionWeightSource(ckpt, artifact),
        }));
    } finally {
      ckpt.close();
      artifact.close();
    }
  }
}

/** A version delta's key in the artifact store (and its path under the data directory). */
export function deltaKey(hash: string): string {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`not a content hash: ${hash}`);
  return `versions/${hash}/${DELTA_FILE}`;
}

/** The prefix of a version's export in the artifact store. */
function exportKey(record: VersionRecord, name: ExportName): string {
  return `exports/${record.id}/${name}/`;
}

/** Uploaded last: an export in the store is complete once it is there. */
const EXPORT_COMPLETE = ".export-complete";
