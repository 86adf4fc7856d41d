/**
 * Runs the engine sequences of one HTTP request (n choices × prompts) as one
 * unit: starts them all, shares one AbortController (client disconnect, or
 * one sequence failing, stops every sequence), lets the caller wait for the
 * first event (so an engine that fails lazily, on the first `next()`, still
 * gets an HTTP status before a 200 stream is committed), then merges events
 * in arrival order. Token timing (TTFT, inter-token latency) is measured here,
 * from the event stream as the route layer sees it.
 */
import type { GenerationEngine, GenerationEvent, GenerationRequest } from "../src/serve/engine_types.ts";

export interface TokenTimingObserver {
  firstToken(seconds: number): void;
  interToken(seconds: number): void;
}

export interface IndexedEvent {
  /** Choice index (position in the `requests` passed to `start`). */
  index: number;
  event: GenerationEvent;
}

type Step = { index: number; result: IteratorResult<GenerationEvent> };

export class SequenceGroup {
  readonly #iters: AsyncIterator<GenerationEvent>[];
  readonly #pending: (Promise<Step> | null)[];
  readonly #controller: AbortController;
  readonly #timing: TokenTimingObserver | undefined;
  readonly #startedAt: number;
  readonly #lastTokenAt: (number | null)[];
  readonly #detach: () => void;

  private constructor(
    iters: AsyncIterator<GenerationEvent>[],
    controller: AbortController,
    timing: TokenTimingObserver | undefined,
    detach: () => void,
  ) {
    this.#detach = detach;
    this.#iters = iters;
    this.#controller = controller;
    this.#timing = timing;
    this.#startedAt = performance.now();
    this.#lastTokenAt = iters.map(() => null);
    this.#pending = iters.map((_, i) => this.#next(i));
  }

  /**
   * Starts every request with a signal tied to `clientSignal`. If the engine
   * refuses one (it throws synchronously), the ones already started are
   * aborted and the error propagates.
   */
  static start(
    engine: GenerationEngine,
    requests: Omit<GenerationRequest, "signal">[],
    clientSignal: AbortSignal | undefined,
    timing?: TokenTimingObserver,
  ): SequenceGroup {
    const controller = new AbortController();
    if (clientSignal?.aborted) controller.abort(clientSignal.reason);
    const onClientAbort = () => controller.abort(clientSignal?.reason);
    clientSignal?.addEventListener("abort", onClientAbort, { once: true });
    // Deno (legacy mode) also aborts request.signal after a *successful*
    // response; detaching once the group is over keeps that from counting.
    const detach = () => clientSignal?.removeEventListener("abort", onClientAbort);
    controller.signal.addEventListener("abort", detach, { once: true });
    const iters: AsyncIterator<GenerationEvent>[] = [];
    try {
      for (const req of requests) {
        iters.push(engine.generate({ ...req, signal: controller.signal })[Symbol.asyncIterator]());
      }
    } catch (e) {
      controller.abort(e);
      throw e;
    }
    return new SequenceGroup(iters, controller, timing, detach);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  abort(reason?: unknown): void {
    this.#controller.abort(reason);
  }

  /**
   * Resolves once some sequence produced an event; rejects (aborting all) if
   * the first to answer failed. Not all of them: an engine may only advance a
   * sequence while its events are consumed (one at a time), and refusals are
   * thrown synchronously by `generate` anyway.
   */
  async ready(): Promise<void> {
    try {
      await Promise.race(this.#pending);
    } catch (e) {
      this.abort(e);
      throw e;
    }
  }

  /** All events, in arrival order; each sequence ends with its done event. Aborts all on error or early exit. */
  async *events(): AsyncGenerator<IndexedEvent> {
    let live = this.#pending.filter((p) => p !== null).length;
    try {
      while (live > 0) {
        const { index, result } = await Promise.race(this.#pending.filter((p): p is Promise<Step> => p !== null));
        if (result.done) {
          this.#pending[index] = null;
          live--;
          continue;
        }
        this.#pending[index] = this.#next(index);
        yield { index, event: result.value };
      }
    } finally {
      // Early exit (consumer stopped, or an error): nothing may keep generating.
      if (live > 0) this.abort(new Error("request ended"));
      this.#detach();
    }
  }

  #next(index: number): Promise<Step> {
    const p = this.#iters[index].next().then((result) => {
      if (!result.done && result.value.type === "token") this.#observeToken(index);
      return { index, result };
    });
    // Failures are consumed by ready()/events(); this only keeps a second
    // concurrent failure from surfacing as an unhandled rejection.
    p.catch(() => {});
    return p;
  }

  #observeToken(index: number): void {
    const now = performance.now();
    const last = this.#lastTokenAt[index];
    if (last === null) this.#timing?.firstToken((now - this.#startedAt) / 1000);
    else this.#timing?.interToken((now - last) / 1000);
    this.#lastTokenAt[index] = now;
  }
}
