/**
 * The browser test tier's gate and launcher: a real headless Chromium
 * (Debian's `chromium` package; CHROMIUM_PATH names another binary) driven by
 * playwright-core. Without a Chromium these tests are ignored (as the WebGPU
 * tier is without a Vulkan driver), unless SCALORA_REQUIRE_BROWSER=1 — set
 * by .ci/run, which installs it — where a missing browser fails them.
 */
import { type Browser, chromium } from "playwright-core";

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

function findChromium(): string | null {
  const given = Deno.env.get("CHROMIUM_PATH");
  for (const path of given ? [given] : CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return null;
}

const executable = findChromium();
const required = Deno.env.get("SCALORA_REQUIRE_BROWSER") === "1";

/**
 * Headless Chromium on a closed network: no sandbox (CI runs as root), no GPU, and none of Chromium's
 * background connections (refused here, and noise in the console). playwright-core gives it a fresh
 * profile directory per launch.
 */
export async function launchChromium(): Promise<Browser> {
  if (!executable) throw new Error("no Chromium found (install Debian's chromium or set CHROMIUM_PATH)");
  return await chromium.launch({
    executablePath: executable,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

export function browserTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  Deno.test({
    name: `browser: ${name}`,
    ignore: !executable && !required,
    // The server, its workers and the browser process outlive single assertions; each test closes them.
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async (t) => {
      if (!executable) throw new Error("SCALORA_REQUIRE_BROWSER=1 but no Chromium was found (CHROMIUM_PATH)");
      await fn(t);
    },
  });
}
