/**
 * Execution devices: what this machine offers (probeDevices) and which one a
 * configuration gets (chooseDevice). `auto` picks CUDA when onnxruntime's CUDA
 * provider library and an NVIDIA driver are present, else WebGPU on a
 * hardware adapter (never a software one such as lavapipe, which is slower
 * than onnxruntime's own CPU kernels), else the CPU — and says why.
 */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { probeVulkan, type VulkanDevice, type VulkanProbe } from "./vulkan_probe.ts";

export const DEVICES = ["cpu", "cuda", "webgpu"] as const;
export type Device = typeof DEVICES[number];
export type DeviceRequest = Device | "auto";
export const DEVICE_REQUESTS = ["auto", ...DEVICES] as const;

/** A requested device cannot start on this machine; the message names what is missing. */
export class DeviceUnavailableError extends Error {
  override name = "DeviceUnavailableError";
}

export interface CudaProbe {
  /** onnxruntime-node's CUDA provider library, when installed. */
  providerLibrary: string | null;
  /** First line of /proc/driver/nvidia/version, when an NVIDIA driver is loaded. */
  driver: string | null;
  usable: boolean;
  /** Why it is not usable (empty when usable), with what to do. */
  reason: string;
  /** The same in a few words each, for `auto`'s log line. */
  missing: string[];
}

export interface WebGpuProbe {
  vulkan: VulkanProbe;
  /** Vulkan devices that are real GPUs. */
  hardware: VulkanDevice[];
  /** A device exists (software ones included): DEVICE=webgpu can start. */
  usable: boolean;
  reason: string;
}

export interface DeviceProbe {
  cuda: CudaProbe;
  webgpu: WebGpuProbe;
}

export interface DeviceChoice {
  device: Device;
  /** One line: why this device. */
  reason: string;
  /** WebGPU on a software adapter (lavapipe): computes on the CPU, so half precision gains nothing there. */
  software: boolean;
}

/** Where onnxruntime-node keeps its native libraries. */
export function ortBinaryDir(): string {
  const binding = fileURLToPath(import.meta.resolve("onnxruntime-node"));
  return `${dirname(dirname(binding))}/bin/napi-v6/linux/x64`;
}

function firstLine(path: string): string | null {
  try {
    return Deno.readTextFileSync(path).split("\n")[0].trim() || null;
  } catch {
    return null;
  }
}

export function probeCuda(): CudaProbe {
  let providerLibrary: string | null = `${ortBinaryDir()}/libonnxruntime_providers_cuda.so`;
  try {
    Deno.statSync(providerLibrary);
  } catch {
    providerLibrary = null;
  }
  const driver = firstLine("/proc/driver/nvidia/version");
  const problems = [
    providerLibrary ? null : {
      short: "no CUDA provider library",
      long: "onnxruntime-node's CUDA provider (libonnxruntime_providers_cuda.so) is not installed " +
        "(install with ONNXRUNTIME_NODE_INSTALL=cuda12 and scripts allowed, as the Dockerfile does)",
    },
    driver ? null : {
      short: "no NVIDIA driver",
      long: "no NVIDIA driver is loaded (/proc/driver/nvidia/version is missing)",
    },
  ].filter((x) => x !== null);
  return {
    providerLibrary,
    driver,
    usable: problems.length === 0,
    reason: problems.map((p) => p.long).join("; "),
    missing: problems.map((p) => p.short),
  };
}

export function probeWebGpu(vulkan: VulkanProbe = probeVulkan()): WebGpuProbe {
  if (!vulkan.ok) return { vulkan, hardware: [], usable: false, reason: vulkan.reason };
  const hardware = vulkan.devices.filter((d) => !d.software);
  if (vulkan.devices.length === 0) {
    return { vulkan, hardware, usable: false, reason: "the Vulkan loader found no physical device" };
  }
  return { vulkan, hardware, usable: true, reason: "" };
}

/** The device for a request (see chooseDevice), without the reason. */
export function resolveDevice(requested: DeviceRequest): Device {
  return chooseDevice(requested).device;
}

let probed: DeviceProbe | null = null;

/** What this machine offers; probed once per process (drivers do not change while it runs). */
export function probeDevices(): DeviceProbe {
  probed ??= { cuda: probeCuda(), webgpu: probeWebGpu() };
  return probed;
}

function describe(d: VulkanDevice): string {
  return `${d.name} (${d.vendor}, ${d.type})`;
}

/**
 * The device for a request. `auto`: CUDA, else WebGPU on a hardware adapter,
 * else CPU. An explicit request that cannot start throws one line naming
 * what is missing. WebGPU may be requested on a software adapter (that is
 * how CI tests the WebGPU path), never chosen by `auto`.
 */
export function chooseDevice(requested: DeviceRequest, probe: DeviceProbe = probeDevices()): DeviceChoice {
  const { cuda, webgpu } = probe;
  switch (requested) {
    case "cpu":
      return { device: "cpu", reason: "DEVICE=cpu", software: false };
    case "cuda":
      if (!cuda.usable) throw new DeviceUnavailableError(`DEVICE=cuda cannot start: ${cuda.reason}`);
      return { device: "cuda", reason: `DEVICE=cuda (${cuda.driver})`, software: false };
    case "webgpu": {
      if (!webgpu.usable) throw new DeviceUnavailableError(`DEVICE=webgpu cannot start: ${webgpu.reason}`);
      const devices = webgpu.vulkan.ok ? webgpu.vulkan.devices : [];
      const adapter = webgpu.hardware[0] ?? devices[0];
      return {
        device: "webgpu",
        reason: `DEVICE=webgpu on ${describe(adapter)}${adapter.software ? ", a software adapter" : ""}`,
        software: adapter.software,
      };
    }
    case "auto": {
      if (cuda.usable) {
        return {
          device: "cuda",
          reason: `auto: CUDA provider and NVIDIA driver found (${cuda.driver})`,
          software: false,
        };
      }
      if (webgpu.hardware.length > 0) {
        return {
          device: "webgpu",
          reason: `auto: no CUDA (${cuda.missing.join(", ")}); WebGPU on hardware adapter ${
            describe(webgpu.hardware[0])
          }`,
          software: false,
        };
      }
      const gpu = webgpu.usable
        ? `only software WebGPU adapters (${
          webgpu.vulkan.ok ? webgpu.vulkan.devices.map(describe).join(", ") : ""
        }), slower than the CPU kernels`
        : `no WebGPU adapter (${webgpu.reason})`;
      return { device: "cpu", reason: `auto: no CUDA (${cuda.missing.join(", ")}); ${gpu}`, software: false };
    }
  }
}
