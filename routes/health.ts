/**
 * Liveness, readiness and Prometheus metrics: open even when API keys are
 * required. With `disk` (the data directory's filesystem), /ready reports its
 * free space and disk pressure, and /metrics exports it: a full disk stops
 * writes (507) but not serving, so readiness itself does not change.
 *
 * With `database`, /ready also asks the database: a replica that lost it
 * keeps serving the models it has loaded but answers 503 `unavailable`, so a
 * load balancer sends new traffic elsewhere until the database is back.
 * `replica` names this replica and the job it trains (others only report it).
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
  /** True while the database answers (checked on each /ready). */
  database?: () => Promise<boolean>;
  /** This replica's lease-owner name and the job it is training. */
  replica?: () => { id: string; trainingJob: string | null };
}

const Status = z.object({ status: z.string() });
const ReadyStatus = z.object({
  status: z.enum(["ready", "loading", "unavailable"]).openapi({
    description:
      "`loading`: the model is not loaded yet; `unavailable`: the database does not answer (serving goes on).",
  }),
  database: z.enum(["ok", "unreachable"]).optional(),
  replica: z.object({
    id: z.string().openapi({ description: "Lease owner name of this replica (host:data dir)." }),
    training_job: z.string().nullable().openapi({ description: "The job this replica trains now." }),
  }).optional(),
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
    503: {
      description: "Still loading, or the database does not answer",
      content: { "application/json": { schema: ReadyStatus } },
    },
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
    // The two probes are independent: a slow database does not hold up the disk check, nor the reverse.
    const [usage, dbOk] = await Promise.all([deps.disk?.usage(), deps.database?.()]);
    const disk = usage && deps.disk
      ? {
        free_bytes: usage.freeBytes,
        total_bytes: usage.totalBytes,
        low_free_bytes: deps.disk.lowFreeBytes,
        pressure: usage.pressure,
      }
      : undefined;
    const database = deps.database ? (dbOk ? "ok" as const : "unreachable" as const) : undefined;
    const r = deps.replica?.();
    const replica = r ? { id: r.id, training_job: r.trainingJob } : undefined;
    const extra = { disk, ...(database ? { database } : {}), ...(replica ? { replica } : {}) };
    if (!deps.ready()) return c.json({ status: "loading" as const, ...extra }, 503);
    if (database === "unreachable") return c.json({ status: "unavailable" as const, ...extra }, 503);
    return c.json({ status: "ready" as const, ...extra }, 200);
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
