import assert from "node:assert/strict";
import { IncrementalDetokenizer } from "../src/serve/detokenizer.ts";

const utf8 = new TextEncoder();

/** Byte-level fake tokenizer: a token is an arbitrary byte string; decode = non-fatal UTF-8 decode of the concatenation. */
class ByteVocab {
  readonly pieces: Uint8Array[] = [];
  decodedIds = 0; // total ids decoded, to check the per-token cost
  id(bytes: Uint8Array): number {
    this.pieces.push(bytes);
    return this.pieces.length - 1;
  }
  decode = (ids: number[]): string => {
    this.decodedIds += ids.length;
    const bytes = ids.flatMap((i) => Array.from(this.pieces[i]));
    return new TextDecoder().decode(Uint8Array.from(bytes));
  };
}

function stream(
  decode: (ids: number[]) => string,
  ids: number[],
  context?: number[],
): { chunks: string[]; tail: string } {
  const d = new IncrementalDetokenizer(decode, { context });
  const chunks = ids.map((id) => d.push(id));
  return { chunks, tail: d.flush() };
}

Deno.test("byte-level: emoji and CJK split across tokens are never emitted half-way", () => {
  const v = new ByteVocab();
  const text = "héllo 😀 你好! 🇯🇵 done";
  const bytes = utf8.encode(text);
  // One token per byte: every multi-byte character is split.
  const ids = Array.from(bytes, (b) => v.id(Uint8Array.of(b)));
  const { chunks, tail } = stream(v.decode, ids);
  assert.equal(chunks.join("") + tail, text);
  assert.ok(chunks.every((c) => !c.includes("\uFFFD")));
  // The 4-byte emoji comes out whole, on its last byte.
  const at = chunks.indexOf("😀");
  assert.ok(at > 0);
  assert.deepEqual(chunks.slice(at - 3, at), ["", "", ""]);
});

Deno.test("byte-level: random token boundaries (tokens mixing tails and heads of characters)", () => {
  let seed = 7;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  const text = "Emoji 👩‍💻 and 日本語のテキスト, ümlauts, 𝄞 clef. ".repeat(5);
  const bytes = utf8.encode(text);
  for (let trial = 0; trial < 50; trial++) {
    const v = new ByteVocab();
    const ids: number[] = [];
    for (let i = 0; i < bytes.length;) {
      const n = 1 + Math.floor(rnd() * 5);
      ids.push(v.id(bytes.slice(i, i + n)));
      i += n;
    }
    const { chunks, tail } = stream(v.decode, ids);
    assert.equal(chunks.join("") + tail, text);
    assert.equal(tail, "");
    assert.ok(chunks.every((c) => !c.includes("\uFFFD")));
  }
});

Deno.test("byte-level: an incomplete tail is released by flush (as U+FFFD)", () => {
  const v = new ByteVocab();
  const ids = [v.id(utf8.encode("ok ")), v.id(Uint8Array.of(0xf0, 0x9f))];
  const { chunks, tail } = stream(v.decode, ids);
  assert.deepEqual(chunks, ["ok ", ""]);
  assert.equal(tail, "\uFFFD");
});

Deno.test("cost per token is O(window), not O(total)", () => {
  const v = new ByteVocab();
  const ids = Array.from(utf8.encode("abc 日本 😀 ".repeat(1000)), (b) => v.id(Uint8Array.of(b)));
  const d = new IncrementalDetokenizer(v.decode);
  for (const id of ids) d.push(id);
  d.flush();
  assert.ok(v.decodedIds < 10 * ids.length, `decoded ${v.decodedIds} ids for ${ids.length} tokens`);
});

/**
 * Sentencepiece-like fake (Llama 2 style): "▁" marks a space, the first
 * piece's leading space is dropped, <0xNN> pieces are byte fallback, and
 * cleanup removes the space before punctuation. Decoding therefore depends on
 * context: a token's text changes with what precedes it.
 */
const SP_VOCAB = [
  "▁Hello",
  "▁world",
  "▁,",
  ",",
  "▁how",
  "▁are",
  "▁you",
  "?",
  "▁",
  "<0xE4>",
  "<0xBD>",
  "<0xA0>",
  "<0xF0>",
  "<0x9F>",
  "<0x98>",
  "<0x80>",
  "<s>",
];
const SP = Object.fromEntries(SP_VOCAB.map((p, i) => [p, i]));

