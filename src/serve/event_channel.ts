/**
 * A single-consumer push → pull queue: the scheduler pushes a request's
 * events as steps produce them; the consumer iterates them. Events are
 * buffered (at most one per generated token). Leaving the iteration early
 * (`break`, `return()`) calls `onCancel`, so a consumer that stops reading
 * frees its sequence like an abort would.
 */
export class EventChannel<T> implements AsyncIterable<T> {
  readonly #buffer: T[] = [];
  #error: unknown = null;
  #hasError = false;
  #ended = false;
  #cancelled = false;
  #iterating = false;
  #wake: (() => void) | null = null;

  constructor(private readonly onCancel: () => void) {}

  /** Whether the producer side is done (ended or failed). */
  get closed(): boolean {
    return this.#ended || this.#hasError;
  }

  push(event: T): void {
    if (this.closed) return;
    this.#buffer.push(event);
    this.#notify();
  }

  end(): void {
    if (this.closed) return;
    this.#ended = true;
    this.#notify();
  }

  /** Buffered events are still delivered; then the iteration throws `error`. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.#error = error;
    this.#hasError = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.#iterating) throw new Error("a generation stream can be iterated only once");
    this.#iterating = true;
    const done = (): IteratorResult<T> => ({ done: true, value: undefined });
    return {
      next: async (): Promise<IteratorResult<T>> => {
        for (;;) {
          if (this.#cancelled) return done();
          if (this.#buffer.length > 0) return { done: false, value: this.#buffer.shift()! };
          if (this.#hasError) {
            const e = this.#error;
            this.#error = null;
            this.#cancelled = true; // throw once, then report done
            throw e;
          }
          if (this.#ended) return done();
          await new Promise<void>((resolve) => (this.#wake = resolve));
        }
      },
      return: (): Promise<IteratorResult<T>> => {
        if (!this.#cancelled && !this.closed) this.onCancel();
        this.#cancelled = true;
        this.#buffer.length = 0;
        this.#notify(); // a pending next() (manual iteration) resolves as done
        return Promise.resolve(done());
      },
    };
  }
}
