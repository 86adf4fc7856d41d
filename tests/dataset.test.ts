/**
 * Fine-tuning datasets: validation codes with line numbers, exact label masks
 * (ChatML bytes tokenizer and the real Qwen3 template), truncation, batching,
 * train/validation split.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { type ChatMessage, loadTokenizer, type Tokenizer } from "../src/model/tokenizer.ts";
import { bytesTokenizerFiles, qwen3TokenizerFiles, type TokenizerFiles } from "../src/model/tokenizer_files.ts";
import { collate, LmBatchSource, makeBatches, paddingFraction, planBatches } from "../src/train/batching.ts";
import {
  DatasetOptionsError,
  IGNORE_INDEX,
  splitTrainValidation,
  type TokenizedExample,
  validateJsonl,
} from "../src/train/dataset.ts";
import { DATASET_ERROR_CODES, formatIssue } from "../src/train/dataset_errors.ts";
import { jobErrorFromIssues } from "../src/jobs/job_validation.ts";

const tempDirs: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of tempDirs) Deno.removeSync(dir, { recursive: true });
});

/** A model directory with only tokenizer files (enough for loadTokenizer). */
async function tokenizerDir(f: TokenizerFiles, edit?: (cfg: Record<string, unknown>) => void): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dataset_test_" });
  tempDirs.push(dir);
  for (const [name, text] of Object.entries(f.files)) {
    let out = text;
    if (name === "tokenizer_config.json" && edit) {
      const cfg = JSON.parse(text);
      edit(cfg);
      out = JSON.stringify(cfg);
    }
    await Deno.writeTextFile(`${dir}/${name}`, out);
  }
  await Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify({ eos_token_id: f.eosTokenIds }));
  return dir;
}

let bytesTok: Promise<Tokenizer> | null = null;
let qwenTok: Promise<Tokenizer> | null = null;
const bytes = () => bytesTok ??= tokenizerDir(bytesTokenizerFiles()).then(loadTokenizer);
const qwen3 = async () => qwenTok ??= tokenizerDir(await qwen3TokenizerFiles()).then(loadTokenizer);

const jsonl = (...lines: unknown[]) => lines.map((l) => typeof l === "string" ? l : JSON.stringify(l)).join("\n");
const msg = (role: string, content: unknown, extra: Record<string, unknown> = {}) => ({ role, content, ...extra });
const chat = (...messages: unknown[]) => ({ messages });
const GOOD = chat(msg("user", "hi"), msg("assistant", "hello"));

/** The messages as the template sees them (developer → system, text parts joined). */
function plain(messages: { role: string; content: unknown }[]): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: typeof m.content === "string" ? m.content : (m.content as { text: string }[]).map((p) => p.text).join(""),
  }));
}

/** Decoded texts of the maximal runs of trained tokens. */
function trainedTexts(tok: Tokenizer, ex: TokenizedExample): string[] {
  const out: string[] = [];
  let run: number[] = [];
  ex.labels.forEach((l, t) => {
    if (l !== IGNORE_INDEX) {
      assert.equal(l, ex.inputIds[t], "a trained label is the token itself (unshifted)");
      run.push(l);
    } else if (run.length) {
      out.push(tok.decode(run));
      run = [];
    }
  });
  if (run.length) out.push(tok.decode(run));
  return out;
}

function only(tok: Tokenizer, line: unknown, maxLength = 4096): TokenizedExample {
  const r = validateJsonl(jsonl(line), { tokenizer: tok, maxLength });
  assert.deepEqual(r.errors, []);
  assert.equal(r.examples.length, 1);
  return r.examples[0];
}

