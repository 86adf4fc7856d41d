/**
 * Worker entry point: owns the onnxruntime session and the KV caches of live
 * sequences, and runs the step commands of worker_protocol.ts.
 *
 * Why a worker: onnxruntime-node's `session.run()` executes synchronously on
 * the calling JS thread (its promise wrapper only defers it to setImmediate),
 * so on the main thread every step would freeze HTTP handling for its whole
 * duration. Messages are handled strictly one at a time, in arrival order, so
 * a `drop` sent between steps is seen before the next step.
 *
 * Where the caches live depends on the device: in host memory for the CPU
 * and CUDA (KvStore: a step fetches only its own new keys and values), in GPU
 * memory for WebGPU (DeviceKvStore: a step's `present` stays on the device
 * and is fed back as the next step's `past`).
 */
/// <reference lib="deno.worker" />
import "./ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { CausalLM } from "./causal_lm.ts";
import { DeviceKvStore } from "./device_kv.ts";
import { adoptDeviceLock } from "./device_lock.ts";
import { leftPaddedPrompts } from "./kv_batch.ts";
import { SessionKvOps } from "./kv_ops.ts";
import { KvStore, SequenceStateError } from "./kv_store.ts";
import { openGraphSession } from "./session.ts";
import type {
  DecodeResult,
  OpResults,
  PrefillPrompt,
  PrefillResult,
  WorkerErrorInfo,
  WorkerOp,
  WorkerReply,
  WorkerRequest,
} from "./worker_protocol.ts";

class RequestError extends Error {
  constructor(readonly info: WorkerErrorInfo) {
    super(info.message);
  }
}

let lm: CausalLM | null = null;
let store: KvStore | DeviceKvStore = new KvStore();
let kvOps: SessionKvOps | null = null;

function loaded(): CausalLM {
  if (!lm) throw new RequestError({ kind: "NotLoaded", message: "no model is loaded" });
  return lm;
}

/** A standalone copy when `a` is a view, so transferring it does not ship (or detach) a bigger buffer. */
function own(a: Float32Array): Float32Array {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : a.slice();
}

async function runStep<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof RequestError) throw e;
    if (e instanceof SequenceStateError) throw new RequestError({ kind: "BadRequest", message: e.message });
    throw new RequestError({ kind: "RunFailed", message: `${what}: ${e instanceof Error ? e.message : String(e)}` });
  }
}

async function prefill(prompts: PrefillPrompt[], allLogits: boolean): Promise<PrefillResult> {
  const model = loaded();
  const bad = (message: string) => new RequestError({ kind: "BadRequest", message });
  if (prompts.length === 0) throw bad("a prefill needs at least one prompt");
  if (allLogits && prompts.length !== 1) throw bad("prompt logits need a prefill of exactly one prompt");
  const ids = prompts.map((p) => p.seq);
  if (new Set(ids).size !== ids.length) throw bad("duplicate sequence in a prefill");
  for (const p of prompts) {
    if (store.has(p.seq)) throw bad(`sequence ${p.seq} already exists`);
    if (p.tokens.length === 0) throw bad("empty prompt");
  }
  const t0 = performance.now();
  const input = leftPaddedPrompts(prompts.map((p) => p.tokens));
  const out = await runStep("prefill", () => model.forwardStep({ ...input, numLogitsToKeep: allLogits ? 0 : 1 }));
  const width = input.inputIds[0].length;
  // With an empty past, a step's own keys and values are its whole cache.
  store.addPrefilled(ids, { layers: out.step, length: width, batch: ids.length }, input.lens);
  const vocab = model.config.vocabSize;
  return {
    logits: allLogits ? out.logits.slice(out.logits.length - vocab) : own(out.logits),
    logSumExp: out.logSumExp.slice(out.logSumExp.length - prompts.length),
    allLogits: allLogits ? { logits: own(out.logits), logSumExp: out.logSumExp } : null,
    transfer: out.transfer,
    ms: performance.now() - t0,
  };
}

