/**
 * Lists the Vulkan physical devices the system's Vulkan loader sees, through
 * FFI (Deno.dlopen of libvulkan.so.1): the same loader and drivers that
 * onnxruntime's WebGPU execution provider (Dawn, Vulkan backend) uses, so a
 * device listed here is one Dawn can be offered, and its type tells hardware
 * from software (lavapipe/llvmpipe report VK_PHYSICAL_DEVICE_TYPE_CPU).
 *
 * Deno's own navigator.gpu is no substitute: it is wgpu, which falls back to
 * an OpenGL backend (llvmpipe through EGL) when no Vulkan driver exists, so it
 * reports an adapter where onnxruntime finds none.
 */

export type VulkanDeviceType = "other" | "integrated-gpu" | "discrete-gpu" | "virtual-gpu" | "cpu";

export interface VulkanDevice {
  name: string;
  type: VulkanDeviceType;
  /** PCI vendor id (0x10de NVIDIA, 0x1002 AMD, 0x8086 Intel) or a Khronos id (0x10005 Mesa). */
  vendorId: number;
  vendor: string;
  deviceId: number;
  /** "major.minor.patch" of the Vulkan API the driver supports. */
  apiVersion: string;
  /** Software rasterisers/compute (lavapipe, llvmpipe, SwiftShader) run on the CPU. */
  software: boolean;
}

export type VulkanProbe =
  | { ok: true; loader: string; devices: VulkanDevice[] }
  | { ok: false; loader: string | null; reason: string };

const DEVICE_TYPES: VulkanDeviceType[] = ["other", "integrated-gpu", "discrete-gpu", "virtual-gpu", "cpu"];
const VENDORS: Record<number, string> = {
  0x10de: "NVIDIA",
  0x1002: "AMD",
  0x1022: "AMD",
  0x8086: "Intel",
  0x13b5: "ARM",
  0x5143: "Qualcomm",
  0x10005: "Mesa",
  0x1ae0: "Google",
};
const LOADER_NAMES = ["libvulkan.so.1", "libvulkan.so"];
/** VkPhysicalDeviceProperties is 824 bytes on x86-64; read into a larger buffer to be safe. */
const PROPERTIES_BYTES = 4096;
const VK_SUCCESS = 0;
const VK_INCOMPLETE = 5;
const STRUCTURE_TYPE_INSTANCE_CREATE_INFO = 1;

function version(v: number): string {
  return `${v >>> 22}.${(v >>> 12) & 0x3ff}.${v & 0xfff}`;
}

function vulkanSymbols() {
  return {
    vkCreateInstance: { parameters: ["buffer", "pointer", "buffer"], result: "i32" },
    vkDestroyInstance: { parameters: ["pointer", "pointer"], result: "void" },
    vkEnumeratePhysicalDevices: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
    vkGetPhysicalDeviceProperties: { parameters: ["pointer", "buffer"], result: "void" },
  } as const;
}

function openLoader(): { lib: Deno.DynamicLibrary<ReturnType<typeof vulkanSymbols>>; name: string } | null {
  for (const name of LOADER_NAMES) {
    try {
      return { lib: Deno.dlopen(name, vulkanSymbols()), name };
    } catch {
      // try the next name
    }
  }
  return null;
}

/** Decodes the fields of VkPhysicalDeviceProperties this project needs. */
export function decodeDeviceProperties(bytes: Uint8Array): VulkanDevice {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const apiVersion = view.getUint32(0, true);
  const vendorId = view.getUint32(8, true);
  const deviceId = view.getUint32(12, true);
  const type = DEVICE_TYPES[view.getUint32(16, true)] ?? "other";
  const nameBytes = bytes.subarray(20, 20 + 256);
  const end = nameBytes.indexOf(0);
  const name = new TextDecoder().decode(nameBytes.subarray(0, end < 0 ? nameBytes.length : end));
  return {
    name,
    type,
    vendorId,
    vendor: VENDORS[vendorId] ?? `0x${vendorId.toString(16)}`,
    deviceId,
    apiVersion: version(apiVersion),
    software: type === "cpu" || /llvmpipe|lavapipe|swiftshader|softpipe/i.test(name),
  };
}

/** Creates a throwaway Vulkan instance and lists its physical devices. Never throws. */
export function probeVulkan(): VulkanProbe {
  if (Deno.build.os !== "linux") return { ok: false, loader: null, reason: "the Vulkan probe supports Linux only" };
  const opened = openLoader();
  if (!opened) {
    return {
      ok: false,
      loader: null,
      reason: "no Vulkan loader (libvulkan.so.1) on this system: install it (Debian/Ubuntu package libvulkan1)",
    };
  }
  const { lib, name } = opened;
  try {
    // VkInstanceCreateInfo (64 bytes): sType, pNext, flags, pApplicationInfo, layers, extensions — all empty.
    const info = new Uint8Array(64);
    new DataView(info.buffer).setUint32(0, STRUCTURE_TYPE_INSTANCE_CREATE_INFO, true);
    const instanceOut = new BigUint64Array(1);
    const created = lib.symbols.vkCreateInstance(info, null, new Uint8Array(instanceOut.buffer));
    if (created !== VK_SUCCESS) {
      return {
        ok: false,
        loader: name,
        reason: `vkCreateInstance failed (VkResult ${created}): no usable Vulkan driver (ICD) is installed`,
      };
    }
    const instance = Deno.UnsafePointer.create(instanceOut[0]);
    try {
      const count = new Uint32Array(1);
      let r = lib.symbols.vkEnumeratePhysicalDevices(instance, new Uint8Array(count.buffer), null);
      if (r !== VK_SUCCESS) return { ok: false, loader: name, reason: `vkEnumeratePhysicalDevices failed (${r})` };
      const handles = new BigUint64Array(count[0]);
      r = lib.symbols.vkEnumeratePhysicalDevices(
        instance,
        new Uint8Array(count.buffer),
        new Uint8Array(handles.buffer),
      );
      if (r !== VK_SUCCESS && r !== VK_INCOMPLETE) {
        return { ok: false, loader: name, reason: `vkEnumeratePhysicalDevices failed (${r})` };
      }
      const devices = [...handles.subarray(0, count[0])].map((h) => {
        const props = new Uint8Array(PROPERTIES_BYTES);
        lib.symbols.vkGetPhysicalDeviceProperties(Deno.UnsafePointer.create(h), props);
        return decodeDeviceProperties(props);
      });
      return { ok: true, loader: name, devices };
    } finally {
      lib.symbols.vkDestroyInstance(instance, null);
    }
  } catch (e) {
    return { ok: false, loader: name, reason: `Vulkan probe failed: ${e instanceof Error ? e.message : String(e)}` };
  } finally {
    lib.close();
  }
}
