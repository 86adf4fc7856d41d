/**
 * The WebGPU test tier's gate. On a machine without a Vulkan driver these
 * tests are ignored (as the PostgreSQL variants are without a database),
 * unless SCALORA_REQUIRE_WEBGPU=1 — set by .ci/run, which installs the
 * software Vulkan driver (lavapipe) — where a missing adapter fails them.
 */
import { probeDevices } from "../../src/runtime/device.ts";

const webgpu = probeDevices().webgpu;
const required = Deno.env.get("SCALORA_REQUIRE_WEBGPU") === "1";

export function webgpuTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  Deno.test({
    name: `webgpu: ${name}`,
    ignore: !webgpu.usable && !required,
    // Sessions and workers outlive single assertions; each test closes what it opened.
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async (t) => {
      if (!webgpu.usable) throw new Error(`no WebGPU adapter (SCALORA_REQUIRE_WEBGPU=1): ${webgpu.reason}`);
      await fn(t);
    },
  });
}
