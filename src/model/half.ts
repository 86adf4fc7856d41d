/**
 * IEEE binary16 (f16) and bfloat16 (bf16) <-> binary32 (f32) conversions.
 *
 * Decoding is exact (every f16/bf16 value is representable in f32, NaN
 * payloads included). Encoding rounds to nearest, ties to even, overflows to
 * ±Infinity, keeps the sign of zero and turns NaN into a quiet NaN.
 * Scalar helpers take f32 bit patterns or numbers; a number is rounded to f32
 * first (the helpers are meant for f32 data).
 *
 * Array helpers view the typed arrays' bytes in host order; safetensors and
 * ONNX are little-endian, as is every host we run on (checked below).
 */

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("half.ts: big-endian hosts are not supported");
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** f32 bit pattern of `x` (after rounding `x` to f32). */
export function f32ToBits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0];
}

/** The f32 value of a 32-bit pattern. */
export function bitsToF32(bits: number): number {
  u32Scratch[0] = bits >>> 0;
  return f32Scratch[0];
}

// ------------------------------------------------------------------ f16 ----

/** f32 bit pattern -> f16 bit pattern, round to nearest even. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    // Keep the top payload bits and force the quiet bit so NaN stays NaN.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15; // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large even before rounding
  if (e <= 0) {
    // Result is an f16 subnormal (or zero): units of 2^-24.
    if (e < -10) return sign; // below half the smallest subnormal
    const full = mant | 0x800000; // restore the implicit 1
    const shift = 14 - e; // 14..24
    const q = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    // A carry out of 0x3ff lands exactly on the smallest normal: correct.
    return sign | (q + (rem > half || (rem === half && (q & 1)) ? 1 : 0));
  }
  const h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry propagates into the exponent; from 0x7bff it gives Infinity.
  return h + (rem > 0x1000 || (rem === 0x1000 && (h & 1)) ? 1 : 0);
}

/** f16 bit pattern -> f32 bit pattern (exact). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: shift the leading 1 into the implicit position.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32ToBits(x));
}

export function f16BitsToF32(h: number): number {
  return bitsToF32(f16BitsToF32Bits(h));
}

let f16Table: Uint32Array | null = null;

/** All 65536 f16 patterns decoded once (256 KiB) so bulk decode is a lookup. */
function f16DecodeTable(): Uint32Array {
  if (f16Table === null) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

export function decodeF16(src: Uint16Array, out?: Float32Array): Float32Array {
  const dst = checkOut(src.length, out);
  const table = f16DecodeTable();
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]];
  return dst;
}

export function encodeF16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const dst = out ?? new Uint16Array(src.length);
  if (dst.length !== src.length) throw new RangeError("encodeF16: length mismatch");
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToF16Bits(bits[i]);
  return dst;
}

// ----------------------------------------------------------------- bf16 ----

/** f32 bit pattern -> bf16 bit pattern, round to nearest even. */
export function f32BitsToBf16Bits(x: number): number {
  x = x >>> 0;
  // NaN: truncating could clear every payload bit and yield Infinity.
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  // Never exceeds 2^32 for non-NaN input; overflow past max lands on Infinity.
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32Bits(b: number): number {
  return ((b & 0xffff) << 16) >>> 0;
}

export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32ToBits(x));
}

export function bf16BitsToF32(b: number): number {
  return bitsToF32(bf16BitsToF32Bits(b));
}

export function decodeBf16(src: Uint16Array, out?: Float32Array): Float32Array {
  const dst = checkOut(src.length, out);
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return dst;
}

export function encodeBf16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const dst = out ?? new Uint16Array(src.length);
  if (dst.length !== src.length) throw new RangeError("encodeBf16: length mismatch");
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToBf16Bits(bits[i]);
  return dst;
}

function checkOut(n: number, out: Float32Array | undefined): Float32Array {
  if (out === undefined) return new Float32Array(n);
  if (out.length !== n) throw new RangeError("decode: output length mismatch");
  return out;
}
