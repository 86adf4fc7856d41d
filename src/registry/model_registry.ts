/**
 * The model registry: what a request's `model` names and the engine serving
 * it. Ids are base models (given at start), version names (`ft:…`, fine-tuned
 * and checkpoint versions alike; version ids `ftver-…` also resolve), and
 * aliases, which resolve to the target they currently serve locally (set by
 * the hot-swap coordinator only after the target validated).
 *
 * Engines load on demand into an EnginePool (LRU under a memory budget,
 * estimated as parameters × dtype size); concurrent requests share one load.
 * Implements the routes' ModelResolver: resolve / list / loaded.
 */
import type { ModelInfo, ModelResolver, ServedModel } from "../serve/model_resolver.ts";
import { InsufficientStorageError, isDiskFull } from "../disk_space.ts";
import { ApiError } from "../errors.ts";
import { parameterCount } from "../model/layout.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { createEngine } from "../serve/batch_engine.ts";
import type { SchedulerOptions } from "../serve/scheduler.ts";
import { unstorableText } from "../store/storable_text.ts";
import type { VersionRecord } from "../store/version_queries.ts";
import type { BaseModels } from "./base_models.ts";
import { EngineLease, EnginePool, type LoadedEngine, type PoolEvent } from "./engine_pool.ts";
import { errorText, RegistryError } from "./errors.ts";
import { probeEngine, type ProbeOptions, type ProbeResult } from "./probe.ts";
import type { VersionService } from "./versions.ts";

export const DEFAULT_MEMORY_BUDGET_BYTES = 8 * 1024 ** 3;

/** `owned_by` in GET /v1/models: base models as OpenAI lists its own, fine-tuned versions (checkpoints too), aliases. */
export const OWNED_BY = { base: "system", version: "fine-tuned", alias: "alias" } as const;

const DTYPE_BYTES: Record<ComputeDType, number> = { float32: 4, float16: 2, bfloat16: 2 };

/** A list entry (GET /v1/models). */
export type ModelListing = ModelInfo;

/** A servable model that is not an alias. */
export type ModelTarget =
  | { kind: "base"; id: string }
  | { kind: "version"; id: string; record: VersionRecord };

export interface ModelRegistryOptions {
  versions: VersionService;
  /** `MODEL_MEMORY_BUDGET_BYTES`; default 8 GiB. */
  memoryBudgetBytes?: number;
  /** How long a resolved model pins its engine if the request never generates. Default 30 s. */
  leaseTtlMs?: number;
  /** Intra-op threads per engine worker; default all cores. */
  threads?: number;
  scheduler?: SchedulerOptions;
  /** Serve base models through the same patched graph as versions (faster session start). Default true. */
  patchBase?: boolean;
  /** `owned_by` of each kind of model (GET /v1/models tells them apart by it). Default OWNED_BY. */
  ownedBy?: Partial<typeof OWNED_BY>;
  probe?: ProbeOptions;
  /** Replaces engine loading (tests). */
  loadEngine?: (target: ModelTarget) => Promise<LoadedEngine>;
  onPoolEvent?: (event: PoolEvent) => void;
}

export class ModelRegistry implements ModelResolver {
  readonly versions: VersionService;
  readonly bases: BaseModels;
  readonly pool: EnginePool;
  readonly #opts: ModelRegistryOptions;
  readonly #ownedBy: { base: string; version: string; alias: string };
  /** Version catalog by name, and id → name. */
  readonly #byName = new Map<string, VersionRecord>();
  readonly #idToName = new Map<string, string>();
  /** alias → the target id it serves here (switched atomically by the coordinator). */
  readonly #aliases = new Map<string, string>();
  readonly #unsubscribe: (() => void)[];
  #refreshTimer: ReturnType<typeof setInterval> | null = null;

