/**
 * The contract between the HTTP layer (routes/) and the batching engine
 * (src/serve/scheduler.ts + the runtime worker). Routes turn OpenAI requests
 * into `GenerationRequest`s and stream `GenerationEvent`s back; the engine
 * owns queueing, continuous batching, sampling and detokenization.
 */
import { ApiError } from "../errors.ts";
import type { TransferBytes } from "../runtime/transfer.ts";
import type { SamplingParams } from "./sampler.ts";

export interface GenerationRequest {
  /** Prompt token ids (chat template already applied). */
  promptIds: number[];
  /** Completion token budget (already clipped to the context by the caller or the engine). */
  maxTokens: number;
  /** temperature 0 = greedy; `seed` makes sampling reproducible. */
  sampling: SamplingParams;
  /** Stop strings (≤ 4); never part of the returned text. */
  stop: string[];
  /** Token ids that end generation; default: the model's EOS ids. */
  stopTokenIds?: number[];
  /**
   * Per generated token log-probabilities: undefined = none, 0 = the chosen
   * token's only, k > 0 = also the top k alternatives.
   */
  logprobs?: number;
  /** Also return the prompt tokens' log-probabilities (completions `echo` + `logprobs`). */
  promptLogprobs?: boolean;
  /** Aborts the sequence (client disconnect): the engine drops it between steps. */
  signal?: AbortSignal;
  /** Wall-clock limit for the whole request, queueing included. */
  timeoutMs?: number;
}

export interface TokenLogprob {
  id: number;
  /** The token's text as the tokenizer renders it alone. */
  token: string;
  logprob: number;
  /** UTF-8 bytes of `token` (OpenAI `bytes`). */
  bytes: number[];
}

export interface TokenEvent {
  type: "token";
  id: number;
  /** Newly visible text (may be "" while a character or a stop-string prefix is held back). */
  text: string;
  /** Present when `logprobs` was requested. */
  logprob?: TokenLogprob & { top: TokenLogprob[] };
}

export type FinishReason = "stop" | "length";

export interface DoneEvent {
  type: "done";
  finishReason: FinishReason;
  /** Any text still held back, released at the end. */
  text: string;
  promptTokens: number;
  completionTokens: number;
  /** Present when `promptLogprobs` was requested; the first token has logprob null. */
  promptLogprobs?: (TokenLogprob & { top: TokenLogprob[] } | null)[];
}

export type GenerationEvent = TokenEvent | DoneEvent;

/** The queue is full: 503 `server_overloaded`, retry after a second. */
export class QueueFullError extends ApiError {
  override name = "QueueFullError";
  constructor(detail = "") {
    super(
      503,
      `The server is overloaded: ${detail || "request queue is full"}. Retry later.`,
      "server_error",
      null,
      "server_overloaded",
      { "Retry-After": "1" },
    );
  }
}

/** The request cannot be served as asked (e.g. prompt longer than the context): a 400. */
export class InvalidRequestError extends ApiError {
  override name = "InvalidRequestError";
  constructor(message: string, param: string | null = null) {
    super(400, message, "invalid_request_error", param, /context/i.test(message) ? "context_length_exceeded" : null);
  }
}

/** The per-request timeout elapsed: a 504. */
export class RequestTimeoutError extends ApiError {
  override name = "RequestTimeoutError";
  constructor(message = "The request timed out") {
    super(504, message, "timeout_error", null, "timeout");
  }
}

export interface EngineStats {
  queueDepth: number;
  activeSequences: number;
  /** Sequences in the last batched decode step. */
  lastBatchSize: number;
  /** Bytes copied between host and device memory (absent or zero on the CPU, which has no device). */
  transfer?: TransferStats;
}

export interface TransferStats {
  /** Since the engine started, prefills and decode steps together. */
  total: TransferBytes;
  /** The last decode step's. */
  lastDecode: TransferBytes;
}

/** One loaded model served with continuous batching. */
export interface GenerationEngine {
  readonly modelId: string;
  /** Context length in tokens. */
  readonly contextLength: number;
  /**
   * Starts a generation. Throws QueueFullError / InvalidRequestError at once
   * when it cannot be accepted; otherwise yields token events then one done
   * event (or throws RequestTimeoutError / an abort error mid-stream).
   */
  generate(req: GenerationRequest): AsyncIterable<GenerationEvent>;
  stats(): EngineStats;
  /** Stops accepting work, lets in-flight sequences finish, releases the worker. */
  close(): Promise<void>;
}
