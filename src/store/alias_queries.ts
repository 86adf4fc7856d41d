/**
 * Aliases: a stable model name that points at a version or a base model.
 * Every change writes a history row in the same transaction and NOTIFYs
 * `ALIAS_CHANNEL` (delivered on commit), so every replica can hot-swap.
 *
 * Rollback has stack semantics: it undoes the most recent `set` not already
 * undone (set A, set B, set C, rollback → B, rollback → A).
 */
import { and, asc, desc, eq, gt, lt, sql } from "drizzle-orm";
import type { Db } from "./database.ts";
import { StoreError } from "./errors.ts";
import { clampLimit, type Page, toPage } from "./pagination.ts";
import { FOREIGN_KEY_VIOLATION, sqlState } from "./pg_errors.ts";
import {
  ALIAS_HISTORY_ACTIONS,
  ALIAS_TARGET_KINDS,
  type JsonObject,
  modelAliases as aliases,
  modelAliasHistory as history,
  modelVersions,
} from "./schema.ts";

export type AliasTargetKind = typeof ALIAS_TARGET_KINDS[number];
/** `refused`: an eval-gated promotion kept the alias (`next` is the candidate it refused); no change, no NOTIFY. */
export type AliasHistoryAction = typeof ALIAS_HISTORY_ACTIONS[number];

/** What `set` accepts: a version (by id or name) or a base model id (not checked here). */
export type AliasTarget = { kind: "version"; version: string } | { kind: "base_model"; model: string };

/** A target as stored: `target` is the model id the alias serves. */
export interface ResolvedTarget {
  kind: AliasTargetKind;
  target: string;
  versionId: string | null;
}

export interface AliasRecord extends ResolvedTarget {
  name: string;
  updatedAt: Date;
}

export interface AliasHistoryEntry {
  /** Monotonic; the history's cursor. */
  seq: number;
  alias: string;
  action: AliasHistoryAction;
  previous: ResolvedTarget | null;
  next: ResolvedTarget;
  reason: string | null;
  /** The promotion gate's decision (both scores) when an evaluation decided this change or refusal. */
  evaluation: JsonObject | null;
  at: Date;
}

export interface AliasSetOptions {
  /** Recorded with the history row (an eval-gated promotion's decision). */
  evaluation?: JsonObject | null;
  /**
   * Compare-and-set: the target the alias must still have (null: the alias must not exist yet), else a
   * `conflict` — an evaluation compared the candidate with this target, so it must not switch from another.
   */
  expectedTarget?: string | null;
}

export interface AliasChangeResult {
  alias: AliasRecord;
  /** False when the alias already pointed there (no history row, no notification). */
  changed: boolean;
}

/** The NOTIFY payload. */
export interface AliasChange extends ResolvedTarget {
  alias: string;
}

export interface AliasHistoryRequest {
  /** `seq` of the last entry of the previous page. */
  afterSeq?: number | null;
  limit: number;
  order?: "asc" | "desc";
}

export const ALIAS_CHANNEL = "scalora_alias_changed";
const ALIAS_LOCK_NS = 0x5ca1a11a;

type Listen = (channel: string, onPayload: (payload: string) => void) => Promise<() => Promise<void>>;

const aliasColumns = {
  name: aliases.name,
  kind: aliases.targetKind,
  target: aliases.target,
  versionId: aliases.targetVersionId,
  updatedAt: aliases.updatedAt,
};

function sameTarget(a: ResolvedTarget, b: ResolvedTarget): boolean {
  return a.kind === b.kind && a.target === b.target && a.versionId === b.versionId;
}

function historyEntry(row: typeof history.$inferSelect): AliasHistoryEntry {
  return {
    seq: row.seq,
    alias: row.alias,
    action: row.action,
    previous: row.previousKind !== null && row.previousTarget !== null
      ? { kind: row.previousKind, target: row.previousTarget, versionId: row.previousVersionId }
      : null,
    next: { kind: row.newKind, target: row.newTarget, versionId: row.newVersionId },
    reason: row.reason,
    evaluation: row.evaluation ?? null,
    at: row.at,
  };
}

