/**
 * Liveness, readiness and Prometheus metrics: open even when API keys are
 * required. With `disk` (the data directory's filesystem), /ready reports its
 * free space and disk pressure, and /metrics exports it: a full disk stops
 * writes (507) but not serving, so readiness itself does not change.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { Gauge } from "prom-client";
import type { DiskSpace } from "../src/disk_space.ts";
import type { ServerMetrics } from "../src/serve/metrics.ts";
import type { AppEnv } from "./app_env.ts";

export interface HealthDeps {
  /** True once the serving model is loaded. */
  ready: () => boolean;
  metrics: ServerMetrics;
  disk?: DiskSpace;
}

const Status = z.object({ status: z.string() });
const ReadyStatus = z.object({
  status: z.enum(["ready", "loading"]),
  disk: z.object({
    free_bytes: z.number().int(),
    total_bytes: z.number().int(),
    low_free_bytes: z.number().int().openapi({ description: "DISK_LOW_FREE_BYTES" }),
    pressure: z.boolean().openapi({
      description: "Free space is under DISK_LOW_FREE_BYTES: writes (uploads, jobs, versions) may answer 507 soon.",
    }),
  }).optional(),
});

const health = createRoute({
  method: "get",
  path: "/health",
  summary: "Liveness",
  responses: { 200: { description: "The process is up", content: { "application/json": { schema: Status } } } },
});

const ready = createRoute({
  method: "get",
  path: "/ready",
  summary: "Readiness: the model is loaded (with the data directory's free space and disk pressure)",
  responses: {
    200: { description: "Ready to serve", content: { "application/json": { schema: ReadyStatus } } },
    503: { description: "Still loading", content: { "application/json": { schema: ReadyStatus } } },
  },
});

const metrics = createRoute({
  method: "get",
  path: "/metrics",
  summary: "Prometheus metrics (text exposition format)",
  responses: { 200: { description: "Metrics", content: { "text/plain": { schema: z.string() } } } },
});

export function healthRoutes(deps: HealthDeps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(health, (c) => c.json({ status: "ok" }, 200));
  app.openapi(ready, async (c) => {
    const usage = await deps.disk?.usage();
    const disk = usage && deps.disk
      ? {
        free_bytes: usage.freeBytes,
        total_bytes: usage.totalBytes,
        low_free_bytes: deps.disk.lowFreeBytes,
        pressure: usage.pressure,
      }
      : undefined;
    return deps.ready()
      ? c.json({ status: "ready" as const, disk }, 200)
      : c.json({ status: "loading" as const, disk }, 503);
  });
  if (deps.disk) registerDiskGauges(deps.metrics, deps.disk);
  app.openapi(metrics, async (c) => {
    const { contentType, body } = await deps.metrics.render();
    return c.text(body, 200, { "Content-Type": contentType });
  });
  return app;
}

function registerDiskGauges(metrics: ServerMetrics, disk: DiskSpace): void {
  const registers = [metrics.registry];
  const gauge = (
    name: string,
    help: string,
    pick: (u: NonNullable<Awaited<ReturnType<DiskSpace["usage"]>>>) => number,
  ) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const u = await disk.usage();
        if (u) this.set(pick(u));
      },
    });
  gauge("scalora_data_dir_free_bytes", "Free bytes on the filesystem of DATA_DIR", (u) => u.freeBytes);
  gauge("scalora_data_dir_total_bytes", "Size of the filesystem of DATA_DIR", (u) => u.totalBytes);
  gauge(
    "scalora_data_dir_disk_pressure",
    "1 while free space under DATA_DIR is below DISK_LOW_FREE_BYTES (writes may answer 507)",
    (u) => u.pressure ? 1 : 0,
  );
}
