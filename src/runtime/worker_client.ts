/**
 * Main-thread handle on a model worker (model_worker.ts): typed request /
 * reply calls over postMessage. Worker-side failures arrive as
 * `ModelWorkerError`s with the worker's error kind; if the worker dies, every
 * pending and later call fails with kind "WorkerGone".
 */
import { deviceLockBuffer } from "./device_lock.ts";
import type {
  DecodeResult,
  LoadResult,
  LoadSpec,
  OpResults,
  PrefillPrompt,
  PrefillResult,
  WorkerErrorKind,
  WorkerOp,
  WorkerReply,
  WorkerRequest,
} from "./worker_protocol.ts";

export class ModelWorkerError extends Error {
  override name = "ModelWorkerError";
  constructor(readonly kind: WorkerErrorKind, message: string) {
    super(message);
  }
}

/** The fields of one op's request besides id and op. */
type BodyOf<Op extends WorkerOp> = Omit<Extract<WorkerRequest, { op: Op }>, "id" | "op">;

interface Pending {
  resolve: (r: unknown) => void;
  reject: (e: Error) => void;
}

export class ModelWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #gone: ModelWorkerError | null = null;

  private constructor() {
    this.#worker = new Worker(new URL("./model_worker.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = (e: MessageEvent<WorkerReply>) => this.#onReply(e.data);
    this.#worker.onerror = (e: ErrorEvent) => {
      e.preventDefault(); // an uncaught worker error must not take the whole process down
      this.#fail(new ModelWorkerError("WorkerGone", `model worker crashed: ${e.message}`));
    };
    this.#worker.onmessageerror = () => {
      this.#fail(new ModelWorkerError("WorkerGone", "model worker sent an unreadable message"));
    };
  }

  /** Starts a worker and loads the model in it (the worker shares this thread's device lock). */
  static async start(spec: Omit<LoadSpec, "deviceLock">): Promise<{ worker: ModelWorker; load: LoadResult }> {
    const worker = new ModelWorker();
    try {
      return { worker, load: await worker.#call("load", { spec: { ...spec, deviceLock: deviceLockBuffer() } }) };
    } catch (e) {
      worker.terminate();
      throw e;
    }
  }

  /** False once the worker died or was closed. */
  get alive(): boolean {
    return this.#gone === null;
  }

  prefill(prompts: PrefillPrompt[], allLogits: boolean): Promise<PrefillResult> {
    return this.#call("prefill", { prompts, allLogits });
  }

  decode(seqs: number[], tokens: number[]): Promise<DecodeResult> {
    return this.#call("decode", { seqs, tokens });
  }

  async drop(seqs: number[]): Promise<void> {
    if (seqs.length > 0) await this.#call("drop", { seqs });
  }

  /** Releases the session, then ends the worker. */
  async close(): Promise<void> {
    if (this.#gone) return;
    try {
      await this.#call("close", {});
    } finally {
      this.terminate();
    }
  }

  /** Ends the worker at once; pending calls fail with "WorkerGone". */
  terminate(): void {
    this.#worker.terminate();
    this.#fail(new ModelWorkerError("WorkerGone", "model worker was closed"));
  }

  #call<Op extends WorkerOp>(op: Op, body: BodyOf<Op>): Promise<OpResults[Op]> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    return new Promise<OpResults[Op]>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (r: unknown) => void, reject });
      this.#worker.postMessage({ ...body, op, id });
    });
  }

  #onReply(reply: WorkerReply): void {
    const p = this.#pending.get(reply.id);
    if (!p) return;
    this.#pending.delete(reply.id);
    if (reply.ok) p.resolve(reply.result);
    else p.reject(new ModelWorkerError(reply.error.kind, reply.error.message));
  }

  #fail(err: ModelWorkerError): void {
    this.#gone ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