function spDecode(ids: number[]): string {
  const bytes: number[] = [];
  for (const id of ids) {
    const piece = SP_VOCAB[id];
    if (piece === "<s>") continue; // special token, skipped
    const byte = /^<0x([0-9A-F]{2})>$/.exec(piece);
    if (byte) bytes.push(parseInt(byte[1], 16));
    else bytes.push(...utf8.encode(piece.replaceAll("▁", " ")));
  }
  let text = new TextDecoder().decode(Uint8Array.from(bytes));
  if (text.startsWith(" ")) text = text.slice(1);
  return text.replace(/ ([,?!.])/g, "$1");
}

const sp = (...pieces: string[]) => pieces.map((p) => SP[p]);

Deno.test("sentencepiece-like: leading spaces survive because the window keeps left context", () => {
  const ids = sp("▁Hello", "▁world", "▁how", "▁are", "▁you", "?");
  const { chunks, tail } = stream(spDecode, ids);
  assert.deepEqual(chunks, ["Hello", " world", " how", " are", " you", "?"]);
  assert.equal(chunks.join("") + tail, spDecode(ids));
  // A naive per-token decode would lose every space.
  assert.equal(ids.map((id) => spDecode([id])).join(""), "Helloworldhowareyou?");
});

Deno.test("sentencepiece-like: decodes that rewrite earlier text (cleanup of ' ,')", () => {
  const ids = sp("▁Hello", "▁,", "▁world", "<s>", "<s>", "▁how", "?");
  const { chunks, tail } = stream(spDecode, ids);
  assert.deepEqual(chunks, ["Hello", ",", " world", "", "", " how", "?"]);
  assert.equal(chunks.join("") + tail, spDecode(ids));
});

Deno.test("sentencepiece-like: byte-fallback CJK and emoji held until complete", () => {
  const ids = sp("▁Hello", "▁", "<0xE4>", "<0xBD>", "<0xA0>", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>", "▁you");
  const { chunks, tail } = stream(spDecode, ids);
  assert.deepEqual(chunks, ["Hello", " ", "", "", "你", "", "", "", "😀", " you"]);
  assert.equal(chunks.join("") + tail, "Hello 你😀 you");
});

Deno.test("context (prompt tail) gives the first generated token its leading space", () => {
  const prompt = sp("<s>", "▁Hello", "▁world", "▁how", "▁are", "▁you", "?", "▁Hello");
  const { chunks } = stream(spDecode, sp("▁world", "?"), prompt);
  assert.deepEqual(chunks, [" world", "?"]);
  // Without context it decodes like the start of a text.
  assert.deepEqual(stream(spDecode, sp("▁world", "?")).chunks, ["world", "?"]);
});

Deno.test("byte-level: stray bytes hold back only themselves, never the text before them", () => {
  const v = new ByteVocab();
  const ids = [
    v.id(utf8.encode("Hello")),
    v.id(Uint8Array.of(0x80)), // a stray continuation byte: never valid
    v.id(utf8.encode(" wor")),
    v.id(Uint8Array.of(0xe2, 0x82)), // the start of "€"
    v.id(Uint8Array.of(0xff)), // invalid: "€" can no longer complete
    v.id(utf8.encode("ld")),
  ];
  const { chunks, tail } = stream(v.decode, ids);
  assert.deepEqual(chunks, ["Hello", "", "\uFFFD wor", "", "", "\uFFFD\uFFFDld"]);
  assert.equal(tail, "");
  // A run of stray bytes: the text before it is out at once, the run itself at the end.
  const w = new ByteVocab();
  const run = [w.id(utf8.encode("ok ")), ...Array.from({ length: 6 }, () => w.id(Uint8Array.of(0xc3)))];
  const r = stream(w.decode, run);
  assert.deepEqual(r.chunks, ["ok ", "", "", "", "", "", ""]);
  assert.equal(r.chunks.join("") + r.tail, w.decode(run));
});

Deno.test("byte-level: random bytes (mostly not UTF-8): the chunks always add up to the full decode", () => {
  let seed = 99;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  for (let trial = 0; trial < 200; trial++) {
    const v = new ByteVocab();
    const ids = Array.from({ length: 40 }, () => {
      const n = 1 + Math.floor(rnd() * 3);
      return v.id(Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256)));
    });
    const { chunks, tail } = stream(v.decode, ids);
    assert.equal(chunks.join("") + tail, v.decode(ids), `trial ${trial}`);
    // Each prefix of the stream shows the decode of its tokens minus at most a trailing U+FFFD run.
    for (let k = 1; k <= ids.length; k++) {
      const shown = chunks.slice(0, k).join("");
      const full = v.decode(ids.slice(0, k));
      assert.ok(full.startsWith(shown) && /^\uFFFD*$/.test(full.slice(shown.length)), `trial ${trial}, token ${k}`);
    }
  }
});
