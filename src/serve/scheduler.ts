/**
 * Continuous batching over a step runner (the model worker): the executor of
 * the plans of schedule_plan.ts. Each step it asks the plan which sequences
 * leave, which queued ones join and how their prompts are prefilled (similar
 * lengths together in one left-padded pass), runs those passes, then ONE
 * batched decode step for every active sequence. Finished, aborted and
 * timed-out sequences leave between steps and their caches are dropped in the
 * worker. Sampling, detokenization and stop matching run here, per sequence
 * (`SequenceDecoder`, shared with generate.ts), on the raw logits rows the
 * worker returns; stream events are delivered through an Outbox.
 *
 * Admission is bounded: at most `maxBatchSize` active sequences and
 * `maxQueued` waiting ones; beyond that `generate` throws QueueFullError at
 * once, which the HTTP layer turns into 429/503.
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import type { TransferBytes } from "../runtime/transfer.ts";
import type { DecodeResult, PrefillPrompt, PrefillResult } from "../runtime/worker_protocol.ts";
import { ModelWorkerError } from "../runtime/worker_client.ts";
import {
  type DoneEvent,
  type EngineStats,
  type GenerationEngine,
  type GenerationEvent,
  type GenerationRequest,
  QueueFullError,
  RequestTimeoutError,
  type TokenEvent,
  type TransferStats,
} from "./engine_types.ts";
import { EventChannel } from "./event_channel.ts";
import { type ScoredToken, TokenRenderer } from "./logprobs.ts";
import { Outbox } from "./outbox.ts";
import { checkRequest } from "./request_checks.ts";
import { admissionWaitMs, type PlanLimits, planStep } from "./schedule_plan.ts";
import { type FinishReason, SequenceDecoder, type SequenceStep } from "./sequence.ts";

/** What the scheduler needs from the model worker (ModelWorker implements it). */
export interface StepRunner {
  /** One pass over several new prompts (left-padded); `allLogits` needs exactly one prompt. */
  prefill(prompts: PrefillPrompt[], allLogits: boolean): Promise<PrefillResult>;
  decode(seqs: number[], tokens: number[]): Promise<DecodeResult>;
  drop(seqs: number[]): Promise<void>;
  close(): Promise<void>;
}

/** The prefill grouping (a plan step), exported here too for the engine tests. */
export { planPrefills } from "./schedule_plan.ts";

/** The engine is closing or closed: a QueueFullError, so the HTTP layer answers 503. */
export class EngineClosedError extends QueueFullError {
  override name = "EngineClosedError";
}

/** The model worker failed a step; the affected sequences end with this error. */
export class EngineError extends Error {
  override name = "EngineError";
}

export interface SchedulerOptions {
  /** Most sequences decoding together. Default 32. */
  maxBatchSize?: number;
  /** Most requests waiting for a slot. Default 4 × maxBatchSize. */
  maxQueued?: number;
  /** Prompt tokens prefilled between two decode steps (at least one prompt is always admitted). Default 2048. */
  prefillTokensPerStep?: number;
  /**
   * Most padding a batched prefill may add, as a fraction of its real prompt
   * tokens (prompts of unlike length are prefilled in separate passes). Default 0.25.
   */
  prefillPaddingRatio?: number;
  /**
   * An idle engine starts once no request has arrived for this long (waiting
   * 10x this at most), so a burst of requests, which reaches the engine
   * spread over a few milliseconds of HTTP handling, is prefilled in one pass
   * rather than its first request alone. 0: start at once. Default 3.
   */
  admissionQuietMs?: number;
  /** Timeout for requests that set none; default: none. */
  defaultTimeoutMs?: number;
  observer?: EngineObserver;
}

export type RequestOutcome = FinishReason | "aborted" | "timeout" | "error";

/** Per-request timing, reported once when the request ends (however it ends). */
export interface RequestMetrics {
  promptTokens: number;
  completionTokens: number;
  /** Accepted → prefill started (null: never left the queue). */
  queueMs: number | null;
  /** Accepted → first token event (null: none was produced). */
  timeToFirstTokenMs: number | null;
  /** Gaps between consecutive token events. */
  interTokenMs: number[];
  totalMs: number;
  outcome: RequestOutcome;
}

