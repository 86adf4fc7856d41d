import "../src/runtime/ort_env.ts";
import assert from "node:assert/strict";
import { basename, dirname } from "node:path";
import { AutoTokenizer, env } from "@huggingface/transformers";
import {
  ChatTemplateError,
  configureTransformersOffline,
  loadTokenizer,
  type Tokenizer,
  TokenizerLoadError,
} from "../src/model/tokenizer.ts";
import { bytesTokenizerFiles, qwen3TokenizerFiles, type TokenizerFiles } from "../src/model/tokenizer_files.ts";

const tempDirs: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of tempDirs) Deno.removeSync(dir, { recursive: true });
});

async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tok_test_" });
  tempDirs.push(dir);
  return dir;
}

async function writeModelDir(files: Record<string, string>): Promise<string> {
  const dir = await tempDir();
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

/** generation_config.json as the tiny-model generator writes it. */
function generationConfig(f: TokenizerFiles): string {
  return JSON.stringify({
    eos_token_id: f.eosTokenIds,
    pad_token_id: f.padTokenId,
    bos_token_id: f.bosTokenId,
  });
}

const SAMPLES = [
  "",
  "hello world",
  "Héllo wörld, ça va? naïve façade",
  "日本語のテキスト，中文：你好世界！한국어",
  "emoji 🎉👩‍👩‍👧 flags 🇫🇷 ZWJ ✔️",
  "line1\nline2\r\nline3\n\n\n",
  "   leading, inner    runs\t\t\tand trailing   ",
  "\u0000\u0001 control \u007f bytes",
  "mixed: a=1; b = [1, 2, 3] // 🚀 ok?!",
];

/** Deterministic random text over all Unicode scalar values (no surrogates). */
function randomText(seed: number, n: number): string {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  let out = "";
  for (let i = 0; i < n; i++) {
    const r = next();
    // Bias towards ASCII/BMP but cover astral planes too.
    const cp = r % 4 === 0
      ? 0x20 + (r >>> 8) % 0x5f
      : r % 4 === 1
      ? (r >>> 8) % 0xd800
      : r % 4 === 2
      ? 0xe000 + (r >>> 8) % 0x2000
      : 0x10000 + (r >>> 8) % 0x100000;
    out += String.fromCodePoint(cp);
  }
  return out;
}

const CONVO = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Héllo 你好 🎉?" },
];
const CHATML = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHéllo 你好 🎉?<|im_end|>\n";

// ------------------------------------------------------------------ bytes --

const bytes = bytesTokenizerFiles();
const bytesDir = await writeModelDir({
  ...bytes.files,
  "generation_config.json": generationConfig(bytes),
});
const bytesTok = await loadTokenizer(bytesDir);

Deno.test("bytes files: ids and metadata", () => {
  assert.equal(bytes.vocabSize, 259);
  assert.deepEqual(bytes.eosTokenIds, [258, 256]); // <|im_end|>, <|endoftext|>
  assert.equal(bytes.padTokenId, 256);
  assert.equal(bytes.bosTokenId, null);
  assert.deepEqual(Object.keys(bytes.files).sort(), [
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
  ]);
  const cfg = JSON.parse(bytes.files["tokenizer_config.json"]);
  assert.equal(cfg.eos_token, "<|im_end|>");
  assert.equal(cfg.pad_token, "<|endoftext|>");
  assert.equal(typeof cfg.chat_template, "string");
});

Deno.test("bytes: loaded tokenizer reports the generator's ids", () => {
  assert.equal(bytesTok.vocabSize, bytes.vocabSize);
  assert.deepEqual(bytesTok.eosTokenIds, bytes.eosTokenIds);
  assert.equal(bytesTok.bosTokenId, null);
  assert.equal(bytesTok.hasChatTemplate, true);
  assert.equal(bytesTok.idToToken(257), "<|im_start|>");
  assert.equal(bytesTok.idToToken(65), "A");
  assert.equal(bytesTok.idToToken(32), "Ġ"); // GPT-2 byte-level symbol for ' '
  assert.equal(bytesTok.idToToken(259), null);
  assert.ok(
    bytesTok.isSpecial(256) && bytesTok.isSpecial(257) &&
      bytesTok.isSpecial(258),
  );
  assert.ok(!bytesTok.isSpecial(0) && !bytesTok.isSpecial(255));
});

