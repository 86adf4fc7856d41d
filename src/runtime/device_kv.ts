/**
 * The KV caches of live sequences when they live in GPU memory (WebGPU):
 * the host never holds them. A step feeds the batch's caches as `past`
 * (gpu-buffer tensors) and adopts the step's `present` (past ++ the new
 * token, also on the device) as the batch's caches; only token ids, the mask
 * and positions go up and logits come down.
 *
 * Layout: right-aligned. Row b's `lens[b]` tokens occupy the last `lens[b]`
 * columns of the batch's `width`; columns before them are masked padding. A
 * decode step appends one column to every row, so the alignment holds. Rows
 * join (a prefilled sequence: its tokens end at its prefill's last column)
 * and leave through the KV graphs of kv_ops.ts, which also cut leading
 * columns no row uses once they exceed SLACK_COLUMNS.
 *
 * The store holds every tensor it is given and releases it when no sequence
 * uses it: GPU memory is freed by dispose() (under the device lock:
 * releaseOnDevice), not by the JS garbage collector.
 */
import type { KvCache, LayerKv } from "./causal_lm.ts";
import { releaseOnDevice } from "./device_lock.ts";
import { checkPrefill, SequenceStateError } from "./kv_store.ts";
import type { OrtTensor } from "./ort.ts";

/** Leading columns no row uses that are kept before they are cut away (a copy of the batch). */
export const SLACK_COLUMNS = 32;

/** The KV rearrangements (kv_ops.ts) on some device. */
export interface KvOps {
  /** Rows `rows` of `src`, columns from `start` on (new tensors; `src` untouched). */
  select(src: LayerKv[], rows: number[], start: number): Promise<LayerKv[]>;
  /** `dst` left-padded by `padDst` columns, then rows `rows` of `src` (columns from `start`) left-padded by `padSrc`. */
  join(
    dst: LayerKv[],
    padDst: number,
    src: LayerKv[],
    rows: number[],
    start: number,
    padSrc: number,
  ): Promise<LayerKv[]>;
}

/** Tensors shared by the rows of one prefill until every row has joined or left. */
interface Group {
  layers: LayerKv[];
  width: number;
  live: number;
}

interface Solo {
  group: Group;
  row: number;
  len: number;
}

export function disposeLayers(layers: readonly LayerKv[]): void {
  for (const l of layers) {
    dispose(l.key);
    dispose(l.value);
  }
}

function dispose(t: OrtTensor): void {
  // CPU tensors (tests run the same logic on the CPU) have nothing to free.
  if (t.location === "gpu-buffer") releaseOnDevice(t);
}

/** The decode batch: its inputs for the next step, and the step's `present` adopted after it. */
export class DeviceBatch {
  /** Tensor row of each sequence: rows of dropped sequences stay in the tensors until the next prepare. */
  readonly rows: number[];
  readonly tensorRows: number;

  constructor(
    public layers: LayerKv[],
    readonly ids: number[],
    readonly lens: number[],
    public width: number,
  ) {
    this.rows = ids.map((_, i) => i);
    this.tensorRows = ids.length;
  }

  get size(): number {
    return this.ids.length;
  }

  /** Sequences left since the tensors were last copied. */
  get stale(): boolean {
    return this.rows.length !== this.tensorRows;
  }

  stepInputs(): { past: KvCache; attentionMask: number[][]; positionIds: number[][] } {
    if (this.stale) throw new Error("a batch with dropped rows must be prepared before a step");
    const width = this.width;
    return {
      past: { layers: this.layers, length: width, batch: this.ids.length },
      attentionMask: this.lens.map((len) => {
        const m = new Array<number>(width + 1).fill(0);
        m.fill(1, width - len);
        return m;
      }),
      positionIds: this.lens.map((len) => [len]),
    };
  }

  /** The step's `present` ([B, kv, width + 1, hd]) becomes the cache; the old tensors are freed. */
  adopt(present: LayerKv[]): void {
    const dims = present[0]?.key.dims;
    if (present.length !== this.layers.length || dims?.[0] !== this.ids.length || dims[2] !== this.width + 1) {
      disposeLayers(present);
      throw new Error(`a step's present [${dims}] does not extend a batch of ${this.ids.length} x ${this.width}`);
    }
    disposeLayers(this.layers);
    this.layers = present;
    this.width++;
    for (let b = 0; b < this.lens.length; b++) this.lens[b]++;
  }

  /** Forgets a sequence (its columns stay in the tensors until the next copy). */
  remove(id: number): boolean {
    const i = this.ids.indexOf(id);
    if (i < 0) return false;
    this.ids.splice(i, 1);
    this.lens.splice(i, 1);
    this.rows.splice(i, 1);
    return true;
  }
}

export class DeviceKvStore {
  readonly #solo = new Map<number, Solo>();
  #batch: DeviceBatch | null = null;

  constructor(private readonly ops: KvOps) {}

  has(id: number): boolean {
    return this.#solo.has(id) || (this.#batch?.ids.includes(id) ?? false);
  }

