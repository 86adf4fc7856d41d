/**
 * The registry's environment variables, validated once at start-up (kept here
 * so the registry's settings travel with it; src/config.ts may fold them in).
 *
 * MODEL_MEMORY_BUDGET_BYTES  loaded engines' estimated size cap (LRU), default 8 GiB
 * MODEL_LEASE_TTL_MS         how long a resolved-but-unused model pins its engine, default 30000
 * VERSION_COMPILE_MODE       patch (default: graph patch over the base) | full (merged weights)
 * VERSION_DENSE_DTYPE        auto (default: f16 unless out of range) | f16 | bf16
 * REGISTRY_REFRESH_MS        re-read the version catalog this often (other replicas' versions), 0 = never; default 30000
 * MODEL_PROBE_TIMEOUT_MS     time limit of a loaded engine's validation probe (first generation included), default 300000
 */
import { z } from "zod";
import { type CompileMode } from "./versions.ts";
import { DEFAULT_MEMORY_BUDGET_BYTES } from "./model_registry.ts";
import { DEFAULT_PROBE_TIMEOUT_MS } from "./probe.ts";

const Schema = z.object({
  MODEL_MEMORY_BUDGET_BYTES: z.coerce.number().int().min(1).default(DEFAULT_MEMORY_BUDGET_BYTES),
  MODEL_LEASE_TTL_MS: z.coerce.number().int().min(1).default(30_000),
  VERSION_COMPILE_MODE: z.enum(["patch", "full"]).default("patch"),
  VERSION_DENSE_DTYPE: z.enum(["auto", "f16", "bf16"]).default("auto"),
  REGISTRY_REFRESH_MS: z.coerce.number().int().min(0).default(30_000),
  MODEL_PROBE_TIMEOUT_MS: z.coerce.number().int().min(1).default(DEFAULT_PROBE_TIMEOUT_MS),
});

export interface RegistryConfig {
  memoryBudgetBytes: number;
  leaseTtlMs: number;
  compileMode: CompileMode;
  denseDtype: "auto" | "F16" | "BF16";
  refreshMs: number;
  probeTimeoutMs: number;
}

export class RegistryConfigError extends Error {
  override name = "RegistryConfigError";
}

export function loadRegistryConfig(env: Record<string, string | undefined>): RegistryConfig {
  const parsed = Schema.safeParse(
    Object.fromEntries(Object.entries(env).filter(([k, v]) => k in Schema.shape && v !== undefined && v !== "")),
  );
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RegistryConfigError(`invalid environment variable ${issue.path.join(".")}: ${issue.message}`);
  }
  const c = parsed.data;
  return {
    memoryBudgetBytes: c.MODEL_MEMORY_BUDGET_BYTES,
    leaseTtlMs: c.MODEL_LEASE_TTL_MS,
    compileMode: c.VERSION_COMPILE_MODE,
    denseDtype: c.VERSION_DENSE_DTYPE === "auto" ? "auto" : c.VERSION_DENSE_DTYPE === "f16" ? "F16" : "BF16",
    refreshMs: c.REGISTRY_REFRESH_MS,
    probeTimeoutMs: c.MODEL_PROBE_TIMEOUT_MS,
  };
}