/** Per worker step. */
export interface StepMetrics {
  kind: "prefill" | "decode";
  /** Sequences in the step. */
  batchSize: number;
  /** Tokens run through the model (padding excluded): the prompt lengths, or one per sequence. */
  tokens: number;
  /** Compute time in the worker. */
  ms: number;
  /** Decode: cache columns attended over, masked ones included. */
  width?: number;
  /** Decode: sequences that joined the batch cache before this step. */
  joined?: number;
  /** Bytes the step copied between host and device. */
  transfer: TransferBytes;
}

/** Metrics hooks; exceptions thrown by them are ignored. */
export interface EngineObserver {
  onStep?(m: StepMetrics): void;
  onRequestEnd?(m: RequestMetrics): void;
}

export interface BatchEngineStats extends EngineStats {
  requestsTotal: number;
  promptTokensTotal: number;
  completionTokensTotal: number;
  decodeSteps: number;
}

/** The model facts the scheduler needs. */
export interface ScheduledModel {
  modelId: string;
  contextLength: number;
  vocabSize: number;
  tokenizer: Tokenizer;
}

interface Sequence {
  id: number;
  req: GenerationRequest;
  decoder: SequenceDecoder;
  channel: EventChannel<GenerationEvent>;
  state: "queued" | "active" | "done";
  /** Set when an active sequence must leave at the next step boundary. */
  cancelled: RequestOutcome | null;
  /** The prefill was sent: the worker holds (or will hold) a cache to drop. */
  inWorker: boolean;
  lastToken: number;
  promptLogprobs: (ScoredToken | null)[] | null;
  acceptedAt: number;
  prefillAt: number | null;
  firstTokenAt: number | null;
  lastTokenAt: number;
  interTokenMs: number[];
  cleanup: () => void;
}

