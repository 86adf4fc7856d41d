/**
 * Alias changes with hot-swap: the new target's engine is loaded and
 * validated (probe.ts) while the old one keeps serving; only then does the
 * alias switch, atomically (one map write in the registry). Requests that
 * resolved the alias before keep their engine until they finish; requests
 * after get the new target. A target that fails to load or validate never
 * serves: the old one stays, and the reason goes to the alias's event log
 * (and the API error).
 *
 * Order for `set`/`rollback` from the API: validate here → write the store
 * (history row + NOTIFY) → switch here. Other replicas get the NOTIFY and
 * reconcile: they read the alias row, validate its target themselves and
 * switch (or keep the old one and log why). Every change to one alias is
 * serialized in this process; across replicas the store's last write wins
 * and reconciliation converges on it.
 */
import { InsufficientStorageError } from "../disk_space.ts";
import { type AliasHistoryEntry, type AliasRecord, type AliasTarget, changeToUndo } from "../store/alias_queries.ts";
import type { Page } from "../store/pagination.ts";
import type { Store } from "../store/store.ts";
import type { EngineLease } from "./engine_pool.ts";
import { errorText, RegistryError } from "./errors.ts";
import type { ModelEvaluator } from "./model_evaluator.ts";
import type { ModelRegistry, ModelTarget } from "./model_registry.ts";
import type { ProbeResult } from "./probe.ts";
import { decidePromotion } from "./promotion_gate.ts";
import type { EvaluationData, PromotionDecision, PromotionGate } from "./types.ts";

export type AliasOrigin = "api" | "replica";

export interface AliasEvent {
  at: Date;
  alias: string;
  /** switched: now serving `to`; rejected: `to` did not load or validate, `from` keeps serving. */
  type: "switched" | "rejected";
  action: "set" | "rollback" | "sync";
  origin: AliasOrigin;
  from: string | null;
  to: string;
  reason: string | null;
  loadMs: number | null;
  validateMs: number | null;
  probeText: string | null;
  /** What made a replica reconcile (origin "replica"): the store's NOTIFY, or the periodic refresh (a lost NOTIFY). */
  via?: "notify" | "refresh";
}

export interface AliasSwitch {
  alias: AliasRecord;
  /** The target this replica serves the alias with now. */
  serving: string;
  /** False when the alias already pointed there. */
  changed: boolean;
  event: AliasEvent | null;
}

/** An eval-gated change: what the gate decided, and the switch when it switched. */
export interface GatedSwitch {
  decision: PromotionDecision;
  switch: AliasSwitch | null;
}

export interface AliasCoordinatorOptions {
  store: Store;
  registry: ModelRegistry;
  /** Scores candidates for eval-gated changes (`promote`); without it they are refused as unsupported. */
  evaluator?: ModelEvaluator;
  /** Events kept per alias. Default 50. */
  maxEvents?: number;
  onEvent?: (event: AliasEvent) => void;
}

export const ALIAS_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const ALIAS_NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit";
/** Version ids start with it: an alias named so would be ambiguous. */
export const RESERVED_ALIAS_PREFIX = "ftver-";

/** The `previous` target a store rollback would restore (same stack semantics as AliasQueries.rollback). */
export function rollbackTarget(historyNewestFirst: readonly AliasHistoryEntry[]): string | null {
  return changeToUndo(historyNewestFirst)?.previous?.target ?? null;
}

export class AliasCoordinator {
  readonly #store: Store;
  readonly #registry: ModelRegistry;
  readonly #evaluator: ModelEvaluator | null;
  readonly #maxEvents: number;
  readonly #onEvent: (event: AliasEvent) => void;
  readonly #events = new Map<string, AliasEvent[]>();
  readonly #chains = new Map<string, Promise<unknown>>();
  /** What started the reconcile running for an alias (its events say so). */
  readonly #via = new Map<string, "notify" | "refresh">();
  /** The target a reconcile last refused per alias (the periodic refresh does not retry it; a NOTIFY does). */
  readonly #rejected = new Map<string, string>();
  #refreshTimer: ReturnType<typeof setInterval> | null = null;
  #refreshing: Promise<void> | null = null;
  #unsubscribe: (() => Promise<void>) | null = null;

