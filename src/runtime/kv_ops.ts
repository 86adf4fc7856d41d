/**
 * Graphs that rearrange KV caches on the device, for the WebGPU engine whose
 * caches never leave GPU memory (device_kv.ts). Each graph takes every
 * layer's key and value ([rows, kvHeads, columns, headDim]) in one run:
 *
 * - select(src, rows, start): rows `rows` of `src`, columns from `start` on —
 *   a sequence leaving the batch, a row parked alone, leading columns that no
 *   row uses any more cut away;
 * - join(dst, src, rows, start, padDst, padSrc): `dst` with rows `rows` of
 *   `src` (columns from `start`) appended below; each side is first
 *   left-padded (zero columns, masked) so both end at the same column.
 *
 * Caches are right-aligned: a row's tokens end at the last column, so a
 * decode step's `present` (past ++ the new token) keeps every row aligned.
 */
import { GraphBuilder } from "../onnx/builder.ts";
import type { DType, Graph, Value } from "../onnx/ir.ts";
import type { LayerKv } from "./causal_lm.ts";
import type { KvOps } from "./device_kv.ts";
import { ort, type OrtSession, type OrtTensor } from "./ort.ts";

export const KV_OP_NAMES = {
  src: (i: number, kind: "key" | "value") => `src.${i}.${kind}`,
  dst: (i: number, kind: "key" | "value") => `dst.${i}.${kind}`,
  out: (i: number, kind: "key" | "value") => `out.${i}.${kind}`,
  rows: "rows",
  start: "start",
  padDst: "pad_dst",
  padSrc: "pad_src",
} as const;

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
  dtype: DType;
}

const KINDS = ["key", "value"] as const;

function cacheInput(g: GraphBuilder, name: string, s: KvShape, rows: string, cols: string): Value {
  return g.input(name, s.dtype, [rows, s.kvHeads, cols, s.headDim]);
}

/** Rows `rows` (int64 [k]), columns [start, end) (start: int64 [1]). */
function pick(g: GraphBuilder, x: Value, rows: Value, start: Value, s: KvShape): Value {
  const gathered = g.gather(x, rows, 0);
  return g.op1(
    "Slice",
    [gathered, start, g.constant([Number.MAX_SAFE_INTEGER]), g.constant([2])],
    {},
    { types: [{ dtype: s.dtype, shape: ["k", s.kvHeads, "picked", s.headDim] }] },
  );
}

/** `pad` (int64 [8]: ONNX Pad's begin/end pads of the 4 dims) zero columns before. */
function leftPad(g: GraphBuilder, x: Value, pads: Value, s: KvShape): Value {
  return g.op1("Pad", [x, pads], { mode: "constant" }, {
    types: [{ dtype: s.dtype, shape: [x.shape?.[0] ?? "rows", s.kvHeads, "padded", s.headDim] }],
  });
}

export function buildKvSelect(s: KvShape): Graph {
  const g = new GraphBuilder("kv_select");
  const rows = g.input(KV_OP_NAMES.rows, "int64", ["k"]);
  const start = g.input(KV_OP_NAMES.start, "int64", [1]);
  for (let i = 0; i < s.layers; i++) {
    for (const kind of KINDS) {
      const src = cacheInput(g, KV_OP_NAMES.src(i, kind), s, "rows", "columns");
      g.output(pick(g, src, rows, start, s), KV_OP_NAMES.out(i, kind));
    }
  }
  return g.build();
}

export function buildKvJoin(s: KvShape): Graph {
  const g = new GraphBuilder("kv_join");
  const rows = g.input(KV_OP_NAMES.rows, "int64", ["k"]);
  const start = g.input(KV_OP_NAMES.start, "int64", [1]);
  const padDst = g.input(KV_OP_NAMES.padDst, "int64", [8]);
  const padSrc = g.input(KV_OP_NAMES.padSrc, "int64", [8]);
  for (let i = 0; i < s.layers; i++) {
    for (const kind of KINDS) {
      const dst = cacheInput(g, KV_OP_NAMES.dst(i, kind), s, "dst_rows", "dst_columns");
      const src = cacheInput(g, KV_OP_NAMES.src(i, kind), s, "src_rows", "src_columns");
      const joined = g.concat([leftPad(g, dst, padDst, s), leftPad(g, pick(g, src, rows, start, s), padSrc, s)], 0);
      g.output(joined, KV_OP_NAMES.out(i, kind));
    }
  }
  return g.build();
}

/** Pad's `pads` input for `n` zero columns before a [rows, kv, columns, hd] tensor. */
export function columnPads(n: number): number[] {
  return [0, 0, n, 0, 0, 0, 0, 0];
}

/** Runs the KV graphs in sessions on the cache's device (their outputs stay there: see device_kv.ts). */
export class SessionKvOps implements KvOps {
  #select: Promise<OrtSession> | null = null;
  #join: Promise<OrtSession> | null = null;

  constructor(readonly shape: KvShape, private readonly open: (graph: Graph) => Promise<OrtSession>) {}

  async select(src: LayerKv[], rows: number[], start: number): Promise<LayerKv[]> {
    this.#select ??= this.open(buildKvSelect(this.shape));
    const feeds: Record<string, OrtTensor> = { [KV_OP_NAMES.rows]: int64(rows), [KV_OP_NAMES.start]: int64([start]) };
    src.forEach((l, i) => {
      feeds[KV_OP_NAMES.src(i, "key")] = l.key;
      feeds[KV_OP_NAMES.src(i, "value")] = l.value;
    });
    return this.#layers(await (await this.#select).run(feeds));
  }

  async join(
    dst: LayerKv[],
    padDst: number,
    src: LayerKv[],
    rows: number[],
    start: number,
    padSrc: number,
  ): Promise<LayerKv[]> {
    this.#join ??= this.open(buildKvJoin(this.shape));
    const feeds: Record<string, OrtTensor> = {
      [KV_OP_NAMES.rows]: int64(rows),
      [KV_OP_NAMES.start]: int64([start]),
      [KV_OP_NAMES.padDst]: int64(columnPads(padDst)),
      [KV_OP_NAMES.padSrc]: int64(columnPads(padSrc)),
    };
    dst.forEach((l, i) => {
      feeds[KV_OP_NAMES.dst(i, "key")] = l.key;
      feeds[KV_OP_NAMES.dst(i, "value")] = l.value;
    });
    src.forEach((l, i) => {
      feeds[KV_OP_NAMES.src(i, "key")] = l.key;
      feeds[KV_OP_NAMES.src(i, "value")] = l.value;
    });
    return this.#layers(await (await this.#join).run(feeds));
  }

  #layers(out: Record<string, OrtTensor>): LayerKv[] {
    return Array.from({ length: this.shape.layers }, (_, i) => ({
      key: out[KV_OP_NAMES.out(i, "key")],
      value: out[KV_OP_NAMES.out(i, "value")],
    }));
  }

  async release(): Promise<void> {
    for (const s of [this.#select, this.#join]) await (await s?.catch(() => null))?.release();
    this.#select = this.#join = null;
  }
}

function int64(values: number[]): OrtTensor {
  return new ort.Tensor("int64", BigInt64Array.from(values, BigInt), [values.length]);
}