export class BatchScheduler implements GenerationEngine {
  readonly modelId: string;
  readonly contextLength: number;
  readonly tokenizer: Tokenizer;
  readonly #runner: StepRunner;
  readonly #vocab: number;
  readonly #renderer: TokenRenderer;
  readonly #limits: PlanLimits;
  readonly #maxQueued: number;
  readonly #defaultTimeoutMs: number | undefined;
  readonly #observer: EngineObserver | undefined;
  readonly #decode: (ids: number[]) => string;
  readonly #queue: Sequence[] = [];
  readonly #active = new Map<number, Sequence>();
  #pendingDrops: number[] = [];
  readonly #outbox = new Outbox();
  #nextId = 1;
  #loop: Promise<void> = Promise.resolve();
  #running = false;
  #quietMs: number;
  #lastArrival = 0;
  #closing = false;
  #closed: Promise<void> | null = null;
  #broken: Error | null = null;
  #lastBatchSize = 0;
  readonly #transfer: TransferStats = {
    total: { hostToDevice: 0, deviceToHost: 0 },
    lastDecode: { hostToDevice: 0, deviceToHost: 0 },
  };
  readonly #counters = { requestsTotal: 0, promptTokensTotal: 0, completionTokensTotal: 0, decodeSteps: 0 };

  constructor(runner: StepRunner, model: ScheduledModel, opts: SchedulerOptions = {}) {
    this.#runner = runner;
    this.modelId = model.modelId;
    this.contextLength = model.contextLength;
    this.tokenizer = model.tokenizer;
    this.#vocab = model.vocabSize;
    this.#renderer = new TokenRenderer(model.tokenizer);
    this.#decode = (ids) => model.tokenizer.decode(ids, { skipSpecialTokens: true });
    const maxBatchSize = positiveInt(opts.maxBatchSize ?? 32, "maxBatchSize");
    this.#maxQueued = nonNegativeInt(opts.maxQueued ?? 4 * maxBatchSize, "maxQueued");
    const prefillPaddingRatio = opts.prefillPaddingRatio ?? 0.25;
    if (!(prefillPaddingRatio >= 0)) {
      throw new RangeError(`prefillPaddingRatio must be >= 0, got ${prefillPaddingRatio}`);
    }
    this.#limits = {
      maxBatchSize,
      prefillTokensPerStep: positiveInt(opts.prefillTokensPerStep ?? 2048, "prefillTokensPerStep"),
      prefillPaddingRatio,
    };
    this.#quietMs = opts.admissionQuietMs ?? 3;
    if (!(this.#quietMs >= 0) || this.#quietMs === Infinity) {
      throw new RangeError(`admissionQuietMs must be finite and >= 0, got ${this.#quietMs}`);
    }
    this.#defaultTimeoutMs = opts.defaultTimeoutMs;
    this.#observer = opts.observer;
  }

  stats(): BatchEngineStats {
    return {
      queueDepth: this.#queue.length,
      activeSequences: this.#active.size,
      lastBatchSize: this.#lastBatchSize,
      transfer: { total: { ...this.#transfer.total }, lastDecode: { ...this.#transfer.lastDecode } },
      ...this.#counters,
    };
  }

  generate(req: GenerationRequest): AsyncIterable<GenerationEvent> {
    if (this.#closing) throw new EngineClosedError("the engine is shutting down");
    if (this.#broken) throw new EngineClosedError(`the engine is unavailable: ${this.#broken.message}`);
    const { maxTokens } = checkRequest(req, { contextLength: this.contextLength, vocabSize: this.#vocab });
    if (this.#queue.length + this.#active.size >= this.#limits.maxBatchSize + this.#maxQueued) {
      throw new QueueFullError(
        `the server is at capacity (${this.#active.size} running, ${this.#queue.length} queued); retry later`,
      );
    }
    const now = performance.now();
    const seq: Sequence = {
      id: this.#nextId++,
      req,
      decoder: new SequenceDecoder(this.#decode, {
        maxTokens,
        sampling: req.sampling,
        stopTokenIds: req.stopTokenIds ?? this.tokenizer.eosTokenIds,
        stop: req.stop,
        logprobs: req.logprobs,
      }),
      channel: new EventChannel<GenerationEvent>(() => this.#cancel(seq, "aborted", null)),
      state: "queued",
      cancelled: null,
      inWorker: false,
      lastToken: -1,
      promptLogprobs: null,
      acceptedAt: now,
      prefillAt: null,
      firstTokenAt: null,
      lastTokenAt: now,
      interTokenMs: [],
      cleanup: () => {},
    };
    this.#counters.requestsTotal++;
    const signal = req.signal;
    if (signal?.aborted) {
      seq.state = "done";
      seq.channel.fail(abortReason(signal));
      return seq.channel;
    }
    const timeoutMs = req.timeoutMs ?? this.#defaultTimeoutMs;
    const timer = timeoutMs === undefined ? undefined : setTimeout(
      () => this.#cancel(seq, "timeout", new RequestTimeoutError(`the request exceeded its ${timeoutMs} ms limit`)),
      timeoutMs,
    );
    const onAbort = () => this.#cancel(seq, "aborted", abortReason(signal!));
    signal?.addEventListener("abort", onAbort, { once: true });
    seq.cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    this.#queue.push(seq);
    this.#kick();
    return seq.channel;
  }

  /** Stops accepting requests, waits for the queued and running ones to finish, then closes the runner. */
  close(): Promise<void> {
    this.#closing = true;
    this.#closed ??= (async () => {
      while (this.#running) await this.#loop;
      await this.#runner.close();
    })();
    return this.#closed;
  }

  #kick(): void {
    this.#lastArrival = performance.now();
    if (this.#running) return;
    this.#running = true;
    // Started a microtask later at least, so requests submitted together are admitted (and prefilled) together.
    this.#loop = this.#gather().then(() => this.#run());
  }

  /** Waits until requests have stopped arriving for the quiet time (bounded; see admissionWaitMs). */
  async #gather(): Promise<void> {
    const start = performance.now();
    for (;;) {
      const wait = admissionWaitMs(performance.now(), this.#lastArrival, start, this.#quietMs);
      if (wait <= 0 || this.#closing) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  async #run(): Promise<void> {
    try {
      while (this.#queue.length > 0 || this.#active.size > 0) {
        try {
          await this.#step();
        } catch (e) {
          // Only a bug lands here; fail everything rather than spin.
          this.#failAll(e instanceof Error ? e : new Error(String(e)));
        }
      }
      this.#flushDrops();
    } finally {
      // Synchronously with the last emptiness check: a request arriving after it starts a new loop.
      this.#running = false;
    }
  }

  /** One step: plan it from the queue and the batch, then run the plan. */
  async #step(): Promise<void> {
    const plan = planStep(
      this.#queue.map((s) => ({ id: s.id, promptLength: s.req.promptIds.length, allLogits: !!s.req.promptLogprobs })),
      [...this.#active.values()].map((s) => ({ id: s.id, cancelled: s.cancelled !== null })),
      this.#limits,
    );
    for (const id of plan.leave) {
      const seq = this.#active.get(id)!;
      this.#release(seq, seq.cancelled!);
    }
    const joining = new Map(this.#queue.splice(0, plan.join.length).map((seq) => [seq.id, seq]));
    const now = performance.now();
    for (const seq of joining.values()) {
      seq.state = "active";
      seq.prefillAt = now;
      seq.inWorker = true;
      this.#active.set(seq.id, seq);
    }
    if (joining.size > 0) this.#flushDrops();
    for (const pass of plan.prefills) await this.#prefill(pass.seqs.map((id) => joining.get(id)!), pass.allLogits);
    // Sequences cancelled while the prefills ran leave now; those that finished have left already.
    this.#reap();
    await this.#decodeStep(plan.decode.flatMap((id) => this.#active.get(id) ?? []));
  }

  async #prefill(group: Sequence[], allLogits: boolean): Promise<void> {
    let r: PrefillResult;
    try {
      r = await this.#runner.prefill(group.map((s) => ({ seq: s.id, tokens: s.req.promptIds })), allLogits);
    } catch (e) {
      this.#onRunnerError(e, group);
      return;
    }
    const tokens = group.reduce((n, s) => n + s.req.promptIds.length, 0);
    this.#counters.promptTokensTotal += tokens;
    this.#countTransfer(r.transfer);
    this.#notify("onStep", { kind: "prefill", batchSize: group.length, tokens, ms: r.ms, transfer: r.transfer });
    group.forEach((seq, i) => {
      if (seq.cancelled) return;
      if (r.allLogits) {
        seq.promptLogprobs = this.#renderer.prompt(seq.req.promptIds, r.allLogits, this.#vocab, seq.req.logprobs ?? 0);
      }
      if (seq.decoder.finished) this.#complete(seq); // maxTokens 0: prompt scoring only
      else this.#consume(seq, r.logits.subarray(i * this.#vocab, (i + 1) * this.#vocab), r.logSumExp[i]);
    });
  }

  #countTransfer(t: TransferBytes): void {
    this.#transfer.total.hostToDevice += t.hostToDevice;
    this.#transfer.total.deviceToHost += t.deviceToHost;
  }

  async #decodeStep(batch: Sequence[]): Promise<void> {
    if (batch.length === 0) return;
    this.#flushDrops();
    let r: DecodeResult;
    try {
      r = await this.#runner.decode(batch.map((s) => s.id), batch.map((s) => s.lastToken));
    } catch (e) {
      this.#onRunnerError(e, batch);
      return;
    }
    this.#lastBatchSize = batch.length;
    this.#counters.decodeSteps++;
    this.#countTransfer(r.transfer);
    this.#transfer.lastDecode = { ...r.transfer };
    this.#notify("onStep", {
      kind: "decode",
      batchSize: batch.length,
      tokens: batch.length,
      ms: r.ms,
      width: r.width,
      joined: r.joined,
      transfer: r.transfer,
    });
    const byId = new Map(batch.map((s) => [s.id, s]));
    r.rows.forEach((id, i) => {
      const seq = byId.get(id);
      if (seq?.state === "active" && !seq.cancelled) {
        this.#consume(seq, r.logits.subarray(i * this.#vocab, (i + 1) * this.#vocab), r.logSumExp[i]);
      }
    });
    this.#reap();
  }

  /** Samples the next token from a sequence's logits row (and its log Σ exp) and streams it. */
  #consume(seq: Sequence, logits: Float32Array, logSumExp: number): void {
    let step: SequenceStep;
    try {
      step = seq.decoder.step(logits, logSumExp);
    } catch (e) {
      this.#cancel(seq, "error", new EngineError(`sampling failed: ${e instanceof Error ? e.message : String(e)}`));
      return;
    }
    if (!step.isStopToken) {
      const event: TokenEvent = { type: "token", id: step.id, text: step.text };
      const now = performance.now();
      if (seq.firstTokenAt === null) seq.firstTokenAt = now;
      else seq.interTokenMs.push(now - seq.lastTokenAt);
      seq.lastTokenAt = now;
      this.#counters.completionTokensTotal++;
      const logprob = step.logprob;
      this.#deliver(() => {
        // Off the critical path: each step's logits buffer is fresh and never written again.
        if (logprob) event.logprob = this.#renderer.scored(event.id, logprob());
        seq.channel.push(event);
      });
    }
    if (seq.decoder.finished) this.#complete(seq);
    else seq.lastToken = step.id;
  }

  #complete(seq: Sequence): void {
    const text = seq.decoder.finish();
    const done: DoneEvent = {
      type: "done",
      finishReason: seq.decoder.finishReason,
      text,
      promptTokens: seq.req.promptIds.length,
      completionTokens: seq.decoder.tokenIds.length,
    };
    if (seq.promptLogprobs) done.promptLogprobs = seq.promptLogprobs;
    this.#deliver(() => {
      seq.channel.push(done);
      seq.channel.end();
    });
    this.#release(seq, done.finishReason);
  }

  /**
   * Ends a sequence early. Its stream fails at once (`error` null: the
   * consumer left); an active sequence leaves the batch at the next step
   * boundary, a queued one leaves the queue now.
   */
  #cancel(seq: Sequence, outcome: RequestOutcome, error: Error | null): void {
    if (seq.state === "done" || seq.cancelled) return;
    this.#deliver(() => error ? seq.channel.fail(error) : seq.channel.end());
    if (seq.state === "queued") {
      this.#queue.splice(this.#queue.indexOf(seq), 1);
      this.#release(seq, outcome);
    } else {
      seq.cancelled = outcome;
    }
  }

  /** Queues an operation on a sequence's stream, run after the next step is sent (see Outbox). */
  #deliver(op: () => void): void {
    this.#outbox.push(op);
  }

  /** Releases cancelled active sequences (between steps). */
  #reap(): void {
    for (const seq of [...this.#active.values()]) if (seq.cancelled) this.#release(seq, seq.cancelled);
  }

  #release(seq: Sequence, outcome: RequestOutcome): void {
    if (seq.state === "done") return;
    seq.state = "done";
    seq.cleanup();
    if (this.#active.delete(seq.id) && seq.inWorker) this.#pendingDrops.push(seq.id);
    const now = performance.now();
    this.#notify("onRequestEnd", {
      promptTokens: seq.req.promptIds.length,
      completionTokens: seq.decoder.tokenIds.length,
      queueMs: seq.prefillAt === null ? null : seq.prefillAt - seq.acceptedAt,
      timeToFirstTokenMs: seq.firstTokenAt === null ? null : seq.firstTokenAt - seq.acceptedAt,
      interTokenMs: seq.interTokenMs,
      totalMs: now - seq.acceptedAt,
      outcome,
    });
  }

  /**
   * Sends pending drops without waiting: the worker handles messages in
   * order, so they take effect before any later step.
   */
  #flushDrops(): void {
    if (this.#pendingDrops.length === 0) return;
    const ids = this.#pendingDrops;
    this.#pendingDrops = [];
    // A failed drop only leaks a cache in a worker that is failing anyway.
    this.#runner.drop(ids).catch(() => {});
  }

  #onRunnerError(e: unknown, seqs: Sequence[]): void {
    const message = e instanceof Error ? e.message : String(e);
    if (e instanceof ModelWorkerError && e.kind === "WorkerGone") {
      this.#broken = new EngineError(message);
      this.#failAll(this.#broken);
      return;
    }
    for (const seq of seqs) this.#cancel(seq, "error", new EngineError(`model step failed: ${message}`));
    this.#reap();
  }

  #failAll(error: Error): void {
    for (const seq of [...this.#queue, ...this.#active.values()]) this.#cancel(seq, "error", error);
    this.#reap();
  }

  #notify<K extends keyof EngineObserver>(hook: K, m: Parameters<NonNullable<EngineObserver[K]>>[0]): void {
    try {
      (this.#observer?.[hook] as ((m: unknown) => void) | undefined)?.(m);
    } catch {
      // Metrics must never break serving.
    }
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException("the request was aborted", "AbortError");
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function nonNegativeInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  return v;
}
