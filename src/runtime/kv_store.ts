/**
 * Where the worker keeps the KV caches of live sequences: prefilled
 * sequences wait as rows of their prefill's keys and values (a batch of one,
 * or a row of a left-padded batched prefill) until their first decode step,
 * then live in one `KvBatch` (see kv_batch.ts). `prepare` makes the batch hold
 * exactly the sequences of the next step, copying only rows that join.
 */
import type { KvCache } from "./causal_lm.ts";
import { KvBatch, type RowSource } from "./kv_batch.ts";

/**
 * Batch buffers up to this size are kept when the last sequence leaves, so
 * the next burst of requests reuses them: fresh buffers cost a page fault per
 * 4 KiB on first touch (~100 ms per wave of 8 joins on the 135M bench model).
 */
export const RETAINED_BATCH_BYTES = 256 * 2 ** 20;

/** A request names a sequence the store does not hold, or holds twice. */
export class SequenceStateError extends Error {
  override name = "SequenceStateError";
}

/** A prefill's cache has one row per sequence, and none of them is held already. */
export function checkPrefill(ids: number[], cache: KvCache, lens: number[], held: (id: number) => boolean): void {
  if (ids.length !== cache.batch || lens.length !== cache.batch) {
    throw new SequenceStateError(`a prefill cache of ${cache.batch} rows for ${ids.length} sequences`);
  }
  for (const id of ids) if (held(id)) throw new SequenceStateError(`sequence ${id} already exists`);
}

export class KvStore {
  /** Sequences outside the batch: fresh prefills and parked batch rows. */
  readonly #solo = new Map<number, RowSource>();
  #batch: KvBatch | null = null;

  has(id: number): boolean {
    return this.#solo.has(id) || (this.#batch?.has(id) ?? false);
  }

  /** Number of sequences held (solo and batched). */
  get size(): number {
    return this.#solo.size + (this.#batch?.size ?? 0);
  }

  /** The sequences of one prefill: row b of `cache` is `ids[b]`, its `lens[b]` tokens right-aligned. */
  addPrefilled(ids: number[], cache: KvCache, lens: number[]): void {
    checkPrefill(ids, cache, lens, (id) => this.has(id));
    ids.forEach((id, row) =>
      this.#solo.set(id, { id, layers: cache.layers, row, width: cache.length, len: lens[row] })
    );
  }

  drop(ids: Iterable<number>): void {
    for (const id of ids) {
      if (this.#solo.delete(id)) continue;
      this.#batch?.remove(id);
      if (this.#batch?.size === 0 && this.#batch.bytes > RETAINED_BATCH_BYTES) this.#batch = null;
    }
  }

  clear(): void {
    this.#solo.clear();
    this.#batch = null;
  }

  /**
   * The batch for a step over exactly `ids` (unique, all held). Batch rows not
   * in `ids` are parked as solo caches; solo sequences in `ids` join (copied).
   */
  prepare(ids: number[]): { batch: KvBatch; joined: number } {
    if (ids.length === 0) throw new SequenceStateError("a step needs at least one sequence");
    if (new Set(ids).size !== ids.length) throw new SequenceStateError("duplicate sequence in a step");
    for (const id of ids) if (!this.has(id)) throw new SequenceStateError(`unknown sequence ${id}`);
    const wanted = new Set(ids);
    const batch = this.#batch;
    for (const id of batch?.ids.slice() ?? []) {
      if (wanted.has(id)) continue;
      const c = batch!.extract(id);
      this.#solo.set(id, { id, layers: c.layers, row: 0, width: c.length, len: c.length });
      batch!.remove(id);
    }
    const joining = ids.filter((id) => this.#solo.has(id));
    const target = batch ?? KvBatch.like(this.#solo.get(joining[0])!);
    target.reserve(target.size + joining.length, Math.max(0, ...joining.map((id) => this.#solo.get(id)!.len)));
    for (const id of joining) {
      target.add(this.#solo.get(id)!);
      this.#solo.delete(id);
    }
    this.#batch = target;
    return { batch: target, joined: joining.length };
  }
}