  get size(): number {
    return this.#solo.size + (this.#batch?.size ?? 0);
  }

  /** Row b of `cache` ([n, kv, width, hd], on the device) is sequence `ids[b]`, its `lens[b]` tokens right-aligned. */
  addPrefilled(ids: number[], cache: KvCache, lens: number[]): void {
    checkPrefill(ids, cache, lens, (id) => this.has(id));
    const group: Group = { layers: cache.layers, width: cache.length, live: ids.length };
    ids.forEach((id, row) => this.#solo.set(id, { group, row, len: lens[row] }));
  }

  drop(ids: Iterable<number>): void {
    for (const id of ids) {
      const solo = this.#solo.get(id);
      if (solo) {
        this.#solo.delete(id);
        this.#release(solo.group);
        continue;
      }
      // The row's columns stay until the next prepare copies the batch; a batch with no rows is freed now.
      if (this.#batch?.remove(id) && this.#batch.size === 0) this.#dropBatch();
    }
  }

  clear(): void {
    for (const group of new Set([...this.#solo.values()].map((s) => s.group))) disposeLayers(group.layers);
    this.#solo.clear();
    this.#dropBatch();
  }

  /**
   * The batch for a step over exactly `ids` (unique, all held): batch rows
   * not in `ids` are parked as a group of their own, prefilled sequences in
   * `ids` join.
   */
  async prepare(ids: number[]): Promise<{ batch: DeviceBatch; joined: number }> {
    if (ids.length === 0) throw new SequenceStateError("a step needs at least one sequence");
    if (new Set(ids).size !== ids.length) throw new SequenceStateError("duplicate sequence in a step");
    for (const id of ids) if (!this.has(id)) throw new SequenceStateError(`unknown sequence ${id}`);
    const wanted = new Set(ids);
    await this.#settleBatch(wanted);
    const joining = ids.filter((id) => this.#solo.has(id));
    // One join per prefill group: its joining rows are copied in one run.
    const byGroup = new Map<Group, number[]>();
    for (const id of joining) {
      const g = this.#solo.get(id)!.group;
      byGroup.set(g, [...(byGroup.get(g) ?? []), id]);
    }
    for (const [group, members] of byGroup) await this.#join(group, members);
    return { batch: this.#batch!, joined: joining.length };
  }

  /**
   * Makes the batch hold only rows in `wanted`: others are parked as one new
   * group, and rows dropped earlier are discarded, in one copy of the kept
   * rows (which also cuts leading columns beyond the slack).
   */
  async #settleBatch(wanted: Set<number>): Promise<void> {
    const batch = this.#batch;
    if (!batch) return;
    const all = batch.ids.map((id, i) => ({ id, len: batch.lens[i], row: batch.rows[i] }));
    const keep = all.filter((r) => wanted.has(r.id));
    const park = all.filter((r) => !wanted.has(r.id));
    const longest = Math.max(0, ...keep.map((r) => r.len));
    if (park.length === 0 && !batch.stale && batch.width - longest <= SLACK_COLUMNS) return;
    if (park.length > 0) {
      const parkedWidth = Math.max(...park.map((r) => r.len));
      const layers = await this.ops.select(batch.layers, park.map((r) => r.row), batch.width - parkedWidth);
      const group: Group = { layers, width: parkedWidth, live: park.length };
      park.forEach((r, i) => this.#solo.set(r.id, { group, row: i, len: r.len }));
    }
    if (keep.length === 0) {
      this.#dropBatch();
      return;
    }
    const layers = await this.ops.select(batch.layers, keep.map((r) => r.row), batch.width - longest);
    this.#dropBatch();
    this.#batch = new DeviceBatch(layers, keep.map((r) => r.id), keep.map((r) => r.len), longest);
  }

  async #join(group: Group, members: number[]): Promise<void> {
    const solos = members.map((id) => this.#solo.get(id)!);
    const longest = Math.max(...solos.map((s) => s.len));
    const start = group.width - longest;
    const rows = solos.map((s) => s.row);
    const batch = this.#batch;
    let layers: LayerKv[];
    let width: number;
    if (!batch) {
      layers = await this.ops.select(group.layers, rows, start);
      width = longest;
    } else {
      width = Math.max(batch.width, longest);
      layers = await this.ops.join(batch.layers, width - batch.width, group.layers, rows, start, width - longest);
    }
    const ids = [...(batch?.ids ?? []), ...members];
    const lens = [...(batch?.lens ?? []), ...solos.map((s) => s.len)];
    if (batch) this.#dropBatch();
    this.#batch = new DeviceBatch(layers, ids, lens, width);
    for (const id of members) this.#solo.delete(id);
    group.live -= members.length;
    if (group.live === 0) disposeLayers(group.layers);
  }

  #release(group: Group): void {
    if (--group.live === 0) disposeLayers(group.layers);
  }

  #dropBatch(): void {
    if (!this.#batch) return;
    disposeLayers(this.#batch.layers);
    this.#batch = null;
  }
}
