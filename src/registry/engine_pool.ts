/**
 * Loaded engines in an LRU under a memory budget, with leases so eviction
 * never cuts a request short.
 *
 * - `acquire(key)` loads on demand; concurrent acquires of one key share the
 *   load. Each returns a lease (a hold on the entry) taken before any await,
 *   so an engine cannot close between being found and being used.
 * - A lease ends shortly after its first `generate` (the engine has then
 *   queued the sequence, and `close()` drains queued and running sequences)
 *   or after `leaseTtlMs` if it never generates.
 * - Loading a model evicts least-recently-used entries until the estimate
 *   fits, preferring idle ones and ones the owner does not mark as kept. An
 *   evicted entry leaves the map at once (new requests load afresh) and its
 *   engine closes when its last lease ends; close() drains in-flight work. So
 *   the budget is soft while evicted engines drain.
 * - A model larger than the whole budget still loads (alone).
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import type { GenerationEngine, GenerationEvent, GenerationRequest } from "../serve/engine_types.ts";
import type { ProbeResult } from "./probe.ts";

export interface LoadedEngine {
  engine: GenerationEngine;
  tokenizer: Tokenizer;
  /** Called once the engine has closed (e.g. unpins its serving directory in the local cache). */
  onClose?: () => void;
}

export type EntryState = "loading" | "ready" | "draining" | "closed";

export class PoolEntry {
  state: EntryState = "loading";
  loaded: LoadedEngine | null = null;
  holds = 0;
  lastUsed = performance.now();
  /** The validation probe of this engine, run at most once per load. */
  probe: Promise<ProbeResult> | null = null;
  closed: Promise<void> | null = null;
  readonly ready: Promise<LoadedEngine>;
  /** Resolves once the entry is closed for good (or failed to load). */
  readonly gone: Promise<void>;
  #gone!: () => void;

