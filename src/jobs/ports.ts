/**
 * What the fine-tuning job service needs from the rest of the server, in one
 * place: where finished models go (the model registry), which base models
 * can be fine-tuned, and how the API reaches the runner. services.ts plugs
 * the registry's implementations in; tests plug in fakes. The service imports
 * nothing else from the registry.
 */
import type { EvaluationData, NewVersion, PromotionDecision, PromotionGate } from "../registry/types.ts";

export type { EvaluationData, NewVersion, PromotionDecision, PromotionGate };

/** Where finished models go: the model registry (RegistryVersionSink), or a fake in tests. */
export interface VersionSink {
  createVersion(v: NewVersion): Promise<{ name: string }>;
  promoteAlias?(alias: string, versionName: string): Promise<void>;
  /**
   * Eval-gated promotion: score the version and the alias's current target on `data`, point the alias at
   * the version only if it passes `gate`; resolves to the decision (recorded in the alias history too).
   */
  promoteAliasGated?(
    alias: string,
    versionName: string,
    gate: PromotionGate,
    data: EvaluationData,
  ): Promise<PromotionDecision>;
  /** Lets a job resumed after a crash skip versions it recorded before dying (else createVersion must tolerate them). */
  hasVersion?(name: string): Promise<boolean>;
}

/** Which model ids can be fine-tuned, and what fineTune opens for each (a local dir or a hub id). */
export interface BaseModelLookup {
  resolve(id: string): string | null;
}

/** What the API (FineTuningService) needs from the runner. */
export interface JobControl {
  /** A job was created: validate its files. */
  created(jobId: string): void;
  /** A job was queued (resumed): claim it when the device is free. */
  queued(jobId: string): void;
  /** The job was cancelled or paused by the API: stop its run here if it is running here. */
  interrupt(jobId: string, reason: "cancel" | "pause"): void;
  readonly canPromoteAliases: boolean;
  /** Whether promotions may carry an evaluation gate (the sink can evaluate). */
  readonly canGatePromotions: boolean;
}
