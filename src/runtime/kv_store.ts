/**
 * Where the worker keeps the KV caches of live sequences: prefilled
 * sequences wait as solo caches until their first decode step, then live in
 * one `PaddedBatch` (see kv_batch.ts for why). `prepare` makes the batch
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
  readonly #solo = new Map<number, KvCache>();
  #batch: PaddedBatch | null = null;

  has(id: number): boolean {
    return this.#solo.has(id) || (this.#batch?.has(id) ?? false);
  }

  /** Number of sequences held (solo and batched). */
  get size(): number {
    return this.#solo.size + (this.#batch?.size ?? 0);
  }

  addSolo(id: number, cache: KvCache): void {
    if (this.has(id)) throw new SequenceStateError(`sequence ${id} already exists`);
    this.#solo.set(id, cache);
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
      this.#solo.set(id, batch!.extract(id));
      batch!.remove(id);
    }
    if (batch?.size === 0) batch = null;
    const joining = ids.filter((id) => this.#solo.has(id) && wanted.has(id));
    let repacked = false;
    if (!batch && joining.length === 1) {
      batch = PaddedBatch.fromSolo(joining[0], this.#solo.get(joining[0])!);
    } else if (joining.length > 0 || (batch && needsCompaction(batch))) {
      const rows: RowSource[] = [
        ...(batch?.rows() ?? []),
        ...joining.map((id) => {
          const c = this.#solo.get(id)!;
          return { id, layers: c.layers, row: 0, width: c.length, len: c.length };
        }),
      ];
      batch = PaddedBatch.pack(rows);
      repacked = true;
    }
    for (const id of joining) this.#solo.delete(id);
    this.#batch = batch;
    return { batch: batch!, repacked };
  }
}

/** Trim all-padding columns once they are a quarter of the width (each costs attention work every step). */
function needsCompaction(batch: PaddedBatch): boolean {
  const pad = batch.commonPadding;
  return pad >= 8 && pad * 4 >= batch.width;
}
