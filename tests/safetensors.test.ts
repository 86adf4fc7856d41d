import assert from "node:assert/strict";
import { openSafetensors, writeSafetensors } from "../src/model/safetensors.ts";
import {
  bf16BitsToF32,
  bitsToF32,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToBits,
  f32ToF16Bits,
} from "../src/model/half.ts";
import { Rng } from "../src/model/rng.ts";
import { rejectsLoad } from "./helpers/model_errors.ts";

// ------------------------------------------------------------- helpers ----

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "safetensors-test-" });
}

/** A safetensors file from a raw header (object or literal JSON text) and data bytes. */
function craft(header: Record<string, unknown> | string, data: Uint8Array = new Uint8Array()): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Oracle for f32 -> bf16 RNE, by comparing the two neighbouring bf16 values in f64. */
function bf16Reference(x: number): number {
  const bits = f32ToBits(x);
  const lo = bits >>> 16;
  const hi = lo + 1;
  const vlo = bf16BitsToF32(lo);
  // Rounding up past the max finite value gives Infinity, but RNE measures
  // the distance to 2^128 (as if the exponent were unbounded).
  const vhi = (hi & 0x7fff) === 0x7f80 ? Math.sign(x) * 2 ** 128 : bf16BitsToF32(hi & 0xffff);
  const dlo = Math.abs(x - vlo);
  const dhi = Math.abs(vhi - x);
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi & 0xffff;
  return (lo & 1) === 0 ? lo : hi & 0xffff;
}

// ------------------------------------------------------------------ f16 ----

Deno.test("f16: edge values encode with round-to-nearest-even", () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff], // max finite
    [65519.99, 0x7bff], // just below the rounding boundary
    [65520, 0x7c00], // halfway to 2^16: ties to even -> Infinity
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half the smallest subnormal: tie -> even (0)
    [-(2 ** -25), 0x8000],
    [2 ** -25 * 1.0000001, 0x0001],
    [1.5 * 2 ** -24, 0x0002], // subnormal tie -> even
    [2.5 * 2 ** -24, 0x0002], // subnormal tie -> even
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [1023.5 * 2 ** -24, 0x0400], // rounds up into the smallest normal
    [1 + 2 ** -11, 0x3c00], // tie -> even
    [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
    [1e-10, 0x0000],
    [1.401298464324817e-45, 0x0000], // smallest f32 subnormal
  ];
  for (const [x, bits] of cases) {
    assert.equal(f32ToF16Bits(x), bits, `f32ToF16Bits(${x})`);
  }
});

Deno.test("f16: NaN stays NaN (quiet), keeps sign", () => {
  assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  const quietNeg = f32ToF16Bits(bitsToF32(0xff800001)); // negative signalling NaN, low payload bit only
  assert.equal(quietNeg & 0xfc00, 0xfc00);
  assert.notEqual(quietNeg & 0x3ff, 0); // not Infinity
  assert.ok(Number.isNaN(f16BitsToF32(quietNeg)));
});

Deno.test("f16: all 65536 patterns decode exactly and round-trip", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const decoded = decodeF16(all);
  const reencoded = encodeF16(decoded);
  for (let h = 0; h < 65536; h++) {
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    const sign = h & 0x8000 ? -1 : 1;
    const want = exp === 0x1f
      ? (frac ? NaN : sign * Infinity)
      : exp === 0
      ? sign * frac * 2 ** -24
      : sign * (1 + frac / 1024) * 2 ** (exp - 15);
    assert.ok(Object.is(decoded[h], want), `decode 0x${h.toString(16)}: ${decoded[h]} != ${want}`);
    assert.ok(Object.is(f16BitsToF32(h), want));
    if (Number.isNaN(want)) {
      assert.ok(Number.isNaN(f16BitsToF32(reencoded[h])));
    } else {
      assert.equal(reencoded[h], h, `round trip 0x${h.toString(16)}`);
    }
  }
});

Deno.test("f16: encoding matches Math.f16round on random and boundary f32 values", () => {
  const rng = new Rng(42, "f16");
  const xs = new Float32Array(200_000);
  for (let i = 0; i < xs.length; i++) {
    // Random bit patterns cover every exponent; scaled normals cover the usual range.
    xs[i] = i % 2 ? bitsToF32(rng.nextU32()) : rng.normal() * 2 ** ((rng.nextU32() % 40) - 28);
  }
  // Exact midpoints between neighbouring f16 values, where ties-to-even matters.
  const mids: number[] = [];
  for (let h = 0; h < 0x7bff; h += 7) mids.push((f16BitsToF32(h) + f16BitsToF32(h + 1)) / 2);
  const all = Float32Array.from([...xs, ...mids, ...mids.map((m) => -m)]);
  const enc = encodeF16(all);
  for (let i = 0; i < all.length; i++) {
    const x = all[i];
    const want = Math.f16round(x);
    const got = f16BitsToF32(enc[i]);
    if (Number.isNaN(x)) assert.ok(Number.isNaN(got));
    else assert.ok(Object.is(got, want), `encode ${x}: got ${got}, want ${want}`);
  }
});

