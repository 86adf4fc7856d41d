/**
 * The weights of a version without a merged copy on disk: each tensor is read
 * from the base checkpoint and, for adapted layers, the stored delta is added
 * on read. buildServingGraph / exportModelDirectory / the HF export consume it
 * tensor by tensor, so at most one merged tensor is in memory at a time.
 */
import type { WeightSource } from "../model/serving_graph.ts";
import type { DeltaArtifact } from "./delta_artifact.ts";

export function versionWeightSource(base: WeightSource, delta: DeltaArtifact): WeightSource {
  return {
    config: base.config,
    read: async (name) => await delta.apply(name, await base.read(name)),
  };
}
