/** Bytes a run copies between host and device memory, counted from the tensors it was given and returned. */

export interface TransferBytes {
  hostToDevice: number;
  deviceToHost: number;
}

export const NO_TRANSFER: TransferBytes = Object.freeze({ hostToDevice: 0, deviceToHost: 0 });

/** Bytes of the host-located tensors among `tensors` (device tensors are not copied by a run). */
export function hostBytes(tensors: Iterable<{ location: string; data?: unknown }>): number {
  let n = 0;
  for (const t of tensors) if (t.location === "cpu") n += (t.data as ArrayBufferView).byteLength;
  return n;
}