  constructor(opts: ModelRegistryOptions) {
    this.#opts = opts;
    this.versions = opts.versions;
    this.bases = opts.versions.bases;
    this.#ownedBy = { ...OWNED_BY, ...opts.ownedBy };
    this.pool = new EnginePool({
      budgetBytes: opts.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET_BYTES,
      leaseTtlMs: opts.leaseTtlMs,
      // Engines aliases point at are the ones traffic comes back to.
      keep: (key) => [...this.#aliases.values()].includes(key),
      onEvent: opts.onPoolEvent,
    });
    this.#unsubscribe = [
      this.versions.onCreated((v) => this.#remember(v)),
      // The deletion's artifacts go once the engine drained (in-flight requests finish first).
      this.versions.onDeleted((v) => this.#forget(v.name)),
    ];
  }

  /** Loads the version catalog (list() is synchronous, so it answers from memory). */
  async refresh(): Promise<void> {
    const all = await this.versions.all();
    const names = new Set(all.map((v) => v.name));
    // Versions deleted (here or by another replica) leave the catalog and the pool, then the local disk.
    for (const [name, v] of [...this.#byName]) {
      if (names.has(name)) continue;
      this.#forget(name).then(() => this.versions.purgeLocal(v)).catch((e) =>
        console.error(`removing the local files of deleted ${name} failed: ${errorText(e)}`)
      );
    }
    for (const v of all) this.#remember(v);
  }

  /**
   * Re-reads the catalog every `ms` (versions created by other replicas show
   * up in list(); resolve() finds them at once anyway). 0 = never.
   */
  refreshEvery(ms: number): void {
    if (this.#refreshTimer !== null) clearInterval(this.#refreshTimer);
    this.#refreshTimer = null;
    if (ms <= 0) return;
    this.#refreshTimer = setInterval(() => {
      this.refresh().catch((e) => console.error(`registry catalog refresh failed: ${errorText(e)}`));
    }, ms);
    Deno.unrefTimer(this.#refreshTimer);
  }

  /** Drops a version from the catalog and its engine from the pool; resolves once the engine closed. */
  #forget(name: string): Promise<void> {
    const v = this.#byName.get(name);
    if (v) this.#idToName.delete(v.id);
    this.#byName.delete(name);
    return this.pool.evict(name);
  }

  #remember(v: VersionRecord): void {
    this.#byName.set(v.name, v);
    this.#idToName.set(v.id, v.name);
  }

  // ---------- ModelResolver ----------

