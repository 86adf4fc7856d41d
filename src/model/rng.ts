/**
 * Small deterministic PRNG: xoshiro128** seeded through splitmix32, with
 * Box-Muller normals. Same seed (and label) -> same stream on every platform
 * and run; only 32-bit integer ops plus V8's fdlibm-based Math.log/cos/sin.
 * Not cryptographic. Used by the test-model generator and the trainer.
 */

const TWO_POW_32 = 4294967296;

export class Rng {
  #s0 = 0;
  #s1 = 0;
  #s2 = 0;
  #s3 = 0;
  #spare: number | null = null;

  /**
   * @param seed any safe integer (negative allowed).
   * @param label optional stream name: `new Rng(7, "a")` and
   *   `new Rng(7, "b")` are independent streams, so callers can give each
   *   tensor its own stream and stay deterministic in any generation order.
   */
  constructor(seed: number, label = "") {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`Rng: seed must be a safe integer, got ${seed}`);
    }
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    let state = mix32(lo ^ mix32(hi ^ 0x9e3779b9) ^ hashLabel(label));
    const next = () => {
      state = (state + 0x9e3779b9) >>> 0;
      return mix32(state);
    };
    this.#s0 = next();
    this.#s1 = next();
    this.#s2 = next();
    this.#s3 = next();
    // xoshiro must not start from the all-zero state.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** Uniform integer in [0, 2^32). */
  nextU32(): number {
    const s1 = this.#s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** Uniform float in [0, 1) with 32 random bits. */
  nextFloat(): number {
    return this.nextU32() / TWO_POW_32;
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > TWO_POW_32) {
      throw new RangeError(`Rng.nextInt: n must be an integer in [1, 2^32], got ${n}`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal N(0, 1). */
  normal(): number {
    if (this.#spare !== null) {
      const z = this.#spare;
      this.#spare = null;
      return z;
    }
    const [z0, z1] = this.#normalPair();
    this.#spare = z1;
    return z0;
  }

  /** Fills `out` with N(mean, std^2) samples (rounded to f32) and returns it. */
  fillNormal(out: Float32Array, std = 1, mean = 0): Float32Array {
    let i = 0;
    if (this.#spare !== null && out.length > 0) {
      out[i++] = mean + std * this.#spare;
      this.#spare = null;
    }
    for (; i + 1 < out.length; i += 2) {
      const [z0, z1] = this.#normalPair();
      out[i] = mean + std * z0;
      out[i + 1] = mean + std * z1;
    }
    if (i < out.length) out[i] = mean + std * this.normal();
    return out;
  }

  /** Fills `out` with uniform samples in [lo, hi) and returns it. */
  fillUniform(out: Float32Array, lo = 0, hi = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * this.nextFloat();
    return out;
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  #normalPair(): [number, number] {
    // u1 in (0, 1] so the log is finite.
    const u1 = (this.nextU32() + 1) / TWO_POW_32;
    const u2 = this.nextU32() / TWO_POW_32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    return [r * Math.cos(theta), r * Math.sin(theta)];
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** splitmix32 / murmur3 finaliser: a bijective 32-bit mix. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** FNV-1a over the label's UTF-8 bytes. */
function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(label)) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}
