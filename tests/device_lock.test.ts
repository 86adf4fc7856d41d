/**
 * The process-wide WebGPU lock (src/runtime/device_lock.ts): critical
 * sections of several workers and of the main thread (with awaits inside,
 * and two at once from one thread) never overlap; queued device releases run
 * under the lock, before the thread's next locked operation.
 */
import assert from "node:assert/strict";
import { deviceLockBuffer, flushDeviceReleases, releaseOnDevice, withDeviceLock } from "../src/runtime/device_lock.ts";

Deno.test("device lock: no two critical sections overlap across workers and within a thread", async () => {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const rounds = 40;
  const workers = Array.from(
    { length: 3 },
    () => new Worker(new URL("./helpers/device_lock_worker.ts", import.meta.url), { type: "module" }),
  );
  try {
    const results = workers.map((w) =>
      new Promise<number>((resolve, reject) => {
        w.onmessage = (e) => resolve(e.data);
        w.onerror = (e) => reject(e);
      })
    );
    for (const w of workers) w.postMessage({ lock: deviceLockBuffer(), flag: flag.buffer, rounds });
    let mainOverlaps = 0;
    const section = () =>
      withDeviceLock(async () => {
        if (Atomics.add(flag, 0, 1) !== 0) mainOverlaps++;
        await new Promise((r) => setTimeout(r, 1));
        Atomics.sub(flag, 0, 1);
      });
    // Two chains in this thread at once: a thread waiting for itself must not deadlock.
    await Promise.all([0, 1].map(async () => {
      for (let i = 0; i < rounds; i++) await section();
    }));
    assert.deepEqual(await Promise.all(results), [0, 0, 0]);
    assert.equal(mainOverlaps, 0);
  } finally {
    for (const w of workers) w.terminate();
  }
});

Deno.test("device lock: releases are queued and carried out under the lock", async () => {
  const done: string[] = [];
  releaseOnDevice({ dispose: () => done.push("a") });
  releaseOnDevice({ dispose: () => done.push("b") });
  assert.equal(done.length, 0);
  await withDeviceLock(() => done.push("work"));
  assert.deepEqual(done, ["a", "b", "work"]);
  releaseOnDevice({ dispose: () => done.push("c") });
  await flushDeviceReleases();
  assert.deepEqual(done, ["a", "b", "work", "c"]);
});