// ----------------------------------------------------------------- bf16 ----

Deno.test("bf16: edge values, ties to even, overflow and NaN", () => {
  assert.equal(f32ToBf16Bits(0), 0x0000);
  assert.equal(f32ToBf16Bits(-0), 0x8000);
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie -> even (up)
  assert.equal(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(f32ToBf16Bits(3.4028234663852886e38), 0x7f80); // max f32 rounds to Infinity
  assert.equal(f32ToBf16Bits(Infinity), 0x7f80);
  assert.equal(f32ToBf16Bits(-Infinity), 0xff80);
  assert.equal(f32ToBf16Bits(1.401298464324817e-45), 0x0000); // min f32 subnormal: tie -> 0
  assert.equal(f32ToBf16Bits(bitsToF32(0x00018000)), 0x0002); // subnormal tie -> even (up)
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  // A NaN whose payload lives only in the low 16 bits must not become Infinity.
  const b = f32ToBf16Bits(bitsToF32(0x7f800001));
  assert.ok(Number.isNaN(bf16BitsToF32(b)));
  assert.equal(f32ToBf16Bits(bitsToF32(0xff800001)) & 0x8000, 0x8000);
});

Deno.test("bf16: all 65536 patterns round-trip; random values match the RNE oracle", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const decoded = decodeBf16(all);
  const reencoded = encodeBf16(decoded);
  // Compare bit patterns in the array itself: reading a signalling NaN into
  // a JS number may quiet it.
  const decodedBits = new Uint32Array(decoded.buffer);
  for (let b = 0; b < 65536; b++) {
    assert.equal(decodedBits[b], (b << 16) >>> 0);
    if (!Number.isNaN(decoded[b])) assert.equal(reencoded[b], b);
  }
  const rng = new Rng(7, "bf16");
  const xs = new Float32Array(200_000);
  for (let i = 0; i < xs.length; i++) {
    // Mostly random finite bit patterns; every 4th exactly on a tie.
    let bits = rng.nextU32();
    if ((bits & 0x7f800000) === 0x7f800000) bits ^= 0x40000000;
    if (i % 4 === 0) bits = ((bits & 0xffff0000) | 0x8000) >>> 0;
    xs[i] = bitsToF32(bits);
  }
  const enc = encodeBf16(xs);
  for (let i = 0; i < xs.length; i++) assert.equal(enc[i], bf16Reference(xs[i]), `bf16(${xs[i]})`);
});

// ------------------------------------------------------ writer / reader ----