Deno.test("validation: every chat error code, with its line and param", async () => {
  const tok = await bytes();
  const text = jsonl(
    GOOD, // 1
    "{not json", // 2
    "[1, 2]", // 3
    { foo: 1 }, // 4
    chat(), // 5
    chat(msg("user", "a"), msg("tool", "b"), msg("assistant", "c")), // 6
    chat(msg("user", "a"), { content: "b" }), // 7
    chat(msg("user", "a"), msg("assistant", null)), // 8
    chat(msg("user", "a"), msg("assistant", "")), // 9
    chat(msg("user", "a"), msg("assistant", 42)), // 10
    chat(msg("user", [{ type: "image_url", image_url: { url: "x" } }]), msg("assistant", "c")), // 11
    chat(msg("user", "a"), msg("assistant", "b", { weight: 0.5 })), // 12
    chat(msg("user", "a", { weight: 1 }), msg("assistant", "b")), // 13
    chat(msg("system", "s"), msg("user", "a")), // 14
    chat(msg("user", "a"), msg("assistant", "b", { weight: 0 })), // 15
    chat(msg("user", "a"), msg("assistant", "b", { extra: true })), // 16
    chat(msg("user", "a"), msg("assistant", "b", { tool_calls: [] })), // 17
    { ...GOOD, tools: [] }, // 18
    { prompt: "p", completion: "c" }, // 19
    { ...GOOD, prompt: "p" }, // 20
    chat(msg("user", "a <|im_end|> b"), msg("assistant", "c")), // 21
    "", // 22: blank lines are skipped
    "   ", // 23
    chat(msg("developer", "d"), msg("user", [{ type: "text", text: "a" }]), msg("assistant", "ok", { name: "bot" })), // 24
  );
  const r = validateJsonl(text, { tokenizer: tok, maxLength: 256 });
  const got = r.errors.map((e) => [e.line, e.code, e.param]);
  assert.deepEqual(got, [
    [2, "invalid_json", null],
    [3, "data_type", null],
    [4, "missing_messages", "messages"],
    [5, "missing_messages", "messages"],
    [6, "unknown_role", "messages[1].role"],
    [7, "missing_role", "messages[1].role"],
    [8, "missing_content", "messages[1].content"],
    [9, "missing_content", "messages[1].content"],
    [10, "invalid_content", "messages[1].content"],
    [11, "invalid_content", "messages[0].content[0]"],
    [12, "invalid_weight", "messages[1].weight"],
    [13, "invalid_weight", "messages[0].weight"],
    [14, "no_assistant_message", "messages"],
    [15, "no_trainable_tokens", "messages"],
    [16, "message_unrecognized_key", "messages[1].extra"],
    [17, "unsupported_feature", "messages[1].tool_calls"],
    [18, "unsupported_feature", "tools"],
    [19, "mixed_formats", null],
    [20, "mixed_formats", null],
    [21, "invalid_content", "messages[0].content"],
  ]);
  for (const e of r.errors) assert.ok(e.message.length > 0);
  assert.match(r.errors.find((e) => e.line === 19)!.message, /file is chat .* \(from line 1\)/);
  assert.match(r.errors.find((e) => e.line === 6)!.message, /"tool"/);
  assert.match(r.errors.find((e) => e.line === 21)!.message, /<\|im_end\|>/);
  assert.deepEqual(r.examples.map((e) => e.line), [1, 24]);
  assert.equal(formatIssue(r.errors[4]), `line 6: [unknown_role] ${r.errors[4].message} (messages[1].role)`);
});

