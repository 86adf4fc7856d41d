/// <reference lib="deno.worker" />
/**
 * For tests/device_lock.test.ts: adopts the lock it is sent, then enters the
 * critical section `rounds` times, checking and setting a shared "inside"
 * flag around an await, and reports how often it found someone else inside.
 */
import { adoptDeviceLock, withDeviceLock } from "../../src/runtime/device_lock.ts";

self.onmessage = async (e: MessageEvent<{ lock: SharedArrayBuffer; flag: SharedArrayBuffer; rounds: number }>) => {
  adoptDeviceLock(e.data.lock);
  const flag = new Int32Array(e.data.flag);
  let overlaps = 0;
  for (let i = 0; i < e.data.rounds; i++) {
    await withDeviceLock(async () => {
      if (Atomics.add(flag, 0, 1) !== 0) overlaps++;
      await new Promise((r) => setTimeout(r, 1));
      Atomics.sub(flag, 0, 1);
    });
  }
  self.postMessage(overlaps);
};
