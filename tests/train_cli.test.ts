/**
 * `deno task train` (src/cli/train.ts) as a subprocess: bad lines listed with
 * line numbers and exit 1 before training; a run writes the merged model and
 * prints the summary; plain progress lines when stderr is not a terminal.
 * Plus the progress formatter (src/cli/progress.ts).
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { bar, formatDuration, Progress } from "../src/cli/progress.ts";

const CLI = new URL("../src/cli/train.ts", import.meta.url).pathname;

async function train(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", CLI, ...args], stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("train CLI: bad lines exit 1 untrained; a run writes the merged model and a summary", async () => {
  const root = await Deno.makeTempDir({ prefix: "train_cli_test_" });
  try {
    await generateTinyModel({ out: `${root}/m`, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 1 });
    const good = Array.from({ length: 12 }, (_, i) => JSON.stringify({ prompt: `q${i}?`, completion: ` a${i}` }));
    await Deno.writeTextFile(`${root}/bad.jsonl`, [good[0], "nope", good[1], JSON.stringify({ prompt: 1 })].join("\n"));
    await Deno.writeTextFile(`${root}/good.jsonl`, good.join("\n") + "\n");

    const bad = await train(["--model", `${root}/m`, "--data", `${root}/bad.jsonl`]);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /bad\.jsonl: line 2: \[invalid_json\]/);
    assert.match(bad.stderr, /bad\.jsonl: line 4: \[invalid_content\] `prompt` must be a string/);
    assert.match(bad.stderr, /2 invalid line\(s\).*nothing was trained/);
    assert.equal(await Deno.stat(`${root}/m-ft`).catch(() => null), null);

    const usage = await train(["--model", `${root}/m`, "--data", `${root}/good.jsonl`, "--rank", "two"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--rank must be an integer/);
    const badRule = await train(["--model", `${root}/m`, "--data", `${root}/good.jsonl`, "--lipschitz", "{split"]);
    assert.equal(badRule.code, 2);
    assert.match(badRule.stderr, /--lipschitz: not a JSON object/);
    const badSplit = await train([
      "--model",
      `${root}/m`,
      "--data",
      `${root}/good.jsonl`,
      "--lipschitz",
      '{"split":"sideways"}',
    ]);
    assert.notEqual(badSplit.code, 0);
    assert.match(badSplit.stderr, /lipschitz/);

    const ok = await train([
      "--model",
      `${root}/m`,
      "--data",
      `${root}/good.jsonl`,
      "--epochs",
      "2",
      "--batch-size",
      "4",
      "--rank",
      "2",
      "--interval",
      "2",
      "--lipschitz",
      '{"split":"solve"}',
      "--lr",
      "1e-2",
      "--log-every",
      "2",
      "--threads",
      "1",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /fine-tuned .* \(scalora r=2 I=2, alpha 4\): 6 steps, \d+ tokens in .*final train loss/);
    assert.match(ok.stdout, new RegExp(`merged model: ${root}/m-ft`));
    // Not a terminal: one plain line every 2 steps, no carriage returns.
    assert.deepEqual([...ok.stderr.matchAll(/^step (\d+)\/6 /gm)].map((m) => m[1]), ["2", "4", "6"]);
    assert.ok(!ok.stderr.includes("\r"));
    const merged = await openCheckpoint(`${root}/m-ft`);
    merged.close();
    await Deno.stat(`${root}/m-ft/tokenizer.json`);
    await Deno.stat(`${root}/m-ft.checkpoints/step-00000006/fine_tune.json`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("progress: durations, bar, ETA from the steps after the first, terminal redraw", () => {
  assert.equal(formatDuration(4.4), "4s");
  assert.equal(formatDuration(245), "4m05s");
  assert.equal(formatDuration(7620), "2h07m");
  assert.equal(formatDuration(NaN), "?");
  assert.equal(bar(0.5, 10), "[#####.....]");
  assert.equal(bar(2, 4), "[####]");

  let t = 0;
  const written: string[] = [];
  const p = new Progress({ tty: false, write: (s) => written.push(s) }, 5, () => t);
  const step = (n: number) => ({ step: n, totalSteps: 10, epoch: 1, trainLoss: 2, tokensPerSecond: 100 });
  for (let i = 1; i <= 10; i++) {
    t = i === 1 ? 5000 : 5000 + (i - 1) * 1000; // the first step (warm-up) is slow; then 1 s per step
    p.update(step(i));
  }
  assert.deepEqual(written, [
    "step 5/10 epoch 1 loss 2.0000 100 tok/s ETA 5s\n",
    "step 10/10 epoch 1 loss 2.0000 100 tok/s ETA 0s\n",
  ]);

  const tty: string[] = [];
  const q = new Progress({ tty: true, write: (s) => tty.push(s), columns: 80 }, 5, () => 0);
  q.update({ ...step(3), validLoss: 1.5 });
  q.note("hello");
  q.finish();
  const CLEAR = "\x1b[K";
  assert.ok(tty[0].startsWith("\r[") && tty[0].endsWith(CLEAR), JSON.stringify(tty[0]));
  assert.match(tty[0], /^\r\[#+\.+\] step 3\/10 epoch 1 loss 2\.0000 valid 1\.5000 100 tok\/s ETA \?/);
  assert.deepEqual(tty.slice(1), [`\r${CLEAR}`, "hello\n", tty[0], "\n"]);
});