Deno.test("validation: prompt/completion errors, empty file, too_long, truncation, no chat template", async () => {
  const tok = await bytes();
  const pc = validateJsonl(
    jsonl(
      { prompt: "p", completion: " c" },
      { prompt: "p" },
      { completion: "c" },
      { prompt: "p", completion: "" },
      { prompt: 1, completion: "c" },
      GOOD,
      { other: 1 },
    ),
    { tokenizer: tok, maxLength: 64 },
  );
  assert.equal(pc.format, "completion");
  assert.deepEqual(pc.errors.map((e) => [e.line, e.code, e.param]), [
    [2, "missing_completion", "completion"],
    [3, "missing_prompt", "prompt"],
    [4, "missing_completion", "completion"],
    [5, "invalid_content", "prompt"],
    [6, "mixed_formats", null],
    [7, "missing_prompt", "prompt"],
  ]);

  for (const empty of ["", "\n\n", "\uFEFF  \r\n"]) {
    const r = validateJsonl(empty, { tokenizer: tok, maxLength: 64 });
    assert.deepEqual(r.errors.map((e) => [e.line, e.code]), [[0, "empty_file"]]);
  }

  // <|im_start|> "user\n" 40 bytes <|im_end|> "\n" <|im_start|> "assistant\n": the reply starts at token 59;
  // then 20 bytes, <|im_end|>, "\n": 81 tokens.
  const long = chat(msg("user", "u".repeat(40)), msg("assistant", "a".repeat(20)));
  const tooLong = validateJsonl(jsonl(GOOD, long), { tokenizer: tok, maxLength: 66, overflow: "error" });
  assert.deepEqual(tooLong.errors.map((e) => [e.line, e.code]), [[2, "too_long"]]);
  assert.match(tooLong.errors[0].message, /has 81 tokens, more than the maximum of 66/);

  const cut = validateJsonl(jsonl(long), { tokenizer: tok, maxLength: 66 });
  assert.deepEqual(cut.errors, []);
  const ex = cut.examples[0];
  assert.equal(ex.inputIds.length, 66);
  assert.equal(ex.truncated, true);
  assert.equal(ex.trainableTokens, 7);
  assert.deepEqual(trainedTexts(tok, ex), ["a".repeat(7)]);
  assert.deepEqual(cut.stats, { examples: 1, truncated: 1, tokens: 66, trainableTokens: 7 });

  const none = validateJsonl(jsonl(GOOD, long), { tokenizer: tok, maxLength: 59 });
  assert.deepEqual(none.errors.map((e) => [e.line, e.code]), [[2, "no_trainable_tokens"]]);
  assert.match(none.errors[0].message, /after truncation to 59 tokens/);

  const noTemplate = await loadTokenizer(await tokenizerDir(bytesTokenizerFiles(), (cfg) => delete cfg.chat_template));
  const nt = validateJsonl(jsonl(GOOD), { tokenizer: noTemplate, maxLength: 64 });
  assert.deepEqual(nt.errors.map((e) => [e.line, e.code]), [[0, "template_error"]]);
  // ...while prompt/completion needs no template.
  assert.equal(
    validateJsonl(jsonl({ prompt: "a", completion: "b" }), { tokenizer: noTemplate, maxLength: 64 })
      .examples.length,
    1,
  );

  assert.throws(() => validateJsonl("", { tokenizer: tok, maxLength: 1 }), DatasetOptionsError);
  assert.ok(DATASET_ERROR_CODES.includes("too_long"));
});

Deno.test("job error from validation issues", () => {
  assert.equal(jobErrorFromIssues([], "training_file"), null);
  const e = jobErrorFromIssues([
    { line: 4, code: "invalid_weight", message: "weight must be 0 or 1, got 2", param: "messages[1].weight" },
    { line: 9, code: "invalid_json", message: "x", param: null },
  ], "validation_file");
  assert.deepEqual(e, {
    code: "invalid_weight",
    message: "validation_file: line 4: [invalid_weight] weight must be 0 or 1, got 2 (messages[1].weight) " +
      "(and 1 more problem)",
    param: "validation_file",
  });
});

/** Conversations whose masks are checked on both tokenizers. */
const CONVERSATIONS = [
  // [messages, expected trained texts (before the end token)]
  {
    messages: [msg("system", "Be brief."), msg("user", "What is 2+2?"), msg("assistant", "4")],
    trained: ["4"],
  },
  {
    messages: [
      msg("developer", "sys"),
      msg("user", "Héllo 日本"),
      msg("assistant", "Bonjour 🎉 wörld", { weight: 1 }),
      msg("user", "again"),
      msg("assistant", "ignored reply", { weight: 0 }),
      msg("user", [{ type: "text", text: "and " }, { type: "text", text: "once more" }]),
      msg("assistant", [{ type: "text", text: "final " }, { type: "text", text: "answer." }]),
    ],
    trained: ["Bonjour 🎉 wörld", "final answer."],
  },
  {
    // Leading spaces / newlines and trailing whitespace next to the template's own newlines.
    messages: [
      msg("user", "  spaced\n"),
      msg("assistant", "\n\n  leading ws\t"),
      msg("user", "x"),
      msg("assistant", " y "),
    ],
    trained: null, // template-dependent (Qwen3 strips leading newlines): checked per tokenizer below
  },
];

Deno.test("label masks are exact on the ChatML bytes tokenizer", async () => {
  const tok = await bytes();
  for (const c of CONVERSATIONS) {
    const ex = only(tok, chat(...c.messages));
    const expected = c.trained ?? ["\n\n  leading ws\t", " y "];
    assert.deepEqual(trainedTexts(tok, ex), expected.map((t) => `${t}<|im_end|>`));
    // The mask covers exactly what follows each generation prompt, up to <|im_end|> (not its newline).
    const text = tok.decode(ex.inputIds);
    assert.equal(text, tok.applyChatTemplate(plain(c.messages)));
  }
  // Weight-0 assistant messages and every system/user token are masked.
  const ex = only(tok, chat(...CONVERSATIONS[1].messages));
  const masked = tok.decode(ex.inputIds.filter((_, t) => ex.labels[t] === IGNORE_INDEX));
  assert.ok(masked.includes("ignored reply") && masked.includes("Héllo 日本") && masked.includes("sys"));
  assert.equal(ex.labels[0], IGNORE_INDEX);
});

