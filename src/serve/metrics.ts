/**
 * Prometheus metrics of the serving API (prom-client, one registry per app so
 * tests can build many apps). Request and token metrics are pushed by the
 * HTTP layer; engine gauges (queue depth, batch size, active sequences) are
 * pulled from `stats()` at scrape time.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { TransferBytes } from "../runtime/transfer.ts";
import type { EngineStats } from "./engine_types.ts";

export interface EngineSource {
  model: string;
  stats(): EngineStats;
}

/** Seconds; spans sub-millisecond decode steps on a GPU to multi-second prefills on a CPU. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"method" | "route" | "status">;
  readonly requestDuration: Histogram<"method" | "route">;
  readonly promptTokens: Counter<"model">;
  readonly completionTokens: Counter<"model">;
  readonly timeToFirstToken: Histogram<"model">;
  readonly interTokenLatency: Histogram<"model">;

  constructor(engines: () => EngineSource[]) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "scalora_http_requests_total",
      help: "HTTP requests by method, matched route and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.requestDuration = new Histogram({
      name: "scalora_http_request_duration_seconds",
      help: "HTTP request duration, streams until their last byte",
      labelNames: ["method", "route"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.promptTokens = new Counter({
      name: "scalora_prompt_tokens_total",
      help: "Prompt tokens processed",
      labelNames: ["model"],
      registers,
    });
    this.completionTokens = new Counter({
      name: "scalora_completion_tokens_total",
      help: "Completion tokens generated",
      labelNames: ["model"],
      registers,
    });
    this.timeToFirstToken = new Histogram({
      name: "scalora_time_to_first_token_seconds",
      help: "Time from request start to a sequence's first token, as the HTTP layer sees it",
      labelNames: ["model"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.interTokenLatency = new Histogram({
      name: "scalora_inter_token_latency_seconds",
      help: "Time between consecutive tokens of a sequence",
      labelNames: ["model"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const engineGauge = (name: string, help: string, pick: (s: EngineStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["model"],
        registers,
        collect() {
          this.reset();
          for (const e of engines()) this.set({ model: e.model }, pick(e.stats()));
        },
      });
    engineGauge("scalora_queue_depth", "Requests waiting for a batch slot", (s) => s.queueDepth);
    engineGauge("scalora_active_sequences", "Sequences being generated", (s) => s.activeSequences);
    engineGauge("scalora_batch_size", "Sequences in the last batched decode step", (s) => s.lastBatchSize);
    const transferGauge = (name: string, help: string, pick: (s: EngineStats) => TransferBytes | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ["model", "direction"],
        registers,
        collect() {
          this.reset();
          for (const e of engines()) {
            const t = pick(e.stats()) ?? { hostToDevice: 0, deviceToHost: 0 };
            this.set({ model: e.model, direction: "host_to_device" }, t.hostToDevice);
            this.set({ model: e.model, direction: "device_to_host" }, t.deviceToHost);
          }
        },
      });
    transferGauge(
      "scalora_device_copy_bytes_total",
      "Bytes copied between host and device memory since the engine started (0 on the CPU)",
      (s) => s.transfer?.total,
    );
    transferGauge(
      "scalora_device_copy_bytes_per_decode_step",
      "Bytes the last decode step copied between host and device (WebGPU keeps the KV cache on the device)",
      (s) => s.transfer?.lastDecode,
    );
    new Gauge({
      name: "scalora_loaded_models",
      help: "Models the server can serve",
      registers,
      collect() {
        this.set(engines().length);
      },
    });
  }

  timing(model: string) {
    return {
      firstToken: (s: number) => this.timeToFirstToken.observe({ model }, s),
      interToken: (s: number) => this.interTokenLatency.observe({ model }, s),
    };
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