async function decode(seqs: number[], tokens: number[]): Promise<DecodeResult> {
  const model = loaded();
  if (seqs.length !== tokens.length) {
    throw new RequestError({ kind: "BadRequest", message: "decode needs one token per sequence" });
  }
  const t0 = performance.now();
  const tokenOf = new Map(seqs.map((s, i) => [s, tokens[i]]));
  return await runStep("decode", async () => {
    let out, rows: number[], width: number, joined: number;
    if (store instanceof DeviceKvStore) {
      const prepared = await store.prepare(seqs);
      const inputs = prepared.batch.stepInputs();
      rows = [...prepared.batch.ids];
      out = await model.forward({ inputIds: rows.map((id) => [tokenOf.get(id)!]), ...inputs });
      prepared.batch.adopt(out.present.layers);
      ({ joined } = prepared);
      width = inputs.past.length;
    } else {
      const prepared = store.prepare(seqs);
      const inputs = prepared.batch.stepInputs();
      rows = [...prepared.batch.ids];
      out = await model.forwardStep({ inputIds: rows.map((id) => [tokenOf.get(id)!]), ...inputs });
      prepared.batch.append(out.step);
      ({ joined } = prepared);
      width = inputs.past.length;
    }
    return {
      logits: own(out.logits),
      logSumExp: out.logSumExp,
      rows,
      width,
      joined,
      transfer: out.transfer,
      ms: performance.now() - t0,
    };
  });
}

async function handle(req: WorkerRequest): Promise<{ result: OpResults[WorkerOp]; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case "load": {
      if (lm) throw new RequestError({ kind: "BadRequest", message: "a model is already loaded" });
      const t0 = performance.now();
      try {
        const { config, dtype, device, threads, deviceLock } = req.spec;
        adoptDeviceLock(deviceLock);
        lm = await CausalLM.open(config, req.spec.modelPath, dtype, { device, threads });
        if (lm.kvOnDevice) {
          const shape = { layers: config.numLayers, kvHeads: config.numKvHeads, headDim: config.headDim, dtype };
          kvOps = new SessionKvOps(shape, (graph) => openGraphSession(graph, { device, outputLocation: "gpu-buffer" }));
          store = new DeviceKvStore(kvOps);
        }
      } catch (e) {
        throw new RequestError({ kind: "LoadFailed", message: e instanceof Error ? e.message : String(e) });
      }
      return { result: { ms: performance.now() - t0 }, transfer: [] };
    }
    case "prefill": {
      const r = await prefill(req.prompts, req.allLogits);
      const transfer = [r.logits.buffer as ArrayBuffer];
      if (r.allLogits) transfer.push(r.allLogits.logits.buffer as ArrayBuffer);
      return { result: r, transfer };
    }
    case "decode": {
      const r = await decode(req.seqs, req.tokens);
      return { result: r, transfer: [r.logits.buffer as ArrayBuffer] };
    }
    case "drop":
      store.drop(req.seqs);
      return { result: {}, transfer: [] };
    case "close":
      store.clear();
      await kvOps?.release();
      kvOps = null;
      await lm?.release();
      lm = null;
      return { result: {}, transfer: [] };
  }
}

function isRequest(x: unknown): x is WorkerRequest {
  return typeof x === "object" && x !== null && typeof (x as { id?: unknown }).id === "number" &&
    typeof (x as { op?: unknown }).op === "string";
}

let chain: Promise<void> = Promise.resolve();

self.onmessage = (e: MessageEvent<unknown>) => {
  const req = e.data;
  chain = chain.then(async () => {
    if (!isRequest(req)) {
      const id = typeof (req as { id?: unknown })?.id === "number" ? (req as { id: number }).id : -1;
      self.postMessage(
        { id, ok: false, error: { kind: "BadRequest", message: "malformed message" } } satisfies WorkerReply,
      );
      return;
    }
    try {
      const { result, transfer } = await handle(req);
      self.postMessage({ id: req.id, ok: true, op: req.op, result } as WorkerReply, transfer);
      if (req.op === "close") self.close();
    } catch (err) {
      const error: WorkerErrorInfo = err instanceof RequestError
        ? err.info
        : { kind: "RunFailed", message: err instanceof Error ? err.message : String(err) };
      self.postMessage({ id: req.id, ok: false, error } satisfies WorkerReply);
    }
  });
};