Deno.test("bytes: one token per UTF-8 byte, exact round trip", () => {
  const texts = [...SAMPLES, randomText(1, 400), randomText(2, 400)];
  for (const text of texts) {
    const ids = bytesTok.encode(text);
    assert.deepEqual(
      ids,
      [...new TextEncoder().encode(text)],
      JSON.stringify(text),
    );
    assert.equal(bytesTok.decode(ids), text);
  }
});

Deno.test("bytes: special tokens in text are single ids; skipSpecialTokens drops them", () => {
  const ids = bytesTok.encode("a<|im_start|>b<|im_end|><|endoftext|>c");
  assert.deepEqual(ids, [97, 257, 98, 258, 256, 99]);
  assert.equal(bytesTok.decode(ids), "a<|im_start|>b<|im_end|><|endoftext|>c");
  assert.equal(bytesTok.decode(ids, { skipSpecialTokens: true }), "abc");
  // No BOS/EOS is added, with or without addSpecialTokens.
  assert.deepEqual(bytesTok.encode("hi", { addSpecialTokens: true }), [
    104,
    105,
  ]);
  assert.deepEqual(bytesTok.encode("hi", { addSpecialTokens: false }), [
    104,
    105,
  ]);
  assert.equal(bytesTok.decode([]), "");
});

Deno.test("bytes: ChatML template with and without generation prompt", () => {
  assert.equal(bytesTok.applyChatTemplate(CONVO), CHATML);
  assert.equal(
    bytesTok.applyChatTemplate(CONVO, { addGenerationPrompt: true }),
    CHATML + "<|im_start|>assistant\n",
  );
  const withReply = [...CONVO, { role: "assistant", content: "Hi." }];
  assert.equal(
    bytesTok.applyChatTemplate(withReply),
    CHATML + "<|im_start|>assistant\nHi.<|im_end|>\n",
  );
  for (const addGenerationPrompt of [false, true]) {
    const ids = bytesTok.encodeChat(CONVO, { addGenerationPrompt });
    assert.deepEqual(
      ids,
      bytesTok.encode(
        bytesTok.applyChatTemplate(CONVO, { addGenerationPrompt }),
      ),
    );
    assert.equal(ids[0], 257); // starts with <|im_start|>, no BOS
  }
  assert.throws(
    () => bytesTok.applyChatTemplate([{ role: "tool", content: "x" }]),
    ChatTemplateError,
  );
});

Deno.test("bytes: transformers.js AutoTokenizer loads the directory itself", async () => {
  configureTransformersOffline();
  const hf = await AutoTokenizer.from_pretrained(bytesDir, {
    local_files_only: true,
  });
  const text = "Héllo <|im_end|> 🎉";
  assert.deepEqual(hf.encode(text), bytesTok.encode(text));
  const rendered = hf.apply_chat_template(CONVO, {
    tokenize: false,
    add_generation_prompt: true,
  });
  assert.equal(
    rendered,
    bytesTok.applyChatTemplate(CONVO, { addGenerationPrompt: true }),
  );
  const ids = hf.apply_chat_template(CONVO, {
    add_generation_prompt: true,
    return_tensor: false,
    return_dict: false,
  });
  assert.deepEqual(
    ids,
    bytesTok.encodeChat(CONVO, { addGenerationPrompt: true }),
  );
  assert.equal(hf.eos_token_id, 258);
  assert.equal(hf.pad_token_id, 256);
});

Deno.test("bytes: model-id style load via env.localModelPath also works", async () => {
  configureTransformersOffline();
  const saved = env.localModelPath;
  try {
    env.localModelPath = dirname(bytesDir);
    const hf = await AutoTokenizer.from_pretrained(basename(bytesDir), {
      local_files_only: true,
    });
    assert.deepEqual(hf.encode("xyz"), [120, 121, 122]);
  } finally {
    env.localModelPath = saved;
  }
});

Deno.test("errors: missing tokenizer.json, missing chat template", async () => {
  const empty = await tempDir();
  await assert.rejects(loadTokenizer(empty), (e: unknown) => {
    assert.ok(e instanceof TokenizerLoadError);
    assert.match(e.message, /tokenizer\.json/);
    assert.ok(e.message.includes(empty));
    return true;
  });

  const cfg = JSON.parse(bytes.files["tokenizer_config.json"]);
  delete cfg.chat_template;
  const noTemplate = await writeModelDir({
    ...bytes.files,
    "tokenizer_config.json": JSON.stringify(cfg),
  });
  const tok = await loadTokenizer(noTemplate);
  assert.equal(tok.hasChatTemplate, false);
  assert.throws(() => tok.applyChatTemplate(CONVO), (e: unknown) => {
    assert.ok(e instanceof ChatTemplateError);
    assert.ok(e.message.includes(noTemplate));
    return true;
  });
  // Without generation_config.json only tokenizer_config's eos_token is known.
  assert.deepEqual(tok.eosTokenIds, [258]);
});

