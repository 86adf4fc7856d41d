/**
 * The registry behind the job service's `VersionSink` port
 * (src/jobs/ports.ts): record a version when a job reaches a checkpoint or
 * succeeds, promote an alias to it, and tell a resumed job which versions
 * already exist.
 *
 * A final version is compiled inside createVersion (so before the job reports
 * success); with `warm` its engine is also loaded and validated, so a later
 * alias switch to it is a map write instead of a session load.
 */
import type { AliasCoordinator } from "./hot_swap.ts";
import type { ModelRegistry } from "./model_registry.ts";
import type { EvaluationData, NewVersion, PromotionDecision, PromotionGate } from "./types.ts";
import type { VersionService } from "./versions.ts";
import { errorText } from "./errors.ts";

export interface RegistryVersionSinkOptions {
  versions: VersionService;
  registry: ModelRegistry;
  coordinator: AliasCoordinator;
  /**
   * Load + validate final versions' engines right after creating them:
   * "background" (default; createVersion does not wait), "await" (the job
   * reports success once its model is ready to serve), or "none". A failed
   * warm-up is logged, never fails the job: the version exists either way.
   */
  warm?: "background" | "await" | "none";
}

export class RegistryVersionSink {
  readonly #o: RegistryVersionSinkOptions;

  constructor(opts: RegistryVersionSinkOptions) {
    this.#o = opts;
  }

  async createVersion(v: NewVersion): Promise<{ name: string }> {
    const record = await this.#o.versions.createVersion(v);
    const warm = this.#o.warm ?? "background";
    if (v.kind === "final" && warm !== "none") {
      const warming = this.#o.registry.warm(record.name)
        .catch((e) => console.error(`warming ${record.name} failed: ${errorText(e)}`));
      if (warm === "await") await warming;
    }
    return { name: record.name };
  }

  async promoteAlias(alias: string, versionName: string): Promise<void> {
    await this.#o.coordinator.set(alias, versionName, "promoted by its fine-tuning job");
  }

  /** Eval-gated: the alias switches only when the version beats its current target (AliasCoordinator.promote). */
  async promoteAliasGated(
    alias: string,
    versionName: string,
    gate: PromotionGate,
    data: EvaluationData,
  ): Promise<PromotionDecision> {
    const r = await this.#o.coordinator.promote(alias, versionName, gate, data, "promoted by its fine-tuning job");
    return r.decision;
  }

  async hasVersion(name: string): Promise<boolean> {
    return (await this.#o.versions.find(name)) !== null;
  }
}
