import assert from "node:assert/strict";
import { StopMatcher } from "../src/serve/stop_matcher.ts";

/** Feeds chunks; returns each push's emit, whether it stopped, and the final flush. */
function run(
  stops: string[],
  chunks: string[],
): { emits: string[]; stopped: boolean; text: string; matcher: StopMatcher } {
  const m = new StopMatcher(stops);
  const emits: string[] = [];
  let stopped = false;
  for (const c of chunks) {
    const r = m.push(c);
    emits.push(r.emit);
    stopped ||= r.stopped;
  }
  const text = emits.join("") + m.flush();
  return { emits, stopped, text, matcher: m };
}

/** Reference: everything before the earliest occurrence of any stop. */
function expected(stops: string[], full: string): { text: string; stopped: boolean } {
  const hits = stops.filter((s) => s.length > 0).map((s) => full.indexOf(s)).filter((i) => i >= 0);
  return hits.length ? { text: full.slice(0, Math.min(...hits)), stopped: true } : { text: full, stopped: false };
}

Deno.test("no stops: everything passes through at once", () => {
  const r = run([], ["Hello", " ", "world"]);
  assert.deepEqual(r.emits, ["Hello", " ", "world"]);
  assert.equal(r.stopped, false);
  assert.equal(run([""], ["abc"]).emits[0], "abc"); // empty stop strings are ignored
});

Deno.test("stop inside one chunk and spanning chunk boundaries", () => {
  assert.deepEqual(run(["END"], ["fooEND bar"]).emits, ["foo"]);
  const r = run(["world"], ["Hello wor", "ld!", "more"]);
  assert.deepEqual(r.emits, ["Hello ", "", ""]);
  assert.equal(r.stopped, true);
  assert.equal(r.matcher.matched, "world");
  assert.equal(r.matcher.flush(), "");
  const hashes = run(["###"], ["ab#", "#", "#cd"]);
  assert.deepEqual(hashes.emits, ["ab", "", ""]);
  assert.equal(hashes.text, "ab");
});

Deno.test("held text is released when the candidate fails, or at flush", () => {
  const m = new StopMatcher(["abc"]);
  assert.deepEqual(["xab", "d", "ab"].map((c) => m.push(c).emit), ["x", "abd", ""]);
  assert.equal(m.flush(), "ab");
  assert.equal(m.flush(), "");
  assert.equal(m.stopped, false);
});

Deno.test("overlapping candidates: earliest match wins, self-overlap handled", () => {
  // "hel" could start "hello world" but "lo" completes first.
  assert.equal(run(["hello world", "lo"], ["hel", "lo w", "orld"]).text, "hel");
  assert.equal(run(["b", "a"], ["xab"]).text, "x");
  // A shorter stop that starts later must not beat an earlier longer one.
  assert.equal(run(["abcd", "cd"], ["xab", "cd"]).text, "x");
  // Self-overlapping stop: "aaab" must stop after the first "a".
  const r = run(["aab"], ["a", "a", "a", "b"]);
  assert.equal(r.text, "a");
  assert.equal(r.stopped, true);
  assert.deepEqual(r.emits, ["", "", "a", ""]);
});

Deno.test("multi-byte characters: CJK and surrogate pairs split across chunks", () => {
  assert.equal(run(["日本"], ["今", "日", "は", "日", "本", "語"]).text, "今日は");
  const emoji = run(["😀"], ["a\uD83D", "\uDE00b"]);
  assert.deepEqual(emoji.emits, ["a", ""]);
  assert.equal(emoji.stopped, true);
  // A lone high surrogate is held even when no stop could start there.
  const lone = run(["zz"], ["x\uD83D", "\uDE03y"]);
  assert.deepEqual(lone.emits, ["x", "😃y"]);
  assert.equal(run([], ["\uD83D"]).emits[0], "");
});

Deno.test("after stopping, further pushes emit nothing", () => {
  const m = new StopMatcher(["\n\n"]);
  assert.deepEqual(m.push("one\n"), { emit: "one", stopped: false });
  assert.deepEqual(m.push("\ntwo"), { emit: "", stopped: true });
  assert.deepEqual(m.push("three"), { emit: "", stopped: true });
  assert.equal(m.flush(), "");
});

Deno.test("randomised: any chunking equals the reference, and nothing is emitted late", () => {
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  const alphabet = ["a", "b", "c", "é", "日", "😀"];
  const stopSets = [["ab"], ["aba", "bb"], ["c😀", "日a"], ["abcab", "b"], ["😀😀"], []];
  for (let trial = 0; trial < 2000; trial++) {
    const stops = stopSets[trial % stopSets.length];
    const full = Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => alphabet[Math.floor(rnd() * alphabet.length)])
      .join("");
    const chunks: string[] = [];
    for (let i = 0; i < full.length;) {
      const n = 1 + Math.floor(rnd() * 4); // may split surrogate pairs
      chunks.push(full.slice(i, i + n));
      i += n;
    }
    const m = new StopMatcher(stops);
    let out = "";
    let seen = "";
    let stopped = false;
    for (const c of chunks) {
      seen += c;
      const r = m.push(c);
      out += r.emit;
      stopped = r.stopped;
      if (stopped) break;
      // Everything that could not begin a stop must already be out.
      const maxHold = Math.max(0, ...stops.map((s) => s.length - 1)) + 1;
      assert.ok(seen.length - out.length <= maxHold, `held too much: ${JSON.stringify({ stops, seen, out })}`);
    }
    if (!stopped) out += m.flush();
    const want = expected(stops, full);
    assert.equal(out, want.text, JSON.stringify({ stops, chunks }));
    assert.equal(stopped, want.stopped);
  }
});