export class AliasQueries {
  constructor(private readonly db: Db, private readonly listen: Listen) {}

  async get(name: string): Promise<AliasRecord> {
    const row = await this.find(name);
    if (!row) throw new StoreError("not_found", `No such alias: ${name}`, "alias");
    return row;
  }

  async find(name: string): Promise<AliasRecord | null> {
    const [row] = await this.db.select(aliasColumns).from(aliases).where(eq(aliases.name, name)).limit(1);
    return row ?? null;
  }

  async list(): Promise<AliasRecord[]> {
    return await this.db.select(aliasColumns).from(aliases).orderBy(asc(aliases.name));
  }

  async set(
    name: string,
    target: AliasTarget,
    reason: string | null = null,
    opts: AliasSetOptions = {},
  ): Promise<AliasChangeResult> {
    try {
      return await this.db.transaction(async (tx) => {
        await this.lock(tx, name);
        const next = await this.resolve(tx, target);
        const [current] = await tx.select(aliasColumns).from(aliases).where(eq(aliases.name, name)).limit(1);
        this.#expect(name, current, opts.expectedTarget);
        if (current && sameTarget(current, next)) return { alias: current, changed: false };
        const alias = await this.write(tx, name, current ?? null, next, "set", reason, opts.evaluation ?? null);
        return { alias, changed: true };
      });
    } catch (e) {
      // The version was deleted between being resolved and being pointed at.
      if (sqlState(e) === FOREIGN_KEY_VIOLATION) {
        const what = target.kind === "version" ? target.version : target.model;
        throw new StoreError("not_found", `No such model version: ${what}`, "target");
      }
      throw e;
    }
  }

  /**
   * Records that an eval-gated promotion refused `candidate` for `name`: a history row (action `refused`,
   * `previous` = the alias's target, which stays) with the decision; the alias itself does not change.
   */
  async refuse(
    name: string,
    candidate: AliasTarget,
    reason: string | null,
    evaluation: JsonObject,
    opts: Pick<AliasSetOptions, "expectedTarget"> = {},
  ): Promise<AliasHistoryEntry> {
    return await this.db.transaction(async (tx) => {
      await this.lock(tx, name);
      const next = await this.resolve(tx, candidate);
      const [current] = await tx.select(aliasColumns).from(aliases).where(eq(aliases.name, name)).limit(1);
      this.#expect(name, current, opts.expectedTarget);
      const [row] = await tx.insert(history).values({
        alias: name,
        ...previousColumns(current ?? null),
        ...nextColumns(next),
        action: "refused",
        reason,
        evaluation,
      }).returning();
      return historyEntry(row);
    });
  }