  constructor(opts: AliasCoordinatorOptions) {
    this.#store = opts.store;
    this.#registry = opts.registry;
    this.#evaluator = opts.evaluator ?? null;
    this.#maxEvents = opts.maxEvents ?? 50;
    this.#onEvent = opts.onEvent ?? (() => {});
  }

  /** Serves every stored alias (targets load lazily) and follows changes from every replica. */
  async start(): Promise<void> {
    for (const row of await this.#store.aliases.list()) this.#registry.setAliasTarget(row.name, row.target);
    this.#unsubscribe = await this.#store.aliases.subscribe((change) => {
      this.#serial(change.alias, () => this.#reconcile(change.alias, "notify")).catch((e) =>
        console.error(`alias ${change.alias}: reconcile failed: ${errorText(e)}`)
      );
    });
  }

  /**
   * The fallback for a lost NOTIFY (a dropped LISTEN connection, a database
   * outage): every `ms`, re-reads the aliases and reconciles each one this
   * replica serves differently. A change younger than `graceMs` is left to
   * its NOTIFY. 0 = never.
   */
  refreshEvery(ms: number, graceMs = Math.min(500, Math.floor(ms / 2))): void {
    if (this.#refreshTimer !== null) clearInterval(this.#refreshTimer);
    this.#refreshTimer = null;
    if (ms <= 0) return;
    let failing = false;
    this.#refreshTimer = setInterval(() => {
      if (this.#refreshing) return;
      this.#refreshing = this.refresh(graceMs).then(() => {
        if (failing) console.error("alias refresh: the store answers again");
        failing = false;
      }, (e) => {
        if (!failing) console.error(`alias refresh failed (retrying every ${ms} ms): ${errorText(e)}`);
        failing = true;
      }).finally(() => (this.#refreshing = null));
    }, ms);
    Deno.unrefTimer(this.#refreshTimer);
  }

  /** One pass of the periodic refresh: reconciles every alias whose stored target differs from what is served here. */
  async refresh(graceMs = 0): Promise<void> {
    const rows = await this.#store.aliases.list();
    const stored = new Set(rows.map((r) => r.name));
    const stale = rows.filter((r) =>
      this.#registry.aliasTarget(r.name) !== r.target && Date.now() - r.updatedAt.getTime() >= graceMs &&
      this.#rejected.get(r.name) !== r.target
    ).map((r) => r.name);
    for (const name of this.#registry.aliases().keys()) if (!stored.has(name)) stale.push(name);
    // An alias with a change in progress here is left to it.
    await Promise.allSettled(
      stale.filter((name) => !this.#chains.has(name)).map((name) =>
        this.#serial(name, () => this.#reconcile(name, "refresh"))
      ),
    );
  }

  async close(): Promise<void> {
    this.refreshEvery(0);
    await this.#refreshing;
    await this.#unsubscribe?.();
    this.#unsubscribe = null;
    await Promise.allSettled([...this.#chains.values()]);
  }

  /** Points `name` at `target` (a version name/id or a base model id) once the target validated. */
  set(name: string, target: string, reason: string | null = null): Promise<AliasSwitch> {
    return this.#serial(name, async () => {
      await this.#checkName(name);
      const t = await this.#candidate(target);
      const from = this.#registry.aliasTarget(name) ?? null;
      if (from === t.id) {
        // Serving it already; make sure the store agrees (a no-op when it does).
        const { alias, changed } = await this.#store.aliases.set(name, storeTarget(t), reason);
        return { alias, serving: t.id, changed, event: null };
      }
      return await this.#switchTo(name, t, from, () => this.#store.aliases.set(name, storeTarget(t), reason));
    });
  }

  /** Loads and validates `t`, then `write`s the change to the store and points `name` at `t` here (set, promote). */
  async #switchTo(
    name: string,
    t: ModelTarget,
    from: string | null,
    write: () => Promise<{ alias: AliasRecord; changed: boolean }>,
  ): Promise<AliasSwitch> {
    const ready = await this.#prepare(name, "set", "api", from, t);
    try {
      const { alias, changed } = await write();
      this.#registry.setAliasTarget(name, t.id);
      return { alias, serving: t.id, changed, event: this.#switched(name, "set", "api", from, t, ready) };
    } finally {
      ready.lease.release();
    }
  }

  /** Whether `promote` can evaluate (an evaluator was given). */
  get canEvaluate(): boolean {
    return this.#evaluator !== null;
  }

  /**
   * Eval-gated change ("evaluate, then switch"): scores `candidate` and the
   * alias's current target on `data` (one tokenization, the training
   * engine's validation loss), and points the alias at the candidate only
   * when it passes `gate`; then as `set` (load, validate, switch). The
   * decision with both scores goes into the alias history either way
   * (`refused` rows change nothing). Serialized with every other change to
   * the alias here, and compare-and-set in the store: a target changed by
   * another replica meanwhile is a conflict, not a switch from an unevaluated
   * target.
   */
  promote(
    name: string,
    candidate: string,
    gate: PromotionGate,
    data: EvaluationData,
    reason: string | null = null,
  ): Promise<GatedSwitch> {
    return this.#serial(name, async () => {
      if (!this.#evaluator) {
        throw new RegistryError("invalid_evaluation", "This server cannot evaluate models", "evaluate");
      }
      await this.#checkName(name);
      const t = await this.#candidate(candidate);
      const current = (await this.#store.aliases.find(name))?.target ?? null;
      const base = { alias: name, metric: gate.metric, must_beat: gate.mustBeat, min_improvement: gate.minImprovement };
      if (current === t.id) {
        const decision: PromotionDecision = {
          ...base,
          decision: "unchanged",
          candidate: { model: t.id, score: null },
          incumbent: { model: t.id, score: null },
          threshold: null,
          reason: `alias ${name} already points at ${t.id}`,
          eval_set: null,
        };
        return { decision, switch: null };
      }
      const incumbent = current === null ? null : await this.#registry.target(current);
      if (current !== null && !incumbent) {
        throw new RegistryError("not_found", `The alias's current target ${current} is not servable here`, "alias");
      }
      const { scores, examples } = await this.#evaluator.evaluate(incumbent ? [t, incumbent] : [t], data);
      const decision = decidePromotion({
        alias: name,
        gate,
        candidate: scores[0],
        incumbent: scores[1] ?? null,
        evalSet: { source: data.source, examples, tokens: scores[0].tokens },
      });
      const why = reason ? `${reason}: ${decision.reason}` : decision.reason;
      const evaluation = { ...decision };
      if (decision.decision === "refused") {
        await this.#store.aliases.refuse(name, storeTarget(t), why, evaluation, { expectedTarget: current });
        return { decision, switch: null };
      }
      const from = this.#registry.aliasTarget(name) ?? null;
      const switched = await this.#switchTo(
        name,
        t,
        from,
        () => this.#store.aliases.set(name, storeTarget(t), why, { evaluation, expectedTarget: current }),
      );
      return { decision, switch: switched };
    });
  }

  /** The version or base model `target` names (an alias or an unknown id is an error). */
  async #candidate(target: string): Promise<ModelTarget> {
    if (this.#registry.aliasTarget(target) !== undefined) {
      throw new RegistryError(
        "invalid_alias",
        `target must be a version or base model, not an alias (${target})`,
        "target",
      );
    }
    const t = await this.#registry.target(target);
    if (!t) throw new RegistryError("not_found", `No such model version or base model: ${target}`, "target");
    return t;
  }

  /** Restores the alias's previous target (store stack semantics) once that target validated. */
  rollback(name: string, reason: string | null = null): Promise<AliasSwitch> {
    return this.#serial(name, async () => {
      const current = await this.#store.aliases.find(name);
      if (!current) throw new RegistryError("not_found", `No such alias: ${name}`, "alias");
      const history = await this.#store.aliases.history(name, { limit: 10_000, order: "desc" });
      const previous = rollbackTarget(history.data);
      if (previous === null) {
        throw new RegistryError("no_previous_target", `Alias ${name} has no previous target to roll back to`, "alias");
      }
      const t = await this.#registry.target(previous);
      if (!t) throw new RegistryError("not_found", `The previous target ${previous} is not servable here`, "alias");
      const from = this.#registry.aliasTarget(name) ?? null;
      const ready = await this.#prepare(name, "rollback", "api", from, t);
      try {
        const alias = await this.#store.aliases.rollback(name, reason);
        if (alias.target !== t.id) {
          // Someone changed the alias in between; serve whatever the store says now.
          await this.#reconcile(name);
          return { alias, serving: this.#registry.aliasTarget(name) ?? alias.target, changed: true, event: null };
        }
        this.#registry.setAliasTarget(name, t.id);
        return { alias, serving: t.id, changed: true, event: this.#switched(name, "rollback", "api", from, t, ready) };
      } finally {
        ready.lease.release();
      }
    });
  }

  async get(name: string): Promise<AliasRecord> {
    const row = await this.#store.aliases.find(name);
    if (!row) throw new RegistryError("not_found", `No such alias: ${name}`, "alias");
    return row;
  }

  list(): Promise<AliasRecord[]> {
    return this.#store.aliases.list();
  }

  history(name: string, limit = 100): Promise<Page<AliasHistoryEntry>> {
    return this.#store.aliases.history(name, { limit, order: "desc" });
  }

  /** This replica's switch/rejection log for `name`, newest first. */
  events(name: string): AliasEvent[] {
    return [...(this.#events.get(name) ?? [])].reverse();
  }

  /** The target this replica serves `name` with (may lag the store while a switch validates). */
  serving(name: string): string | null {
    return this.#registry.aliasTarget(name) ?? null;
  }

  // ---------- internals ----------

  async #checkName(name: string): Promise<void> {
    if (name.startsWith(RESERVED_ALIAS_PREFIX)) {
      throw new RegistryError(
        "invalid_alias",
        `Invalid alias name '${name.slice(0, 80)}': the prefix '${RESERVED_ALIAS_PREFIX}' is reserved for version ids`,
        "name",
      );
    }
    if (!ALIAS_NAME_PATTERN.test(name)) {
      throw new RegistryError("invalid_alias", `Invalid alias name '${name.slice(0, 80)}': ${ALIAS_NAME_RULE}`, "name");
    }
    if (this.#registry.bases.has(name) || (await this.#registry.versions.find(name)) !== null) {
      throw new RegistryError("conflict", `Alias ${name} would shadow the model of the same name`, "name");
    }
  }

  /** Store row → local serving target, validating a new target first. */
  async #reconcile(name: string, via?: "notify" | "refresh"): Promise<void> {
    if (via) this.#via.set(name, via);
    try {
      await this.#reconcileNow(name);
    } finally {
      this.#via.delete(name);
    }
  }

  async #reconcileNow(name: string): Promise<void> {
    const row = await this.#store.aliases.find(name);
    const from = this.#registry.aliasTarget(name) ?? null;
    if (!row) {
      this.#registry.setAliasTarget(name, null);
      return;
    }
    if (row.target === from) return;
    const t = await this.#registry.target(row.target);
    if (!t) {
      this.#record(name, "sync", "replica", from, row.target, `target ${row.target} is unknown on this replica`, null);
      return;
    }
    let ready: Ready;
    try {
      ready = await this.#prepare(name, "sync", "replica", from, t);
    } catch {
      return; // recorded by #prepare; the old target keeps serving
    }
    try {
      this.#registry.setAliasTarget(name, t.id);
      this.#switched(name, "sync", "replica", from, t, ready);
    } finally {
      ready.lease.release();
    }
  }

  /** Loads and validates `t`; on failure records a rejection and throws. */
  async #prepare(
    name: string,
    action: AliasEvent["action"],
    origin: AliasOrigin,
    from: string | null,
    t: ModelTarget,
  ): Promise<Ready> {
    const started = performance.now();
    let lease: EngineLease;
    try {
      lease = await this.#registry.acquire(t);
    } catch (e) {
      const reason = `load failed: ${errorText(e)}`;
      this.#record(name, action, origin, from, t.id, reason, null);
      if (e instanceof InsufficientStorageError) throw e; // a 507 naming what filled, not "cannot be loaded"
      throw new RegistryError("load_failed", `${t.id} cannot be loaded for alias ${name}: ${errorText(e)}`, "target", {
        cause: e,
      });
    }
    const loadMs = performance.now() - started;
    // A probe already run on this engine (e.g. when it was warmed) is reused, not rerun.
    const probe = await this.#registry.validate(lease);
    const validateMs = performance.now() - started - loadMs;
    if (!probe.ok) {
      lease.release();
      // A broken engine must not be reused by the next attempt or a direct request.
      this.#registry.pool.evict(t.id);
      this.#record(name, action, origin, from, t.id, `validation failed: ${probe.reason}`, {
        loadMs,
        validateMs,
        probe,
      });
      throw new RegistryError(
        "validation_failed",
        `${t.id} failed validation, alias ${name} still serves ${from ?? "nothing"}: ${probe.reason}`,
        "target",
      );
    }
    return { lease, loadMs, validateMs, probe };
  }

  #switched(
    name: string,
    action: AliasEvent["action"],
    origin: AliasOrigin,
    from: string | null,
    t: ModelTarget,
    ready: Ready,
  ): AliasEvent {
    return this.#push({
      at: new Date(),
      alias: name,
      type: "switched",
      action,
      origin,
      from,
      to: t.id,
      reason: null,
      loadMs: ready.loadMs,
      validateMs: ready.validateMs,
      probeText: ready.probe.text,
    });
  }

  #record(
    name: string,
    action: AliasEvent["action"],
    origin: AliasOrigin,
    from: string | null,
    to: string,
    reason: string,
    timing: { loadMs: number; validateMs: number; probe: ProbeResult } | null,
  ): void {
    this.#push({
      at: new Date(),
      alias: name,
      type: "rejected",
      action,
      origin,
      from,
      to,
      reason,
      loadMs: timing?.loadMs ?? null,
      validateMs: timing?.validateMs ?? null,
      probeText: timing?.probe.text ?? null,
    });
  }

  #push(event: AliasEvent): AliasEvent {
    const via = this.#via.get(event.alias);
    if (via && event.origin === "replica") {
      event.via = via;
      if (event.type === "rejected") this.#rejected.set(event.alias, event.to);
    }
    if (event.type === "switched") this.#rejected.delete(event.alias);
    const list = this.#events.get(event.alias) ?? [];
    list.push(event);
    if (list.length > this.#maxEvents) list.splice(0, list.length - this.#maxEvents);
    this.#events.set(event.alias, list);
    this.#onEvent(event);
    return event;
  }

  /** Runs `fn` after every earlier change to `name` settled. */
  #serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#chains.get(name) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#chains.set(name, next);
    const cleanup = () => {
      if (this.#chains.get(name) === next) this.#chains.delete(name);
    };
    next.then(cleanup, cleanup);
    return next;
  }
}

interface Ready {
  lease: EngineLease;
  /** Time this switch spent loading and validating (0 when warmed before). */
  loadMs: number;
  validateMs: number;
  probe: ProbeResult;
}

function storeTarget(t: ModelTarget): AliasTarget {
  return t.kind === "version" ? { kind: "version", version: t.record.id } : { kind: "base_model", model: t.id };
}