  constructor(readonly key: string, readonly bytes: number, load: () => Promise<LoadedEngine>) {
    this.gone = new Promise((resolve) => (this.#gone = resolve));
    this.ready = load();
  }

  /** @internal by EnginePool */
  markGone(): void {
    this.#gone();
  }

  busy(): boolean {
    const s = this.loaded?.engine.stats();
    return this.holds > 0 || (s !== undefined && s.activeSequences + s.queueDepth > 0);
  }
}

export interface PoolOptions {
  budgetBytes: number;
  /** How long a resolved-but-unused lease pins its engine. Default 30 s. */
  leaseTtlMs?: number;
  /** Entries to keep over others when evicting (e.g. alias targets). */
  keep?: (key: string) => boolean;
  /** Told about loads, evictions and closes (for logs). */
  onEvent?: (event: PoolEvent) => void;
}

export type PoolEvent =
  | { type: "loaded"; key: string; bytes: number; ms: number }
  | { type: "load_failed"; key: string; error: unknown }
  | { type: "evicted"; key: string; bytes: number; busy: boolean }
  | { type: "closed"; key: string };

export class EnginePool {
  readonly budgetBytes: number;
  readonly #leaseTtlMs: number;
  readonly #keep: (key: string) => boolean;
  readonly #onEvent: (event: PoolEvent) => void;
  readonly #entries = new Map<string, PoolEntry>();
  readonly #draining = new Set<PoolEntry>();
  readonly #leases = new Set<EngineLease>();

  constructor(opts: PoolOptions) {
    this.budgetBytes = opts.budgetBytes;
    this.#leaseTtlMs = opts.leaseTtlMs ?? 30_000;
    this.#keep = opts.keep ?? (() => false);
    this.#onEvent = opts.onEvent ?? (() => {});
  }

  /** A lease on the engine for `key`, loading it (with `load`, estimated at `bytes`) if needed. */
  async acquire(key: string, bytes: number, load: () => Promise<LoadedEngine>): Promise<EngineLease> {
    let entry = this.#entries.get(key);
    if (!entry) {
      this.#evictFor(bytes, key);
      const started = performance.now();
      entry = new PoolEntry(key, bytes, load);
      this.#entries.set(key, entry);
      const e = entry;
      e.ready.then((loaded) => {
        e.loaded = loaded;
        if (e.state === "loading") e.state = "ready";
        this.#onEvent({ type: "loaded", key, bytes, ms: performance.now() - started });
        // Evicted while loading (e.g. by close()): nothing holds it any more.
        if (e.state === "draining") this.#maybeClose(e);
      }, (error) => {
        if (this.#entries.get(key) === e) this.#entries.delete(key);
        this.#draining.delete(e);
        e.state = "closed";
        e.markGone();
        this.#onEvent({ type: "load_failed", key, error });
      });
    }
    entry.holds++;
    entry.lastUsed = performance.now();
    let loaded: LoadedEngine;
    try {
      loaded = await entry.ready;
    } catch (e) {
      entry.holds--;
      throw e;
    }
    const lease = new EngineLease(this, entry, loaded, this.#leaseTtlMs);
    this.#leases.add(lease);
    return lease;
  }

  /** The ready entry for `key`, if loaded (no lease, no load). */
  peek(key: string): PoolEntry | undefined {
    const e = this.#entries.get(key);
    return e?.state === "ready" ? e : undefined;
  }

  /** Ready entries, most recently used last. */
  ready(): PoolEntry[] {
    return [...this.#entries.values()].filter((e) => e.state === "ready").sort((a, b) => a.lastUsed - b.lastUsed);
  }

  /** Bytes of loading + ready entries (what the budget counts) and of engines still draining. */
  usage(): { usedBytes: number; drainingBytes: number; entries: number; draining: number } {
    let used = 0, draining = 0;
    for (const e of this.#entries.values()) used += e.bytes;
    for (const e of this.#draining) draining += e.bytes;
    return { usedBytes: used, drainingBytes: draining, entries: this.#entries.size, draining: this.#draining.size };
  }

  /**
   * Drops `key` from the pool (e.g. an engine that failed validation); it
   * closes once idle. Resolves when it has closed (its in-flight requests
   * finished), at once when there was none.
   */
  evict(key: string): Promise<void> {
    const e = this.#entries.get(key);
    if (!e) return Promise.resolve();
    this.#evictEntry(e);
    return e.gone;
  }

  /** Evicts everything and waits for every engine to drain and close. */
  async close(): Promise<void> {
    for (const lease of [...this.#leases]) lease.release();
    const all = [...this.#entries.values()];
    for (const e of all) this.#evictEntry(e);
    await Promise.allSettled(all.map((e) => e.ready));
    await Promise.all([...this.#draining, ...all].map((e) => e.closed ?? Promise.resolve()));
  }

  /** @internal by EngineLease */
  release(lease: EngineLease, entry: PoolEntry): void {
    this.#leases.delete(lease);
    entry.holds--;
    entry.lastUsed = performance.now();
    this.#maybeClose(entry);
  }

  #evictFor(bytes: number, key: string): void {
    let used = this.usage().usedBytes;
    if (used + bytes <= this.budgetBytes) return;
    const candidates = this.ready()
      .filter((e) => e.key !== key)
      .map((e) => ({ e, rank: (e.busy() ? 2 : 0) + (this.#keep(e.key) ? 1 : 0) }))
      .sort((a, b) => a.rank - b.rank || a.e.lastUsed - b.e.lastUsed);
    for (const { e } of candidates) {
      if (used + bytes <= this.budgetBytes) break;
      this.#evictEntry(e);
      used -= e.bytes;
    }
  }

  #evictEntry(e: PoolEntry): void {
    if (this.#entries.get(e.key) === e) this.#entries.delete(e.key);
    if (e.state === "closed" || e.state === "draining") return;
    const wasLoading = e.state === "loading";
    e.state = "draining";
    this.#draining.add(e);
    this.#onEvent({ type: "evicted", key: e.key, bytes: e.bytes, busy: e.busy() });
    if (!wasLoading) this.#maybeClose(e);
  }

  #maybeClose(e: PoolEntry): void {
    if (e.state !== "draining" || e.holds > 0 || e.closed || !e.loaded) return;
    const engine = e.loaded.engine;
    // close() stops admission and resolves once queued and running sequences finished.
    e.closed = engine.close().catch((err) => console.error(`closing engine ${e.key}: ${err}`)).finally(() => {
      e.state = "closed";
      this.#draining.delete(e);
      e.loaded?.onClose?.();
      e.markGone();
      this.#onEvent({ type: "closed", key: e.key });
    });
  }
}

/**
 * A hold on one pool entry, and the engine view handed to a request: the
 * same engine, whose first `generate` ends the hold (on the next macrotask,
 * so a request that starts several sequences in one go starts them all).
 */
export class EngineLease {
  readonly engine: GenerationEngine;
  readonly tokenizer: Tokenizer;
  readonly key: string;
  #released = false;
  readonly #timer: ReturnType<typeof setTimeout>;

  constructor(
    private readonly pool: EnginePool,
    readonly entry: PoolEntry,
    loaded: LoadedEngine,
    ttlMs: number,
  ) {
    this.key = entry.key;
    this.tokenizer = loaded.tokenizer;
    this.#timer = setTimeout(() => this.release(), ttlMs);
    Deno.unrefTimer(this.#timer);
    this.engine = leasedView(loaded.engine, () => this.release());
  }

  get released(): boolean {
    return this.#released;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    this.pool.release(this, this.entry);
  }
}

/** `inner` as a request sees it: its first generate schedules `release`; close only releases. */
function leasedView(inner: GenerationEngine, release: () => void): GenerationEngine {
  let scheduled = false;
  return {
    get modelId() {
      return inner.modelId;
    },
    get contextLength() {
      return inner.contextLength;
    },
    generate(req: GenerationRequest): AsyncIterable<GenerationEvent> {
      const events = inner.generate(req);
      if (!scheduled) {
        scheduled = true;
        setTimeout(release, 0);
      }
      return events;
    },
    stats: () => inner.stats(),
    // The engine is shared: a request's close only gives up its hold.
    close: () => Promise.resolve(release()),
  };
}
