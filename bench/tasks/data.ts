/**
 * Deterministic JSONL datasets for the suite's capacity-bound tasks: facts
 * that must be memorised (the training set is the evaluation set), so the
 * loss a method reaches measures how much it can store and how fast, and a
 * low-rank adapter runs out of room.
 */
import { Rng } from "../../src/model/rng.ts";

const LOWER = "abcdefghijklmnopqrstuvwxyz";
const MIXED = LOWER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

export type DataSpec =
  /** Random keys → random values, one fact per example. */
  | {
    kind: "facts";
    format: "chat" | "prompt-completion";
    facts: number;
    keyLen: number;
    valueLen: number;
    /** Chat only: a system message in every example. */
    system?: string;
    /** Bytes of filler text before the key (long sequences; mistral's window is 64). */
    filler?: number;
  }
  /** Conversations of `turns` facts, every assistant turn trained. */
  | { kind: "multi-turn"; conversations: number; turns: number; keyLen: number; valueLen: number; system?: string }
  /** Lines of a text file: prompt = the first `promptBytes`, completion = the next `completionBytes`. */
  | { kind: "recite"; file: string; lines: number; promptBytes: number; completionBytes: number }
  /** Real words (from `file`) → real words, chat. */
  | { kind: "word-facts"; file: string; facts: number; system?: string };

function word(rng: Rng, len: number, letters: string): string {
  return Array.from({ length: len }, () => letters[rng.nextInt(letters.length)]).join("");
}

/** Distinct random keys with random values. */
function randomFacts(rng: Rng, n: number, keyLen: number, valueLen: number): [string, string][] {
  if (n > MIXED.length ** keyLen / 2) throw new Error(`${n} facts do not fit ${keyLen}-letter keys`);
  const seen = new Set<string>(), out: [string, string][] = [];
  while (out.length < n) {
    const k = word(rng, keyLen, MIXED);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push([k, word(rng, valueLen, LOWER)]);
  }
  return out;
}

const FILLER_WORDS = ("the of and to in is that for it as with was on be by this are from or an at which " +
  "not have has but all were can will one their there been if more when some would other what into").split(" ");

/** The JSONL text of a dataset; `label` seeds it (one task, one dataset). */
export async function datasetJsonl(spec: DataSpec, label: string): Promise<string> {
  const rng = new Rng(20261206, `suite/${label}`);
  const lines: unknown[] = [];
  switch (spec.kind) {
    case "facts": {
      for (const [k, v] of randomFacts(rng, spec.facts, spec.keyLen, spec.valueLen)) {
        let filler = "";
        while (filler.length < (spec.filler ?? 0)) filler += FILLER_WORDS[rng.nextInt(FILLER_WORDS.length)] + " ";
        const question = `${filler}key ${k}`;
        if (spec.format === "chat") {
          const messages = [
            ...(spec.system ? [{ role: "system", content: spec.system }] : []),
            { role: "user", content: question },
            { role: "assistant", content: v },
          ];
          lines.push({ messages });
        } else lines.push({ prompt: `${question} =`, completion: ` ${v}` });
      }
      break;
    }
    case "multi-turn": {
      const facts = randomFacts(rng, spec.conversations * spec.turns, spec.keyLen, spec.valueLen);
      for (let c = 0; c < spec.conversations; c++) {
        const messages: { role: string; content: string }[] = spec.system
          ? [{ role: "system", content: spec.system }]
          : [];
        for (let t = 0; t < spec.turns; t++) {
          const [k, v] = facts[c * spec.turns + t];
          messages.push({ role: "user", content: `key ${k}` }, { role: "assistant", content: v });
        }
        lines.push({ messages });
      }
      break;
    }
    case "recite": {
      const text = await Deno.readTextFile(spec.file);
      const need = spec.promptBytes + spec.completionBytes;
      const seen = new Set<string>();
      const candidates = text.split("\n").map((l) => l.trim()).filter((l) => {
        // ASCII only (one byte per character), long enough, each line once.
        if (l.length < need || !/^[\x20-\x7e]+$/.test(l) || seen.has(l.slice(0, spec.promptBytes))) return false;
        seen.add(l.slice(0, spec.promptBytes));
        return true;
      });
      if (candidates.length < spec.lines) {
        throw new Error(`${spec.file}: ${candidates.length} usable lines, the task needs ${spec.lines}`);
      }
      for (const l of candidates.slice(0, spec.lines)) {
        lines.push({ prompt: l.slice(0, spec.promptBytes), completion: l.slice(spec.promptBytes, need) });
      }
      break;
    }
    case "word-facts": {
      const text = await Deno.readTextFile(spec.file);
      const words = [...new Set(text.toLowerCase().match(/\b[a-z]{4,9}\b/g) ?? [])].sort();
      // A seeded shuffle, then keys from the first half and values from the second.
      for (let i = words.length - 1; i > 0; i--) {
        const j = rng.nextInt(i + 1);
        [words[i], words[j]] = [words[j], words[i]];
      }
      if (words.length < 2 * spec.facts) throw new Error(`${spec.file}: ${words.length} words, need ${2 * spec.facts}`);
      for (let i = 0; i < spec.facts; i++) {
        lines.push({
          messages: [
            ...(spec.system ? [{ role: "system", content: spec.system }] : []),
            { role: "user", content: `What is the code word for ${words[i]}?` },
            { role: "assistant", content: words[spec.facts + i] },
          ],
        });
      }
      break;
    }
  }
  return lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
}