Deno.test("label masks are exact on the Qwen3 tokenizer and template (<think> handling)", async () => {
  const tok = await qwen3();
  const end = "<|im_end|>";
  for (const c of CONVERSATIONS) {
    const ex = only(tok, chat(...c.messages));
    // "assistant\n" + "\n\n  leading": BPE merges the three newlines into one token that straddles the
    // boundary; it is trained (it carries reply text). Qwen3 lstrips the last turn's content.
    const expected = c.trained ?? ["\n\n\n  leading ws\t", "y "];
    assert.deepEqual(trainedTexts(tok, ex), expected.map((t) => `${t}${end}`));
  }

  // The last turn's empty think block is prompt (masked), as with enable_thinking=false at inference.
  const ex = only(tok, chat(...CONVERSATIONS[0].messages));
  const text = tok.decode(ex.inputIds);
  assert.ok(text.endsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n"), text);
  const prompt = tok.decode(ex.inputIds.slice(0, ex.labels.findIndex((l) => l !== IGNORE_INDEX)));
  assert.equal(
    prompt,
    tok.applyChatTemplate(plain(CONVERSATIONS[0].messages.slice(0, 2)), {
      addGenerationPrompt: true,
      templateKwargs: { enable_thinking: false },
    }),
  );

  // Reasoning in the last turn is trained with its think block; in earlier turns the template drops it.
  const reasoning = only(
    tok,
    chat(
      msg("user", "q1"),
      msg("assistant", "<think>\nold thoughts\n</think>\n\nold answer"),
      msg("user", "q2"),
      msg("assistant", "<think>\nLet me think.\n</think>\n\nThe answer."),
    ),
  );
  assert.deepEqual(trainedTexts(tok, reasoning), [
    `old answer${end}`,
    `<think>\nLet me think.\n</think>\n\nThe answer.${end}`,
  ]);
  assert.ok(!tok.decode(reasoning.inputIds).includes("old thoughts"));

  // No user message at all: the template renders no think block; the mask still finds the reply.
  assert.deepEqual(trainedTexts(tok, only(tok, chat(msg("system", "s"), msg("assistant", "hi")))), [`hi${end}`]);
});

Deno.test("prompt/completion: prompt masked, completion + EOS trained", async () => {
  for (const tok of [await bytes(), await qwen3()]) {
    const ex = only(tok, { prompt: "Translate: chat ->", completion: " cat" });
    const eos = tok.decode([tok.eosTokenIds[0]]);
    assert.deepEqual(trainedTexts(tok, ex), [` cat${eos}`]);
    assert.equal(tok.decode(ex.inputIds), `Translate: chat -> cat${eos}`);
    // An empty prompt: the first completion token has no predecessor, so it is not a target.
    const bare = only(tok, { prompt: "", completion: "abc" });
    assert.equal(bare.labels[0], IGNORE_INDEX);
    assert.equal(bare.trainableTokens, bare.inputIds.length - 1);
  }
});

function examples(lengths: number[]): { inputIds: number[]; labels: number[] }[] {
  return lengths.map((n, i) => ({
    inputIds: Array.from({ length: n }, (_, t) => (i * 7 + t) % 50),
    labels: Array.from({ length: n }, (_, t) => t >= n / 2 ? (i * 7 + t) % 50 : IGNORE_INDEX),
  }));
}

Deno.test("collate: right padding, masks, positions, labels", () => {
  const b = collate(examples([3, 5]), { padTokenId: 99 });
  assert.equal(b.batchSize, 2);
  assert.equal(b.seqLen, 5);
  assert.deepEqual(Array.from(b.inputIds, Number), [0, 1, 2, 99, 99, 7, 8, 9, 10, 11]);
  assert.deepEqual(Array.from(b.attentionMask, Number), [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
  assert.deepEqual(Array.from(b.positionIds, Number), [0, 1, 2, 0, 0, 0, 1, 2, 3, 4]);
  assert.deepEqual(Array.from(b.labels, Number), [-100, -100, 2, -100, -100, -100, -100, -100, 10, 11]);
  assert.equal(b.tokens, 8);
  assert.equal(b.targets, 3);
  assert.equal(collate(examples([3]), { padTokenId: 0, padToMultipleOf: 8 }).seqLen, 8);
});

Deno.test("batching: deterministic per seed and epoch, complete, less padding with buckets", () => {
  const lengths = Array.from({ length: 203 }, (_, i) => 4 + ((i * 37) % 97));
  const plan = (seed: number, epoch = 0, bucketBatches?: number) =>
    planBatches(lengths, { batchSize: 8, seed, epoch, bucketBatches });
  assert.deepEqual(plan(1), plan(1));
  assert.notDeepEqual(plan(1), plan(2));
  assert.notDeepEqual(plan(1, 0), plan(1, 1));
  for (const p of [plan(1), plan(3, 2, 1)]) {
    assert.deepEqual(p.flat().sort((a, b) => a - b), [...lengths.keys()]);
    assert.ok(p.every((b) => b.length >= 1 && b.length <= 8));
  }
  const exs = examples(lengths);
  const bucketed = paddingFraction(makeBatches(exs, { batchSize: 8, seed: 1 }, { padTokenId: 0 }));
  const random = paddingFraction(makeBatches(exs, { batchSize: 8, seed: 1, bucketBatches: 1 }, { padTokenId: 0 }));
  assert.ok(bucketed < random / 3, `padding ${bucketed} with buckets vs ${random} without`);

  const capped = planBatches(lengths, { batchSize: 8, seed: 1, maxBatchTokens: 200 });
  for (const b of capped) {
    const longest = Math.max(...b.map((i) => lengths[i]));
    assert.ok(b.length === 1 || longest * b.length <= 200);
  }
  assert.throws(() => planBatches(lengths, { batchSize: 0, seed: 1 }), DatasetOptionsError);
});

Deno.test("LmBatchSource: epochs follow the plan, seek resumes at the same batch", () => {
  const exs = examples(Array.from({ length: 21 }, (_, i) => 3 + (i % 9)));
  const plan = { batchSize: 4, seed: 3, bucketBatches: 2 };
  const src = new LmBatchSource(exs, plan, { padTokenId: 0 });
  const n0 = src.batchesIn(0);
  assert.equal(n0, planBatches(exs.map((e) => e.inputIds.length), { ...plan, epoch: 0 }).length);
  const firstEpoch = Array.from({ length: n0 }, () => src.next());
  assert.equal(firstEpoch.reduce((n, b) => n + b.batchSize, 0), 21);
  assert.deepEqual(src.position(), { epoch: 0, index: n0 });
  const e1 = src.next();
  assert.deepEqual(src.position(), { epoch: 1, index: 1 });
  const e1b = src.next();
  const resumed = new LmBatchSource(exs, plan, { padTokenId: 0 });
  resumed.seek({ epoch: 1, index: 1 });
  assert.deepEqual(resumed.next(), e1b);
  resumed.seek({ epoch: 1, index: 0 });
  assert.deepEqual(resumed.next(), e1);
});

Deno.test("train/validation split: seeded, disjoint, explicit validation set wins", () => {
  const items = Array.from({ length: 50 }, (_, i) => i);
  const a = splitTrainValidation(items, { validationFraction: 0.2, seed: 7 });
  assert.deepEqual(a, splitTrainValidation(items, { validationFraction: 0.2, seed: 7 }));
  assert.notDeepEqual(a.validation, splitTrainValidation(items, { validationFraction: 0.2, seed: 8 }).validation);
  assert.equal(a.validation.length, 10);
  assert.deepEqual([...a.train, ...a.validation].sort((x, y) => x - y), items);
  assert.deepEqual(a.train, [...a.train].sort((x, y) => x - y), "order kept");
  assert.deepEqual(splitTrainValidation(items, { validationFraction: 0.2, seed: 7, validation: [100] }), {
    train: items,
    validation: [100],
  });
  assert.deepEqual(splitTrainValidation(items, { seed: 7 }).validation, []);
  assert.equal(splitTrainValidation([1, 2], { validationFraction: 0.01, seed: 1 }).validation.length, 1);
  assert.equal(splitTrainValidation([1], { validationFraction: 0.5, seed: 1 }).train.length, 1);
});
