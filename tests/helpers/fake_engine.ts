/**
 * A scripted GenerationEngine and a one-char-per-token Tokenizer, so route
 * tests exercise the whole HTTP layer in milliseconds without a model.
 * The engine honours the contract: stop strings (never in the text), token
 * budget, logprobs, prompt logprobs, abort signals, queue-full refusals.
 */
import type { ChatMessage, Tokenizer } from "../../src/model/tokenizer.ts";
import {
  type EngineStats,
  type GenerationEngine,
  type GenerationEvent,
  type GenerationRequest,
  QueueFullError,
  type TokenLogprob,
} from "../../src/serve/engine_types.ts";
import type { ServedModel } from "../../src/serve/model_resolver.ts";

const EOS = 256;

/** Token id = char code (< 256); 256 = EOS. */
export class CharTokenizer implements Tokenizer {
  readonly hasChatTemplate = true;
  readonly eosTokenIds = [EOS];
  readonly bosTokenId = null;
  readonly vocabSize = 257;
  encode(text: string): number[] {
    return [...text].map((ch) => ch.charCodeAt(0) & 0xff);
  }
  decode(ids: number[]): string {
    return ids.filter((id) => id < EOS).map((id) => String.fromCharCode(id)).join("");
  }
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    return messages.map((m) => `<${m.role}>${m.content}\n`).join("") + (opts.addGenerationPrompt ? "<assistant>" : "");
  }
  encodeChat(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, opts));
  }
  idToToken(id: number): string | null {
    return id < EOS ? String.fromCharCode(id) : id === EOS ? "<eos>" : null;
  }
  isSpecial(id: number): boolean {
    return id === EOS;
  }
}

function lp(id: number, logprob: number): TokenLogprob {
  const token = id < EOS ? String.fromCharCode(id) : "<eos>";
  return { id, token, logprob, bytes: [...new TextEncoder().encode(token)] };
}

export interface FakeEngineOptions {
  /** The full text the "model" would write for a request (before stops and budget). */
  script?: (req: GenerationRequest) => string;
  contextLength?: number;
  /** Delay before each token, ms. */
  tokenDelayMs?: number;
  /** Make `generate` refuse with QueueFullError. */
  queueFull?: boolean;
  /** Throw this mid-stream after the first token. */
  failAfterFirstToken?: Error;
}

export class FakeEngine implements GenerationEngine {
  readonly modelId: string;
  readonly contextLength: number;
  readonly requests: GenerationRequest[] = [];
  /** Requests whose signal fired before they finished. */
  aborted = 0;
  #active = 0;

  constructor(modelId: string, readonly opts: FakeEngineOptions = {}) {
    this.modelId = modelId;
    this.contextLength = opts.contextLength ?? 512;
  }

  generate(req: GenerationRequest): AsyncIterable<GenerationEvent> {
    if (this.opts.queueFull) throw new QueueFullError("queue is full");
    this.requests.push(req);
    return this.#run(req);
  }

  async *#run(req: GenerationRequest): AsyncGenerator<GenerationEvent> {
    this.#active++;
    try {
      const full = this.opts.script?.(req) ?? `hello ${req.sampling.seed ?? "x"}`;
      let stopAt = full.length;
      for (const s of req.stop) {
        const i = full.indexOf(s);
        if (i >= 0 && i < stopAt) stopAt = i;
      }
      const text = full.slice(0, stopAt);
      const stoppedByString = stopAt < full.length;
      const n = Math.min(text.length, req.maxTokens);
      for (let i = 0; i < n; i++) {
        if (this.opts.tokenDelayMs) await new Promise((r) => setTimeout(r, this.opts.tokenDelayMs));
        if (req.signal?.aborted) {
          this.aborted++;
          throw req.signal.reason ?? new DOMException("aborted", "AbortError");
        }
        if (i === 1 && this.opts.failAfterFirstToken) throw this.opts.failAfterFirstToken;
        const id = text.charCodeAt(i) & 0xff;
        yield {
          type: "token",
          id,
          text: text[i],
          logprob: req.logprobs === undefined ? undefined : {
            ...lp(id, -0.25),
            top: Array.from({ length: req.logprobs }, (_, j) => lp(j === 0 ? id : 97 + j, -0.25 - j)),
          },
        };
      }
      const finished = n < req.maxTokens || stoppedByString;
      yield {
        type: "done",
        finishReason: finished ? "stop" : "length",
        text: "",
        promptTokens: req.promptIds.length,
        completionTokens: n,
        promptLogprobs: req.promptLogprobs
          ? req.promptIds.map((id, j) => (j === 0 ? null : { ...lp(id, -1), top: [lp(id, -1)] }))
          : undefined,
      };
    } finally {
      this.#active--;
    }
  }

  stats(): EngineStats {
    return { queueDepth: 0, activeSequences: this.#active, lastBatchSize: this.#active };
  }

  async close(): Promise<void> {}
}

export function fakeModel(id: string, opts: FakeEngineOptions = {}): ServedModel & { engine: FakeEngine } {
  return { id, created: 1700000000, ownedBy: "test", engine: new FakeEngine(id, opts), tokenizer: new CharTokenizer() };
}