  /** The engine for `id` (loading it on demand), or null when no such model exists. */
  async resolve(id: string): Promise<ServedModel | null> {
    const target = await this.target(this.#aliases.get(id) ?? id);
    if (!target) return null;
    const lease = await this.acquire(target);
    return this.#served(target, lease.engine, lease.tokenizer);
  }

  /** Every servable id: base models, versions (final and checkpoints), aliases. */
  list(): ModelListing[] {
    const { base, version, alias } = this.#ownedBy;
    const out: ModelListing[] = this.bases.ids().map((id) => this.#listing(id, this.bases.created, base));
    for (const v of this.#byName.values()) out.push(this.#listing(v.name, seconds(v.createdAt), version));
    for (const name of this.#aliases.keys()) out.push(this.#listing(name, this.bases.created, alias));
    return out;
  }

  /** Engines currently loaded (for metrics). */
  loaded(): ServedModel[] {
    const out: ServedModel[] = [];
    for (const e of this.pool.ready()) {
      if (!e.loaded) continue;
      const v = this.#byName.get(e.key);
      const target: ModelTarget = v ? { kind: "version", id: v.name, record: v } : { kind: "base", id: e.key };
      out.push(this.#served(target, e.loaded.engine, e.loaded.tokenizer));
    }
    return out;
  }

  #listing(id: string, created: number, ownedBy: string): ModelListing {
    return { id, created, ownedBy };
  }

  #served(target: ModelTarget, engine: ServedModel["engine"], tokenizer: ServedModel["tokenizer"]): ServedModel {
    const created = target.kind === "version" ? seconds(target.record.createdAt) : this.bases.created;
    const ownedBy = target.kind === "version" ? this.#ownedBy.version : this.#ownedBy.base;
    return { id: target.id, created, ownedBy, engine, tokenizer };
  }

  /**
   * DELETE /v1/models/{model}: deletes a fine-tuned version (by name or id)
   * with its artifacts, and drops its engine. Base models and aliases are
   * refused (403 / 400); 409 while an alias points at the version or its job
   * has not ended; 404 for an unknown id.
   */
  async deleteModel(id: string): Promise<{ id: string }> {
    if (this.bases.has(id)) {
      throw new RegistryError(
        "not_deletable",
        `The base model '${id}' cannot be deleted: it is served from the server's configuration (MODEL); only ` +
          "fine-tuned models (ft:…) can be deleted",
        "model",
      );
    }
    if (this.#aliases.has(id)) {
      throw new RegistryError(
        "invalid_alias",
        `'${id}' is an alias, not a model: point it elsewhere with PUT /v1/aliases/${id}`,
        "model",
      );
    }
    const target = await this.target(id);
    if (!target || target.kind !== "version") {
      throw new ApiError(404, `The model '${id}' does not exist`, "invalid_request_error", "model", "model_not_found");
    }
    const record = await this.versions.delete(target.record.id);
    return { id: record.name };
  }

  // ---------- targets and engines ----------

  /** A base model or version by id/name (not an alias); null when unknown. */
  async target(id: string): Promise<ModelTarget | null> {
    if (this.bases.has(id)) return { kind: "base", id };
    // Text the store cannot hold names no version: unknown, not a store error.
    if (unstorableText(id) !== null) return null;
    const name = this.#idToName.get(id) ?? id;
    let record = this.#byName.get(name) ?? null;
    if (!record) {
      // Created by another replica (or before the catalog loaded).
      record = await this.versions.find(id);
      if (record) this.#remember(record);
    }
    return record ? { kind: "version", id: record.name, record } : null;
  }

  /** A lease on the target's engine, loading it if needed. Release it when done. */
  async acquire(target: ModelTarget): Promise<EngineLease> {
    const baseId = target.kind === "base" ? target.id : target.record.baseModel;
    let bytes: number;
    try {
      const prepared = await this.bases.prepare(baseId);
      bytes = parameterCount(prepared.config) * DTYPE_BYTES[prepared.dtype];
    } catch (e) {
      if (isDiskFull(e)) {
        throw e instanceof ApiError ? e : new InsufficientStorageError("serving directories", { cause: e });
      }
      throw new RegistryError("load_failed", `base model ${baseId} cannot be loaded: ${errorText(e)}`, "model", {
        cause: e,
      });
    }
    return await this.pool.acquire(target.id, bytes, () => this.#load(target));
  }

  async #load(target: ModelTarget): Promise<LoadedEngine> {
    if (this.#opts.loadEngine) return await this.#opts.loadEngine(target);
    try {
      const baseId = target.kind === "base" ? target.id : target.record.baseModel;
      const prepared = await this.bases.prepare(baseId);
      const compiledDir = target.kind === "version"
        ? await this.versions.servingDir(target.record)
        : this.#opts.patchBase === false
        ? prepared.compiledDir
        : await this.versions.baseServingDir(baseId);
      // A loaded engine's serving directory stays in the local cache until the engine closes.
      const unpin = this.versions.cache?.pin(compiledDir) ?? (() => {});
      try {
        const engine = await createEngine({ ...prepared, source: target.id, compiledDir }, {
          ...this.#opts.scheduler,
          threads: this.#opts.threads,
          modelId: target.id,
        });
        return { engine, tokenizer: prepared.tokenizer, onClose: unpin };
      } catch (e) {
        unpin();
        throw e;
      }
    } catch (e) {
      if (e instanceof RegistryError || e instanceof InsufficientStorageError) throw e;
      if (isDiskFull(e)) throw new InsufficientStorageError("serving directories", { cause: e });
      throw new RegistryError("load_failed", `model ${target.id} cannot be loaded: ${errorText(e)}`, "model", {
        cause: e,
      });
    }
  }

  /** Runs (once per loaded engine) the validation probe on a leased engine. */
  validate(lease: EngineLease): Promise<ProbeResult> {
    const entry = lease.entry;
    if (!entry.probe) {
      const loaded = entry.loaded;
      if (!loaded) throw new Error("validate: lease on an engine that is not loaded");
      entry.probe = probeEngine(loaded.engine, loaded.tokenizer, this.#opts.probe);
    }
    return entry.probe;
  }

  /**
   * Loads and validates a target without serving it under any alias (e.g.
   * right after a job succeeds, so a later alias switch is instant). Throws
   * validation_failed if the probe fails (and evicts the engine).
   */
  async warm(id: string): Promise<ProbeResult> {
    const target = await this.target(id);
    if (!target) throw new RegistryError("not_found", `The model '${id}' does not exist`, "model");
    const lease = await this.acquire(target);
    try {
      const probe = await this.validate(lease);
      if (!probe.ok) {
        this.pool.evict(target.id);
        throw new RegistryError("validation_failed", `${target.id} failed validation: ${probe.reason}`, "target");
      }
      return probe;
    } finally {
      lease.release();
    }
  }

  // ---------- aliases (the coordinator owns these) ----------

  aliasTarget(alias: string): string | undefined {
    return this.#aliases.get(alias);
  }

  aliases(): Map<string, string> {
    return new Map(this.#aliases);
  }

  /** The atomic switch: requests resolving `alias` after this call get `targetId`. */
  setAliasTarget(alias: string, targetId: string | null): void {
    if (targetId === null) this.#aliases.delete(alias);
    else this.#aliases.set(alias, targetId);
  }

  async close(): Promise<void> {
    this.refreshEvery(0);
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    await this.pool.close();
  }
}

function seconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}