Deno.test("chat_template.jinja is used when tokenizer_config has no template", async () => {
  const cfg = JSON.parse(bytes.files["tokenizer_config.json"]);
  const jinja = cfg.chat_template;
  delete cfg.chat_template;
  const dir = await writeModelDir({
    ...bytes.files,
    "tokenizer_config.json": JSON.stringify(cfg),
    "chat_template.jinja": jinja,
  });
  const tok = await loadTokenizer(dir);
  assert.equal(tok.hasChatTemplate, true);
  assert.equal(tok.applyChatTemplate(CONVO), CHATML);
});

// ------------------------------------------------------------------ qwen3 --

let qwen3: Promise<{ files: TokenizerFiles; tok: Tokenizer }> | null = null;
function loadQwen3() {
  qwen3 ??= (async () => {
    const files = await qwen3TokenizerFiles();
    const tok = await loadTokenizer(
      await writeModelDir({
        ...files.files,
        "generation_config.json": generationConfig(files),
      }),
    );
    return { files, tok };
  })();
  return qwen3;
}

Deno.test("qwen3: files and ids", async () => {
  const { files, tok } = await loadQwen3();
  assert.deepEqual(Object.keys(files.files).sort(), [
    "tokenizer.json",
    "tokenizer_config.json",
  ]);
  assert.equal(files.vocabSize, 151669); // 151643 BPE + 26 added tokens
  assert.deepEqual(files.eosTokenIds, [151645, 151643]);
  assert.equal(files.padTokenId, 151643);
  assert.equal(files.bosTokenId, null);
  assert.equal(tok.vocabSize, 151669);
  assert.deepEqual(tok.eosTokenIds, [151645, 151643]);
  assert.equal(tok.bosTokenId, null);
  assert.deepEqual(tok.encode("<|im_end|>"), [151645]);
  assert.equal(tok.idToToken(151645), "<|im_end|>");
  assert.ok(tok.isSpecial(151645) && tok.isSpecial(151643));
  assert.ok(!tok.isSpecial(151667)); // <think> is an added but non-special token
});

Deno.test("qwen3: multi-byte round trip (NFC text)", async () => {
  const { tok } = await loadQwen3();
  for (const text of [...SAMPLES, randomText(3, 300)]) {
    // Qwen3's tokenizer.json has an NFC normalizer: round trip is exact for NFC input.
    const nfc = text.normalize("NFC");
    assert.equal(tok.decode(tok.encode(nfc)), nfc, JSON.stringify(nfc));
  }
  const ids = tok.encode("你好<|im_start|>🎉");
  assert.ok(ids.includes(151644));
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "你好🎉");
});

Deno.test("qwen3: chat template", async () => {
  const { tok } = await loadQwen3();
  assert.equal(tok.hasChatTemplate, true);
  assert.equal(tok.applyChatTemplate(CONVO), CHATML);
  const prompt = tok.applyChatTemplate(CONVO, { addGenerationPrompt: true });
  assert.equal(prompt, CHATML + "<|im_start|>assistant\n");
  // enable_thinking=false pre-fills an empty think block.
  assert.equal(
    tok.applyChatTemplate(CONVO, {
      addGenerationPrompt: true,
      templateKwargs: { enable_thinking: false },
    }),
    CHATML + "<|im_start|>assistant\n<think>\n\n</think>\n\n",
  );
  // A final assistant turn (after the last user query) is rendered with a think block.
  assert.equal(
    tok.applyChatTemplate([...CONVO, { role: "assistant", content: "Hi." }]),
    CHATML + "<|im_start|>assistant\n<think>\n\n</think>\n\nHi.<|im_end|>\n",
  );
  const ids = tok.encodeChat(CONVO, { addGenerationPrompt: true });
  assert.deepEqual(ids, tok.encode(prompt));
  assert.equal(ids[0], 151644);
  assert.deepEqual(ids.slice(-3), tok.encode("<|im_start|>assistant\n"));
});
