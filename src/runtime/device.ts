/** Which execution device to use when the configuration says "auto". */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { Device } from "./session.ts";

/** True when onnxruntime-node has its CUDA provider library and an NVIDIA driver is present. */
export function cudaAvailable(): boolean {
  try {
    const binding = fileURLToPath(import.meta.resolve("onnxruntime-node"));
    const binDir = `${dirname(dirname(binding))}/bin/napi-v6/linux/x64`;
    Deno.statSync(`${binDir}/libonnxruntime_providers_cuda.so`);
    Deno.statSync("/proc/driver/nvidia/version");
    return true;
  } catch {
    return false;
  }
}

export function resolveDevice(requested: "auto" | Device): Device {
  if (requested !== "auto") return requested;
  return cudaAvailable() ? "cuda" : "cpu";
}
