/**
 * safetensors reader and writer.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {..}}`,
 * then the data region; offsets are relative to its start (byte 8 + N).
 *
 * The reader parses and validates the header up front and then reads one
 * tensor at a time by byte range, so multi-GB shards never sit in one buffer.
 * Floats are decoded to Float32Array (F32, F16, BF16); other dtypes are
 * indexed (so an extra I64 buffer does not break a load) but cannot be read.
 */
import { ModelLoadError } from "./errors.ts";
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from "./half.ts";
import { numel } from "./layout.ts";

/** The dtypes we can decode to / encode from f32. */
export type FloatDtype = "F32" | "F16" | "BF16";
export const FLOAT_DTYPES: readonly FloatDtype[] = ["F32", "F16", "BF16"];

/** Element sizes of every dtype in the safetensors spec we can index. */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

/** Same limit as the reference implementation; guards absurd lengths. */
const MAX_HEADER_BYTES = 100_000_000;

export function isFloatDtype(dtype: string): dtype is FloatDtype {
  return (FLOAT_DTYPES as readonly string[]).includes(dtype);
}

export interface SafetensorsEntry {
  name: string;
  /** dtype as written in the header, e.g. "BF16". */
  dtype: string;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  byteLength: number;
}

export class SafetensorsFile {
  #file: Deno.FsFile | null;
  /** Serialises seek+read pairs on the shared handle. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly path: string,
    readonly size: number,
    readonly metadata: Readonly<Record<string, string>> | null,
    readonly tensors: ReadonlyMap<string, SafetensorsEntry>,
    file: Deno.FsFile,
  ) {
    this.#file = file;
  }

  /** Opens `path` and validates its header; throws ModelLoadError. */
  static async open(path: string): Promise<SafetensorsFile> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      throw new ModelLoadError(
        e instanceof Deno.errors.NotFound
          ? `${path}: file not found`
          : `${path}: cannot open (${e instanceof Error ? e.message : e})`,
        { file: path, cause: e },
      );
    }
    try {
      const size = (await file.stat()).size;
      if (size < 8) {
        throw corrupt(path, `file is ${size} bytes, shorter than the 8-byte header length`);
      }
      const lenBytes = await readExactly(file, 0, 8, path);
      const headerLen = Number(new DataView(lenBytes.buffer).getBigUint64(0, true));
      if (headerLen > MAX_HEADER_BYTES || headerLen > size - 8) {
        throw corrupt(
          path,
          `header length ${headerLen} does not fit a ${size}-byte file`,
        );
      }
      const headerBytes = await readExactly(file, 8, headerLen, path);
      const { tensors, metadata } = parseHeader(
        headerBytes,
        8 + headerLen,
        size,
        path,
      );
      return new SafetensorsFile(path, size, metadata, tensors, file);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** Raw little-endian bytes of one tensor, in a fresh (aligned) buffer. */
  readBytes(name: string): Promise<Uint8Array> {
    const entry = this.#entry(name);
    const run = this.#queue.then(() => {
      if (this.#file === null) {
        throw new ModelLoadError(`${this.path}: file is closed`, { file: this.path });
      }
      return readExactly(this.#file, entry.offset, entry.byteLength, this.path);
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** One tensor decoded to f32 (row-major, shape `tensors.get(name).shape`). */
  async read(name: string): Promise<Float32Array> {
    const entry = this.#entry(name);
    if (!isFloatDtype(entry.dtype)) {
      throw unsupportedDtype(this.path, name, entry.dtype);
    }
    return decodeTensorBytes(await this.readBytes(name), entry.dtype);
  }

  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  #entry(name: string): SafetensorsEntry {
    const entry = this.tensors.get(name);
    if (entry === undefined) {
      throw new ModelLoadError(`${this.path}: no tensor "${name}"`, {
        field: name,
        file: this.path,
      });
    }
    return entry;
  }
}

export function openSafetensors(path: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(path);
}

/** Decodes little-endian tensor bytes of a float dtype to f32. */
export function decodeTensorBytes(bytes: Uint8Array, dtype: FloatDtype): Float32Array {
  const elemBytes = DTYPE_BYTES[dtype];
  if (bytes.byteLength % elemBytes !== 0) {
    throw new RangeError(`decodeTensorBytes: ${bytes.byteLength} bytes is not a whole number of ${dtype}`);
  }
  // Typed-array views need aligned offsets; copy only when they are not.
  const aligned = bytes.byteOffset % elemBytes === 0 ? bytes : bytes.slice();
  const n = aligned.byteLength / elemBytes;
  if (dtype === "F32") {
    return new Float32Array(aligned.buffer, aligned.byteOffset, n);
  }
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  return dtype === "F16" ? decodeF16(halves) : decodeBf16(halves);
}

/** Encodes f32 data as little-endian bytes of `dtype`. */
export function encodeTensorBytes(data: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === "F32") {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const halves = dtype === "F16" ? encodeF16(data) : encodeBf16(data);
  return new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength);
}

