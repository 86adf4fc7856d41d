/**
 * Runs async tasks one at a time, in push order, without blocking the pusher:
 * the runner persists a worker's events in the order they were posted while
 * the worker keeps training. A failing task is reported and does not stop
 * the ones after it.
 */
export class SerialQueue {
  #tail: Promise<void> = Promise.resolve();

  constructor(private readonly onError: (e: unknown) => void) {}

  push(task: () => Promise<void>): void {
    this.#tail = this.#tail.then(task).catch(this.onError);
  }

  /** Resolves once every task pushed so far has finished. */
  drain(): Promise<void> {
    return this.#tail;
  }
}
