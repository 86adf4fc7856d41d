/**
 * Wires the fine-tuning service: one journal shared by the runner (which
 * writes progress) and the API service (which writes user actions and
 * watches), so live event streams wake at once. services.ts calls this, mounts
 * `fineTuningRoutes({ service })`, awaits `runner.start()` and, on shutdown,
 * `runner.stop()` before closing the store.
 */
import type { FileService } from "../store/file_service.ts";
import type { Store } from "../store/store.ts";
import { FineTuningService } from "./fine_tuning_service.ts";
import { JobJournal, type JournalOptions } from "./job_events.ts";
import { JobRunner, type JobRunnerOptions } from "./job_runner.ts";
import { WorkerBackend } from "./training_backend.ts";
import type { BaseModelLookup, VersionSink } from "./ports.ts";

export interface FineTuningSetup {
  store: Store;
  files: FileService;
  sink: VersionSink;
  baseModels: BaseModelLookup;
  dataDir: string;
  /** Runner tuning (device, threads, lease, …). */
  runner?: Omit<JobRunnerOptions, "store" | "files" | "journal" | "sink" | "baseModels" | "dataDir">;
  journal?: JournalOptions;
}

export interface FineTuning {
  journal: JobJournal;
  runner: JobRunner;
  service: FineTuningService;
}

export function createFineTuning(setup: FineTuningSetup): FineTuning {
  const { store, files, sink, baseModels, dataDir } = setup;
  const journal = new JobJournal(store, setup.journal);
  // One backend: the runner trains and validates jobs with it, the service checks files before a job exists.
  const backend = setup.runner?.backend ?? new WorkerBackend();
  const runner = new JobRunner({ ...setup.runner, backend, store, files, journal, sink, baseModels, dataDir });
  const service = new FineTuningService({
    store,
    files,
    journal,
    control: runner,
    baseModels,
    validate: (r) => backend.validate({ ...r, dataDir }),
  });
  return { journal, runner, service };
}