  #expect(name: string, current: AliasRecord | undefined, expected: string | null | undefined): void {
    if (expected === undefined || (current?.target ?? null) === expected) return;
    throw new StoreError(
      "conflict",
      `Alias ${name} changed to ${current?.target ?? "nothing"} while ${expected ?? "its creation"} was being compared`,
      "alias",
    );
  }

  /** Undoes the latest not-yet-undone `set`; `no_previous_target` if that set created the alias. */
  async rollback(name: string, reason: string | null = null): Promise<AliasRecord> {
    try {
      return await this.#rollback(name, reason);
    } catch (e) {
      // The previous target was a version deleted since.
      if (sqlState(e) === FOREIGN_KEY_VIOLATION) {
        throw new StoreError("not_found", `The previous target of alias ${name} no longer exists`, "alias");
      }
      throw e;
    }
  }

  async #rollback(name: string, reason: string | null): Promise<AliasRecord> {
    return await this.db.transaction(async (tx) => {
      await this.lock(tx, name);
      const [current] = await tx.select(aliasColumns).from(aliases).where(eq(aliases.name, name)).limit(1);
      if (!current) throw new StoreError("not_found", `No such alias: ${name}`, "alias");
      const rows = await tx.select().from(history).where(eq(history.alias, name)).orderBy(desc(history.seq));
      const undo = changeToUndo(rows.map(historyEntry));
      if (!undo?.previous) {
        throw new StoreError("no_previous_target", `Alias ${name} has no previous target to roll back to`, "alias");
      }
      return await this.write(tx, name, current, undo.previous, "rollback", reason);
    });
  }

  async history(name: string, req: AliasHistoryRequest): Promise<Page<AliasHistoryEntry>> {
    const limit = clampLimit(req.limit);
    const order = req.order ?? "desc";
    const after = req.afterSeq === undefined || req.afterSeq === null
      ? undefined
      : order === "desc"
      ? lt(history.seq, req.afterSeq)
      : gt(history.seq, req.afterSeq);
    const rows = await this.db.select().from(history).where(and(eq(history.alias, name), after))
      .orderBy(order === "desc" ? desc(history.seq) : asc(history.seq)).limit(limit + 1);
    return toPage(rows.map(historyEntry), limit);
  }

  /** Calls `onChange` for every committed alias change, from any replica. Resolves to an unsubscribe. */
  async subscribe(onChange: (change: AliasChange) => void): Promise<() => Promise<void>> {
    return await this.listen(ALIAS_CHANNEL, (payload) => {
      try {
        onChange(JSON.parse(payload) as AliasChange);
      } catch (e) {
        console.error(`bad ${ALIAS_CHANNEL} payload: ${e}`);
      }
    });
  }

  private async lock(tx: Db, name: string): Promise<void> {
    // Serializes changes to one alias even before its row exists.
    await tx.execute(sql`select pg_advisory_xact_lock(${ALIAS_LOCK_NS}, hashtext(${name}))`);
  }

  private async resolve(tx: Db, target: AliasTarget): Promise<ResolvedTarget> {
    if (target.kind === "base_model") return { kind: "base_model", target: target.model, versionId: null };
    const [version] = await tx.select({ id: modelVersions.id, name: modelVersions.name }).from(modelVersions)
      .where(sql`${modelVersions.id} = ${target.version} or ${modelVersions.name} = ${target.version}`).limit(1);
    if (!version) throw new StoreError("not_found", `No such model version: ${target.version}`, "target");
    return { kind: "version", target: version.name, versionId: version.id };
  }

  private async write(
    tx: Db,
    name: string,
    previous: ResolvedTarget | null,
    next: ResolvedTarget,
    action: "set" | "rollback",
    reason: string | null,
    evaluation: JsonObject | null = null,
  ): Promise<AliasRecord> {
    const values = {
      targetKind: next.kind,
      target: next.target,
      targetVersionId: next.versionId,
      updatedAt: sql`now()`,
    };
    const [alias] = await tx.insert(aliases).values({ name, ...values })
      .onConflictDoUpdate({ target: aliases.name, set: values }).returning(aliasColumns);
    await tx.insert(history).values({
      alias: name,
      ...previousColumns(previous),
      ...nextColumns(next),
      action,
      reason,
      evaluation,
    });
    const change: AliasChange = { alias: name, ...next };
    await tx.execute(sql`select pg_notify(${ALIAS_CHANNEL}, ${JSON.stringify(change)})`);
    return alias;
  }
}

function previousColumns(previous: ResolvedTarget | null) {
  return {
    previousKind: previous?.kind ?? null,
    previousTarget: previous?.target ?? null,
    previousVersionId: previous?.versionId ?? null,
  };
}

function nextColumns(next: ResolvedTarget) {
  return { newKind: next.kind, newTarget: next.target, newVersionId: next.versionId };
}

/**
 * The change a rollback undoes, from the alias's history newest first (stack semantics: each rollback undid the
 * change before it; refused rows changed nothing), or null when there is none.
 */
export function changeToUndo(historyNewestFirst: readonly AliasHistoryEntry[]): AliasHistoryEntry | null {
  let pendingUndos = 0;
  for (const row of historyNewestFirst) {
    if (row.action === "refused") continue;
    if (row.action === "rollback") pendingUndos++;
    else if (pendingUndos > 0) pendingUndos--;
    else return row;
  }
  return null;
}
