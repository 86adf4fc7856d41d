/**
 * Device choice from a probe (pure: synthetic probes), the Vulkan
 * properties decoding, and the doctor's notes about GPUs that are present
 * but unusable. The probe of this machine itself is exercised by the WebGPU
 * tier and `deno task doctor`.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { gpuNotes } from "../src/cli/doctor_report.ts";
import {
  chooseDevice,
  type CudaProbe,
  type DeviceProbe,
  DeviceUnavailableError,
  probeWebGpu,
} from "../src/runtime/device.ts";
import { decodeDeviceProperties, type VulkanDevice } from "../src/runtime/vulkan_probe.ts";

const LAVAPIPE: VulkanDevice = {
  name: "llvmpipe (LLVM 15.0.6, 256 bits)",
  type: "cpu",
  vendorId: 0x10005,
  vendor: "Mesa",
  deviceId: 0,
  apiVersion: "1.4.305",
  software: true,
};
const H100: VulkanDevice = {
  name: "NVIDIA H100 80GB HBM3",
  type: "discrete-gpu",
  vendorId: 0x10de,
  vendor: "NVIDIA",
  deviceId: 0x2330,
  apiVersion: "1.4.312",
  software: false,
};
const NO_CUDA: CudaProbe = {
  providerLibrary: null,
  driver: null,
  usable: false,
  reason: "onnxruntime-node's CUDA provider is not installed",
  missing: ["no CUDA provider library", "no NVIDIA driver"],
};
const CUDA: CudaProbe = {
  providerLibrary: "/x/libonnxruntime_providers_cuda.so",
  driver: "NVRM 580",
  usable: true,
  reason: "",
  missing: [],
};

function probe(cuda: CudaProbe, devices: VulkanDevice[] | null): DeviceProbe {
  const vulkan = devices
    ? { ok: true as const, loader: "libvulkan.so.1", devices }
    : { ok: false as const, loader: null, reason: "no Vulkan loader (libvulkan.so.1) on this system" };
  return { cuda, webgpu: probeWebGpu(vulkan) };
}

Deno.test("auto: CUDA, else WebGPU on a hardware adapter, else the CPU — never a software adapter", () => {
  assert.equal(chooseDevice("auto", probe(CUDA, [H100])).device, "cuda");
  const gpu = chooseDevice("auto", probe(NO_CUDA, [LAVAPIPE, H100]));
  assert.equal(gpu.device, "webgpu");
  assert.equal(gpu.software, false);
  assert.match(gpu.reason, /NVIDIA H100/);
  const soft = chooseDevice("auto", probe(NO_CUDA, [LAVAPIPE]));
  assert.equal(soft.device, "cpu");
  assert.match(soft.reason, /only software WebGPU adapters \(llvmpipe/);
  assert.match(soft.reason, /no CUDA \(no CUDA provider library, no NVIDIA driver\)/);
  assert.match(chooseDevice("auto", probe(NO_CUDA, null)).reason, /no WebGPU adapter \(no Vulkan loader/);
});

Deno.test("explicit devices: WebGPU may run on a software adapter; what cannot start is one line naming why", () => {
  const soft = chooseDevice("webgpu", probe(NO_CUDA, [LAVAPIPE]));
  assert.equal(soft.device, "webgpu");
  assert.equal(soft.software, true);
  assert.equal(chooseDevice("webgpu", probe(NO_CUDA, [LAVAPIPE, H100])).software, false);
  assert.throws(
    () => chooseDevice("webgpu", probe(NO_CUDA, null)),
    (e) =>
      e instanceof DeviceUnavailableError && /DEVICE=webgpu cannot start: no Vulkan loader/.test(e.message) &&
      !e.message.includes("\n"),
  );
  assert.throws(() => chooseDevice("webgpu", probe(NO_CUDA, [])), /the Vulkan loader found no physical device/);
  assert.throws(() => chooseDevice("cuda", probe(NO_CUDA, [H100])), /DEVICE=cuda cannot start: onnxruntime-node's/);
  assert.equal(chooseDevice("cpu", probe(CUDA, [H100])).device, "cpu");
});

Deno.test("Vulkan device properties: type, vendor, API version and name from the C struct", () => {
  const bytes = new Uint8Array(824);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, (1 << 22) | (3 << 12) | 239, true); // API 1.3.239
  view.setUint32(8, 0x10de, true);
  view.setUint32(12, 0x2330, true);
  view.setUint32(16, 2, true); // VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
  bytes.set(new TextEncoder().encode("NVIDIA H100 80GB HBM3"), 20);
  assert.deepEqual(decodeDeviceProperties(bytes), { ...H100, apiVersion: "1.3.239" });
  view.setUint32(16, 4, true); // CPU
  view.setUint32(8, 0x10005, true);
  bytes.fill(0, 20, 276);
  bytes.set(new TextEncoder().encode("llvmpipe (LLVM 15.0.6, 256 bits)"), 20);
  const cpu = decodeDeviceProperties(bytes);
  assert.equal(cpu.software, true);
  assert.equal(cpu.vendor, "Mesa");
  assert.equal(cpu.type, "cpu");
});

Deno.test("doctor notes: a GPU on the bus that WebGPU or CUDA cannot use is named, with why", () => {
  const nvidia = [{ address: "0000:00:05.0", vendor: "NVIDIA", vendorId: 0x10de }];
  const notes = gpuNotes(nvidia, probe(NO_CUDA, [LAVAPIPE]));
  assert.ok(
    notes.some((n) => /NVIDIA GPU at 0000:00:05.0 is present but WebGPU cannot use it: .*nvidia_icd\.json/.test(n)),
  );
  assert.ok(notes.some((n) => /CUDA unusable/.test(n)));
  assert.deepEqual(gpuNotes(nvidia, probe(CUDA, [H100])), []);
  assert.ok(gpuNotes(nvidia, probe(CUDA, null))[0].includes("no Vulkan loader"));
  assert.match(gpuNotes([], probe(NO_CUDA, [LAVAPIPE]))[0], /software adapter/);
});
