/**
 * The job event journal: every writer (runner, API actions) appends through
 * it, so in-process watchers wake at once; watchers also poll, so events
 * written by another replica (shared PostgreSQL) arrive within `pollMs`.
 *
 * A live watch ends once the job is terminal and the event announcing that
 * status exists (then it drains once more). Status events carry
 * `data.status`; they are appended right after the transition they announce,
 * so "terminal" alone could end a watch one event early. If that event never
 * comes (a crash between the two writes), the watch ends `graceMs` after it
 * first saw the terminal status.
 */
import type { EventRecord, NewEvent } from "../store/event_queries.ts";
import { isTerminal, type JobStatus } from "../store/job_status.ts";
import type { Store } from "../store/store.ts";

export interface WatchOptions {
  /** Start after this event id (e.g. the SSE `Last-Event-ID`); default: from the first event. */
  after?: string | null;
  signal?: AbortSignal;
  /** Yield an `idle` tick after this long without events (SSE keep-alives). Default 15 s. */
  idleMs?: number;
}

export type WatchItem = { kind: "event"; event: EventRecord } | { kind: "idle" };

export interface JournalOptions {
  /** How often a watcher re-reads the store without a local wake-up. Default 1000 ms. */
  pollMs?: number;
  /** How long a watch waits for a terminal job's status event. Default 3000 ms. */
  graceMs?: number;
}

const PAGE = 100;

export class JobJournal {
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #pollMs: number;
  readonly #graceMs: number;

  constructor(private readonly store: Store, opts: JournalOptions = {}) {
    this.#pollMs = opts.pollMs ?? 1000;
    this.#graceMs = opts.graceMs ?? 3000;
  }

  async append(jobId: string, event: NewEvent): Promise<EventRecord> {
    const row = await this.store.events.append(jobId, event);
    this.notify(jobId);
    return row;
  }

  /** A status change's event: `data.status` tells watchers (and clients) which status it announces. */
  status(jobId: string, status: JobStatus, message: string, level: NewEvent["level"] = "info"): Promise<EventRecord> {
    return this.append(jobId, { level, message, data: { status } });
  }

  /** Wakes this process's watchers of `jobId`. */
  notify(jobId: string): void {
    for (const wake of this.#waiters.get(jobId) ?? []) wake();
  }

  /** The job's events in order, live, until it is terminal (or `signal` aborts). */
  async *watch(jobId: string, opts: WatchOptions = {}): AsyncGenerator<WatchItem> {
    const idleMs = opts.idleMs ?? 15_000;
    let cursor = opts.after ?? null;
    let terminalSeenAt: number | null = null;
    let finishing = false;
    let lastEventAt = performance.now();
    while (!opts.signal?.aborted) {
      // Registered before reading, so an append between the read and the wait still wakes us.
      const wake = this.#wakeup(jobId, opts.signal);
      try {
        const page = await this.store.events.list(jobId, { after: cursor, limit: PAGE, order: "asc" });
        for (const event of page.data) {
          cursor = event.id;
          lastEventAt = performance.now();
          yield { kind: "event", event };
        }
        if (page.hasMore) continue;
        if (finishing) return;
        const job = await this.store.jobs.get(jobId);
        if (isTerminal(job.status)) {
          terminalSeenAt ??= performance.now();
          // The final status event exists (delivered now or before `after`): drain once more, then end.
          if (await this.#hasStatusEvent(jobId, job.status) || performance.now() - terminalSeenAt >= this.#graceMs) {
            finishing = true;
            continue;
          }
        }
        if (performance.now() - lastEventAt >= idleMs) {
          lastEventAt = performance.now();
          yield { kind: "idle" };
        }
        await wake.wait(Math.min(this.#pollMs, idleMs));
      } finally {
        wake.dispose();
      }
    }
  }

  /** Whether one of the job's latest events announces `status` (a few events may follow it). */
  async #hasStatusEvent(jobId: string, status: JobStatus): Promise<boolean> {
    const recent = await this.store.events.list(jobId, { limit: 20, order: "desc" });
    return recent.data.some((e) => (e.data as { status?: unknown } | null)?.status === status);
  }

  #wakeup(jobId: string, signal?: AbortSignal): { wait(ms: number): Promise<void>; dispose(): void } {
    let woken = false;
    let resolve: (() => void) | null = null;
    const wake = () => {
      woken = true;
      resolve?.();
    };
    let set = this.#waiters.get(jobId);
    if (!set) this.#waiters.set(jobId, set = new Set());
    set.add(wake);
    signal?.addEventListener("abort", wake);
    let timer: ReturnType<typeof setTimeout> | undefined;
    return {
      wait: (ms) =>
        woken ? Promise.resolve() : new Promise<void>((r) => {
          resolve = r;
          timer = setTimeout(r, ms);
        }),
      dispose: () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", wake);
        set.delete(wake);
        if (set.size === 0 && this.#waiters.get(jobId) === set) this.#waiters.delete(jobId);
      },
    };
  }
}