Deno.test("safetensors: write -> read round trip for F32, F16, BF16 with metadata", async () => {
  const dir = await tempDir();
  const rng = new Rng(1);
  const a = rng.fillNormal(new Float32Array(6 * 5), 3);
  a[0] = 1e-7; // f16 subnormal
  a[1] = 70000; // f16 overflow
  const b = Float32Array.from([1.5, -2.25, 0, -0, Infinity, NaN]);
  const scalar = Float32Array.from([42]);
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    const path = `${dir}/m-${dtype}.safetensors`;
    await writeSafetensors(path, [
      { name: "a", shape: [6, 5], data: a },
      { name: "b", shape: [2, 3], data: () => b },
      { name: "scalar", shape: [], data: scalar },
      { name: "empty", shape: [0, 4], data: new Float32Array(0) },
      { name: "f32_override", shape: [2], data: Float32Array.from([0.1, 0.2]), dtype: "F32" },
    ], { dtype, metadata: { format: "pt" } });

    const bytes = await Deno.readFile(path);
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal((8 + headerLen) % 8, 0, "data region is 8-byte aligned");

    const f = await openSafetensors(path);
    try {
      assert.deepEqual(f.metadata, { format: "pt" });
      assert.deepEqual([...f.tensors.keys()], ["a", "b", "scalar", "empty", "f32_override"]);
      assert.equal(f.tensors.get("a")?.dtype, dtype);
      assert.deepEqual(f.tensors.get("a")?.shape, [6, 5]);
      assert.equal(f.tensors.get("f32_override")?.dtype, "F32");
      const expect = (x: Float32Array) =>
        dtype === "F32" ? x : dtype === "F16" ? decodeF16(encodeF16(x)) : decodeBf16(encodeBf16(x));
      for (const [name, data] of [["a", a], ["b", b], ["scalar", scalar]] as const) {
        const got = await f.read(name);
        const want = expect(data);
        assert.equal(got.length, want.length);
        for (let i = 0; i < got.length; i++) assert.ok(Object.is(got[i], want[i]), `${dtype} ${name}[${i}]`);
      }
      assert.equal((await f.read("empty")).length, 0);
      assert.deepEqual([...(await f.read("f32_override"))], [...Float32Array.from([0.1, 0.2])]);
      if (dtype === "F16") {
        const got = await f.read("a");
        assert.equal(got[1], Infinity);
        assert.ok(got[0] > 0 && got[0] < 2 ** -14);
      }
      // Concurrent reads on one handle are serialised correctly.
      const results = await Promise.all([f.read("a"), f.read("b"), f.read("a"), f.read("scalar")]);
      assert.deepEqual(results[0], results[2]);
      assert.equal(results[3][0], 42);
    } finally {
      f.close();
    }
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("safetensors: writer output is deterministic and leaves no temp file", async () => {
  const dir = await tempDir();
  const data = new Rng(3).fillNormal(new Float32Array(100));
  for (const name of ["x", "y"]) {
    await writeSafetensors(`${dir}/${name}.safetensors`, [{ name: "t", shape: [10, 10], data }], { dtype: "BF16" });
  }
  assert.deepEqual(await Deno.readFile(`${dir}/x.safetensors`), await Deno.readFile(`${dir}/y.safetensors`));
  const names = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  assert.deepEqual(names.sort(), ["x.safetensors", "y.safetensors"]);
  await assert.rejects(
    writeSafetensors(`${dir}/bad.safetensors`, [{ name: "t", shape: [3], data: new Float32Array(2) }], {
      dtype: "F32",
    }),
    RangeError,
  );
  assert.equal(await Deno.stat(`${dir}/bad.safetensors`).catch(() => null), null);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("safetensors: reader errors name the file, tensor and problem", async () => {
  const dir = await tempDir();
  const path = `${dir}/t.safetensors`;
  const f32 = (n: number) => new Uint8Array(new Float32Array(n).buffer);

  // Truncated data region.
  await writeSafetensors(path, [{ name: "w", shape: [4, 4], data: new Float32Array(16) }], { dtype: "F32" });
  const full = await Deno.readFile(path);
  await Deno.writeFile(path, full.subarray(0, full.length - 5));
  await rejectsLoad(openSafetensors(path), /t\.safetensors/, /truncated/, /"w"/);

  // Trailing garbage (file size does not match the header).
  await Deno.writeFile(path, new Uint8Array([...full, 1, 2, 3]));
  await rejectsLoad(openSafetensors(path), /t\.safetensors/, /data bytes/);

  // Shorter than the length prefix; header length past EOF.
  await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
  await rejectsLoad(openSafetensors(path), /shorter than the 8-byte header/);
  await Deno.writeFile(path, full.subarray(0, 20));
  await rejectsLoad(openSafetensors(path), /header length \d+ does not fit/);

  // Corrupt header JSON.
  await Deno.writeFile(path, craft('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]', f32(1)));
  await rejectsLoad(openSafetensors(path), /t\.safetensors/, /not valid JSON/);
  await Deno.writeFile(path, craft("[1, 2]"));
  await rejectsLoad(openSafetensors(path), /not a JSON object/);

  // Bad shapes / offsets.
  await Deno.writeFile(path, craft({ w: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, f32(1)));
  await rejectsLoad(openSafetensors(path), /"w" spans 4 bytes but F32\[2\] needs 8/);
  await Deno.writeFile(path, craft({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, f32(1)));
  await rejectsLoad(openSafetensors(path), /"w" has an invalid shape/);
  await Deno.writeFile(path, craft({ w: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, f32(1)));
  await rejectsLoad(openSafetensors(path), /invalid data_offsets/);
  await Deno.writeFile(
    path,
    craft({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, f32(3)),
  );
  await rejectsLoad(openSafetensors(path), /"b" overlaps tensor "a"/);
  await Deno.writeFile(
    path,
    craft({ w: { dtype: "F32", shape: [1], data_offsets: [0, 4] }, __metadata__: { n: 1 } }, f32(1)),
  );
  await rejectsLoad(openSafetensors(path), /__metadata__ value for "n" is not a string/);

  // Unknown dtype string: rejected when opening.
  await Deno.writeFile(path, craft({ w: { dtype: "F4", shape: [2], data_offsets: [0, 1] } }, new Uint8Array(1)));
  const e = await rejectsLoad(openSafetensors(path), /tensor "w" has unsupported dtype "F4"/, /F32, F16, BF16/);
  assert.equal(e.field, "w");

  // Known non-float dtypes (I64, F64) are indexed but cannot be read as f32.
  await Deno.writeFile(
    path,
    craft({
      ids: { dtype: "I64", shape: [2], data_offsets: [0, 16] },
      d: { dtype: "F64", shape: [1], data_offsets: [16, 24] },
      w: { dtype: "F32", shape: [1], data_offsets: [24, 28] },
    }, new Uint8Array(28)),
  );
  const f = await openSafetensors(path);
  try {
    await rejectsLoad(f.read("ids"), /t\.safetensors: tensor "ids" has unsupported dtype "I64"/);
    await rejectsLoad(f.read("d"), /tensor "d" has unsupported dtype "F64"/);
    assert.deepEqual([...(await f.read("w"))], [0]);
    await rejectsLoad(f.read("nope"), /no tensor "nope"/);
  } finally {
    f.close();
  }

  await rejectsLoad(openSafetensors(`${dir}/missing.safetensors`), /missing\.safetensors: file not found/);
  await Deno.remove(dir, { recursive: true });
});
