/**
 * Model versions: `createVersion` (the job runner's entry point) stores a
 * delta as a content-addressed artifact, compiles its serving directory and
 * records an immutable row; the rest reads versions back, builds their
 * weights/serving directories, and exports them.
 *
 * Idempotent by name + content hash: re-creating a version with the same
 * delta returns the existing row; a different delta under a taken name is a
 * conflict.
 */
import { onDiskFull } from "../disk_space.ts";
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
  readonly #listeners = new Set<(v: VersionRecord) => void>();
  readonly #deletedListeners = new Set<(v: VersionRecord) => void>();

  constructor(opts: VersionServiceOptions) {
    this.store = opts.store;
    this.bases = opts.bases;
    this.compileMode = opts.compileMode ?? "patch";
    this.#compileOnCreate = opts.compileOnCreate ?? true;
    this.#denseDtype = opts.denseDtype;
  }

  get dataDir(): string {
    return this.bases.dataDir;
  }

  /** Called with every version this service creates (the registry's catalog listens). */
  onCreated(listener: (v: VersionRecord) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called with every version this service deletes, before its files go (the registry drops its engine). */
  onDeleted(listener: (v: VersionRecord) => void): () => void {
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
   * Deletes a version and frees what it took on disk: its delta artifact
   * (unless another version stores the same content), its serving
   * directories and its exports. Refuses (409) while an alias points at it or
   * its job has not ended. Listeners (the registry: catalog and engine) hear
   * of it before the files go.
   */
  async delete(idOrName: string): Promise<VersionRecord> {
    const record = await this.store.versions.delete(idOrName);
    for (const listener of this.#deletedListeners) listener(record);
    const remove = (path: string) =>
      Deno.remove(path, { recursive: true }).catch((e) => {
        if (!(e instanceof Deno.errors.NotFound)) console.error(`deleting ${record.name}: cannot remove ${path}: ${e}`);
      });
    if ((await this.store.versions.countByHash(record.contentHash)) === 0) {
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
    return record;
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

  openArtifact(record: VersionRecord): Promise<DeltaArtifact> {
    return DeltaArtifact.open(this.artifactPath(record));
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
    const artifact = await DeltaArtifact.open(`${this.dataDir}/versions/${hash}/${DELTA_FILE}`);
    try {
      return await onDiskFull("serving directories", () =>
        patchedServingDir({
          cacheRoot: `${this.dataDir}/compiled`,
          baseCompiledDir: prepared.compiledDir,
          dtype: prepared.dtype,
          delta: { artifact, hash },
        }));
    } finally {
      artifact.close();
    }
  }

  /** Where a version's export of that name lives (it may not exist yet). */
  exportDir(record: VersionRecord, name: ExportName): string {
    return `${this.dataDir}/exports/${record.id}/${name}`;
  }

  /** The files of a finished export (none when it was not exported). */
  exportFiles(record: VersionRecord, name: ExportName): Promise<ExportedFile[]> {
    return exportedFiles(this.exportDir(record, name));
  }

  /** Exports a version as a full HF checkpoint or a transformers.js ONNX directory; returns its path. */
  async exportVersion(idOrName: string, format: ExportFormat, dtype: ComputeDType = "float32"): Promise<string> {
    const record = await this.get(idOrName);
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
