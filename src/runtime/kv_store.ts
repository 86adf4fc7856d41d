/**
 * Where the worker keeps the KV caches of live sequences: prefilled
 * sequences wait as rows of their prefill's cache (a batch of one, or a row
 * of a left-padded batched prefill) until their first decode step, then live
 * in one `PaddedBatch` (see kv_batch.ts for why). `prepare` makes the batch
 * hold exactly the sequences of the next step, copying only when that set
 * changed or padding piled up.
 */
import type { KvCache } from "../serve/causal_lm.ts";
import { PaddedBatch, type RowSource } from "./kv_batch.ts";

/** A request names a sequence the store does not hold, or holds twice. */
export class SequenceStateError extends Error {
  override name = "SequenceStateError";
}

export class KvStore {
  /** Sequences outside the batch: fresh prefills and parked batch rows. */
  readonly #solo = new Map<number, RowSource>();
  #batch: PaddedBatch | null = null;

  has(id: number): boolean {
    return this.#solo.has(id) || (this.#batch?.has(id) ?? false);
  }

  /** Number of sequences held (solo and batched). */
  get size(): number {
    return this.#solo.size + (this.#batch?.size ?? 0);
  }

  /** The sequences of one prefill: row b of `cache` is `ids[b]`, its `lens[b]` tokens right-aligned. */
  addPrefilled(ids: number[], cache: KvCache, lens: number[]): void {
    if (ids.length !== cache.batch || lens.length !== cache.batch) {
      throw new SequenceStateError(`a prefill cache of ${cache.batch} rows for ${ids.length} sequences`);
    }
    for (const id of ids) if (this.has(id)) throw new SequenceStateError(`sequence ${id} already exists`);
    ids.forEach((id, row) =>
      this.#solo.set(id, { id, layers: cache.layers, row, width: cache.length, len: lens[row] })
    );
  }

  drop(ids: Iterable<number>): void {
    for (const id of ids) {
      if (this.#solo.delete(id)) continue;
      this.#batch?.remove(id);
      if (this.#batch?.size === 0) this.#batch = null;
    }
  }

  clear(): void {
    this.#solo.clear();
    this.#batch = null;
  }

  /**
   * The batch for a step over exactly `ids` (unique, all held). Batch rows not
   * in `ids` are parked as solo caches; solo sequences in `ids` join.
   */
  prepare(ids: number[]): { batch: PaddedBatch; repacked: boolean } {
    if (ids.length === 0) throw new SequenceStateError("a step needs at least one sequence");
    if (new Set(ids).size !== ids.length) throw new SequenceStateError("duplicate sequence in a step");
    for (const id of ids) if (!this.has(id)) throw new SequenceStateError(`unknown sequence ${id}`);
    const wanted = new Set(ids);
    let batch = this.#batch;
    for (const id of batch?.ids.slice() ?? []) {
      if (wanted.has(id)) continue;
      const c = batch!.extract(id);
      this.#solo.set(id, { id, layers: c.layers, row: 0, width: c.length, len: c.length });
      batch!.remove(id);
    }
    if (batch?.size === 0) batch = null;
    const joining = ids.filter((id) => this.#solo.has(id) && wanted.has(id));
    let repacked = false;
    const lone = !batch && joining.length === 1 ? this.#solo.get(joining[0])! : null;
    if (lone && isWholeCache(lone)) {
      batch = PaddedBatch.fromSolo(lone.id, { layers: lone.layers, length: lone.len, batch: 1 });
    } else if (joining.length > 0 || (batch && needsCompaction(batch))) {
      const rows: RowSource[] = [...(batch?.rows() ?? []), ...joining.map((id) => this.#solo.get(id)!)];
      batch = PaddedBatch.pack(rows);
      repacked = true;
    }
    for (const id of joining) this.#solo.delete(id);
    this.#batch = batch;
    return { batch: batch!, repacked };
  }
}

/** A batch-of-one cache with no padding, which a batch can adopt without a copy. */
function isWholeCache(r: RowSource): boolean {
  return r.row === 0 && r.len === r.width && r.layers[0].key.dims[0] === 1;
}

/** Trim all-padding columns once they are a quarter of the width (each costs attention work every step). */
function needsCompaction(batch: PaddedBatch): boolean {
  const pad = batch.commonPadding;
  return pad >= 8 && pad * 4 >= batch.width;
}