function parseHeader(
  bytes: Uint8Array,
  dataStart: number,
  fileSize: number,
  path: string,
): {
  tensors: Map<string, SafetensorsEntry>;
  metadata: Record<string, string> | null;
} {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw corrupt(path, `header is not valid JSON (${e instanceof Error ? e.message : e})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw corrupt(path, "header is not a JSON object");
  }

  let metadata: Record<string, string> | null = null;
  const entries: SafetensorsEntry[] = [];
  const dataSize = fileSize - dataStart;
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(value, path);
      continue;
    }
    const entry = parseEntry(name, value, path);
    const [begin, end] = entry.offsets;
    if (end > dataSize) {
      throw corrupt(
        path,
        `tensor "${name}" ends at data byte ${end} but the file has only ${dataSize} data bytes`,
      );
    }
    entries.push({
      name,
      dtype: entry.dtype,
      shape: entry.shape,
      offset: dataStart + begin,
      byteLength: end - begin,
    });
  }

  // Ranges must not overlap; the data region must end where the last one does.
  const sorted = [...entries].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let cursor = dataStart;
  let previous = "";
  for (const e of sorted) {
    if (e.offset < cursor) {
      throw corrupt(path, `tensor "${e.name}" overlaps tensor "${previous}"`);
    }
    cursor = e.offset + e.byteLength;
    previous = e.name;
  }
  if (cursor !== fileSize) {
    throw corrupt(
      path,
      `data ends at byte ${cursor - dataStart} of the data region but the file has ${dataSize} data bytes`,
    );
  }
  return { tensors: new Map(entries.map((e) => [e.name, e])), metadata };
}

function parseEntry(
  name: string,
  value: unknown,
  path: string,
): { dtype: string; shape: number[]; offsets: [number, number] } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw corrupt(path, `header entry for tensor "${name}" is not an object`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== "string") {
    throw corrupt(path, `tensor "${name}" has no dtype`);
  }
  const elemBytes = DTYPE_BYTES[dtype];
  if (elemBytes === undefined) throw unsupportedDtype(path, name, dtype);
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw corrupt(path, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 || !isIndex(offsets[0]) ||
    !isIndex(offsets[1]) || offsets[1] < offsets[0]
  ) {
    throw corrupt(path, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const expected = numel(shape) * elemBytes;
  if (offsets[1] - offsets[0] !== expected) {
    throw corrupt(
      path,
      `tensor "${name}" spans ${offsets[1] - offsets[0]} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`,
    );
  }
  return { dtype, shape: [...shape], offsets: [offsets[0], offsets[1]] };
}

function parseMetadata(value: unknown, path: string): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw corrupt(path, `__metadata__ is not an object`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw corrupt(path, `__metadata__ value for "${k}" is not a string`);
    }
    out[k] = v;
  }
  return out;
}

function isIndex(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function corrupt(path: string, what: string): ModelLoadError {
  return new ModelLoadError(`${path}: corrupt or truncated safetensors file: ${what}`, { file: path });
}

function unsupportedDtype(path: string, name: string, dtype: string): ModelLoadError {
  return new ModelLoadError(
    `${path}: tensor "${name}" has unsupported dtype ${JSON.stringify(dtype)}; supported: ${FLOAT_DTYPES.join(", ")}`,
    { field: name, file: path },
  );
}

async function readExactly(
  file: Deno.FsFile,
  offset: number,
  length: number,
  path: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = await file.read(out.subarray(got));
    if (n === null) {
      throw corrupt(path, `unexpected end of file at byte ${offset + got} (file shrank?)`);
    }
    got += n;
  }
  return out;
}

// ---------------------------------------------------------------- writer ----

export interface TensorToWrite {
  name: string;
  shape: number[];
  /**
   * Row-major f32 data, or a function producing it when the writer gets to
   * this tensor, so callers can stream large models one tensor at a time.
   */
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
  /** Overrides the file-wide dtype for this tensor. */
  dtype?: FloatDtype;
}

export interface WriteOptions {
  dtype: FloatDtype;
  /** `__metadata__` (string -> string), e.g. `{format: "pt"}`. */
  metadata?: Record<string, string>;
}

/**
 * Writes a safetensors file: the header (computed up front from the shapes)
 * and then each tensor in order, converted with round-to-nearest-even. Writes
 * to a temporary file renamed into place, so a failure leaves no partial
 * `path`. Output is a pure function of the input: byte-identical reruns.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  opts: WriteOptions,
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (opts.metadata !== undefined) header.__metadata__ = { ...opts.metadata };
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === "__metadata__" || seen.has(t.name)) {
      throw new RangeError(`writeSafetensors: duplicate or reserved tensor name "${t.name}"`);
    }
    seen.add(t.name);
    if (!t.shape.every(isIndex)) {
      throw new RangeError(`writeSafetensors: tensor "${t.name}" has invalid shape ${JSON.stringify(t.shape)}`);
    }
    const dtype = t.dtype ?? opts.dtype;
    const byteLength = numel(t.shape) * DTYPE_BYTES[dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data region starts 8-byte aligned (as the
  // reference writer does); readers then get aligned typed-array views.
  json += " ".repeat((8 - ((new TextEncoder().encode(json).length + 8) % 8)) % 8);
  const jsonBytes = new TextEncoder().encode(json);
  const prefix = new Uint8Array(8 + jsonBytes.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  prefix.set(jsonBytes, 8);

  const tmp = `${path}.tmp-${Deno.pid}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, prefix);
    for (const t of tensors) {
      const data = typeof t.data === "function" ? await t.data() : t.data;
      if (data.length !== numel(t.shape)) {
        throw new RangeError(
          `writeSafetensors: tensor "${t.name}" has ${data.length} values but shape ${JSON.stringify(t.shape)} needs ${
            numel(t.shape)
          }`,
        );
      }
      await writeAll(file, encodeTensorBytes(data, t.dtype ?? opts.dtype));
    }
    file.close();
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file.close();
    } catch {
      // already closed
    }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}
