/** The CLIs' shared flag parsing (src/cli/flags.ts). */
import assert from "node:assert/strict";
import { integerFlag, numberFlag, oneOfFlag, parseFlags, UsageError } from "../src/cli/flags.ts";

const SPEC = {
  out: { type: "string" },
  seed: { type: "string" },
  chat: { type: "boolean" },
  stop: { type: "string", multiple: true },
} as const;

Deno.test("flags: values as given, absent ones undefined, repeated ones collected, help reported", () => {
  assert.deepEqual(parseFlags(["--out", "m", "--seed=-3", "--chat", "--stop", "a", "--stop=b"], SPEC), {
    out: "m",
    seed: "-3",
    chat: true,
    stop: ["a", "b"],
    help: false,
  });
  assert.deepEqual(parseFlags([], SPEC), { help: false });
  assert.equal(parseFlags(["--seed", "-3"], SPEC).seed, "-3", "a negative number is a value, not a flag");
  assert.equal(parseFlags(["--help"], SPEC).help, true);
  assert.equal(parseFlags(["-h"], SPEC).help, true);
});

Deno.test("flags: every bad command line is a UsageError naming the flag", () => {
  const bad: [string[], RegExp][] = [
    [["--bogus", "1"], /^unknown flag --bogus; flags: --out, --seed, --chat, --stop$/],
    [["-x"], /^unknown flag -x;/],
    [["--out"], /^--out needs a value$/],
    [["--out="], /^--out needs a value$/],
    [["--out", "--chat"], /^--out needs a value$/],
    [["--out", "m", "--out", "n"], /^--out given twice$/],
    [["--chat", "--chat"], /^--chat given twice$/],
    [["--chat=yes"], /^--chat takes no value$/],
    [["--out", "m", "extra"], /^unexpected argument "extra"$/],
  ];
  for (const [argv, re] of bad) {
    assert.throws(() => parseFlags(argv, SPEC), (e) => e instanceof UsageError && re.test(e.message), argv.join(" "));
  }
});

Deno.test("flags: typed readers", () => {
  assert.equal(integerFlag("n", "12"), 12);
  assert.equal(integerFlag("n", "-4"), -4);
  assert.throws(() => integerFlag("n", "1.5"), /--n must be an integer \(got "1.5"\)$/);
  assert.throws(() => integerFlag("n", "0", 1), /--n must be an integer >= 1 \(got "0"\)$/);
  assert.throws(() => integerFlag("n", " "), /must be an integer/);
  assert.equal(numberFlag("lr", "2e-4"), 2e-4);
  assert.throws(() => numberFlag("lr", "fast"), /--lr must be a number \(got "fast"\)$/);
  assert.equal(oneOfFlag("m", "b", ["a", "b"]), "b");
  assert.throws(() => oneOfFlag("m", "c", ["a", "b"]), /--m must be one of a, b \(got "c"\)$/);
});
