/**
 * What the registry records as a version: a fine-tuned model is its base plus
 * the training engine's per-layer deltas (src/train/layer_delta.ts). The job
 * service hands these over through its VersionSink port (src/jobs/ports.ts).
 */
import type { LayerDelta } from "../train/layer_delta.ts";

export type VersionKind = "final" | "checkpoint";

export interface NewVersion {
  /** `ft:<base>:<suffix>:<job-id>`, or `<that>:ckpt-step-<N>` for a checkpoint. */
  name: string;
  kind: VersionKind;
  jobId: string;
  /** The base model id as served (directory or hub id). */
  baseModel: string;
  deltas: LayerDelta[];
  /** Training metrics at this point (step, losses, …), kept with the version. */
  metrics?: Record<string, unknown>;
}
