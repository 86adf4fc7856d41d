/**
 * One lock per process around onnxruntime's WebGPU provider. Its sessions
 * share one WebGPU context (command encoder, buffer cache), which is not
 * thread-safe: two sessions running at once from two threads crash the
 * process (onnxruntime issues #27592, #32561; seen here as "double free or
 * corruption" while a hot-swap validated a new engine beside the serving
 * one). Every engine and training job runs in its own Worker, so the lock
 * lives in a SharedArrayBuffer that each worker adopts at start, and is
 * taken with Atomics.waitAsync: waiting never blocks a thread's event loop,
 * and a thread that waits for itself (two async runs in one worker) simply
 * waits for its own earlier run.
 *
 * Releasing device tensors returns their buffers to that same cache, so
 * disposals are queued (releaseOnDevice) and carried out under the lock,
 * before the thread's next locked operation.
 */

interface Disposable {
  dispose(): void;
}

let buffer: SharedArrayBuffer | null = null;
let cell: Int32Array | null = null;
const pendingDisposals: Disposable[] = [];

/** The lock's shared memory, to hand to a worker (created on first use). */
export function deviceLockBuffer(): SharedArrayBuffer {
  buffer ??= new SharedArrayBuffer(4);
  return buffer;
}

/** Makes this thread use `shared` (a worker, with the buffer its creator passed). */
export function adoptDeviceLock(shared: SharedArrayBuffer): void {
  if (buffer === shared) return;
  if (cell && Atomics.load(cell, 0) !== 0) throw new Error("cannot adopt a device lock while holding another");
  buffer = shared;
  cell = new Int32Array(shared);
}

function lockCell(): Int32Array {
  cell ??= new Int32Array(deviceLockBuffer());
  return cell;
}

async function acquire(c: Int32Array): Promise<void> {
  while (Atomics.compareExchange(c, 0, 0, 1) !== 0) {
    // waitAsync keeps no event-loop handle of its own: hold one while waiting.
    const keepAlive = setTimeout(() => {}, 1000);
    const r = Atomics.waitAsync(c, 0, 1, 100);
    if (r.async) await r.value;
    clearTimeout(keepAlive);
  }
}

function release(c: Int32Array): void {
  Atomics.store(c, 0, 0);
  Atomics.notify(c, 0);
}

/** Runs `fn` holding the process-wide device lock (after this thread's queued disposals). */
export async function withDeviceLock<T>(fn: () => T | Promise<T>): Promise<T> {
  const c = lockCell();
  await acquire(c);
  try {
    for (const d of pendingDisposals.splice(0)) d.dispose();
    return await fn();
  } finally {
    release(c);
  }
}

/** Queues the release of a device tensor; it happens under the lock, before this thread's next device work. */
export function releaseOnDevice(t: Disposable): void {
  pendingDisposals.push(t);
}

/** Carries out this thread's queued releases now (under the lock). */
export function flushDeviceReleases(): Promise<void> {
  return pendingDisposals.length ? withDeviceLock(() => {}) : Promise.resolve();
}
