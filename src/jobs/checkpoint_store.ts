/**
 * Job checkpoints in the artifact store, so whichever replica claims a job
 * resumes it: `jobs/<job-id>/checkpoints/step-NNNNNNNN/<file>`, the same
 * layout fineTune writes locally under `<dataDir>/jobs/<job-id>/checkpoints/`.
 *
 * - `upload` copies a step directory the trainer wrote (its state file
 *   `fine_tune.json` last: a step counts as complete only once that is
 *   there, as on disk) and prunes the store's older steps to `keep`.
 * - `restore` brings the newest complete step of the store into the local
 *   checkpoint directory when the local one lacks it (a fresh disk, or
 *   another replica ran the job further): fineTune then resumes from it.
 * - `remove` drops a terminal job's checkpoints.
 *
 * With the local backend the store is the data directory itself: the
 * trainer's own files are the stored checkpoints and all three are no-ops.
 */
import { pathExists } from "../path_checks.ts";
import type { ArtifactStore } from "../store/artifact_store.ts";
import { STATE_FILE, STEP_DIR, stepName } from "../train/fine_tune_checkpoints.ts";

const JOB_ID = /^ftjob-[A-Za-z0-9]+$/;

export class CheckpointStore {
  constructor(readonly artifacts: ArtifactStore, readonly keep = 2) {}

  get active(): boolean {
    return this.artifacts.remote;
  }

  #prefix(jobId: string): string {
    if (!JOB_ID.test(jobId)) throw new Error(`not a job id: ${jobId}`);
    return `jobs/${jobId}/`;
  }

  /** Uploads the step directory `dir` (…/step-NNNNNNNN) of `jobId`; returns its step. */
  async upload(jobId: string, dir: string): Promise<number | null> {
    if (!this.active) return null;
    const name = dir.replace(/\/+$/, "").split("/").pop()!;
    const m = STEP_DIR.exec(name);
    if (!m) throw new Error(`not a checkpoint directory: ${dir}`);
    const files: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.isFile) files.push(e.name);
    if (!files.includes(STATE_FILE)) throw new Error(`${dir} is not a complete checkpoint (no ${STATE_FILE})`);
    const ordered = [...files.filter((f) => f !== STATE_FILE).sort(), STATE_FILE];
    const prefix = `${this.#prefix(jobId)}checkpoints/${name}/`;
    for (const f of ordered) await this.artifacts.putFile(`${prefix}${f}`, `${dir}/${f}`);
    await this.#prune(jobId);
    return Number(m[1]);
  }

  /** Complete steps in the store, oldest first. */
  async steps(jobId: string): Promise<number[]> {
    const complete = new Set<number>();
    for await (const o of this.artifacts.list(`${this.#prefix(jobId)}checkpoints/`)) {
      const [dir, file] = o.key.split("/").slice(3);
      const m = STEP_DIR.exec(dir ?? "");
      if (m && file === STATE_FILE) complete.add(Number(m[1]));
    }
    return [...complete].sort((a, b) => a - b);
  }

  async #prune(jobId: string): Promise<void> {
    const steps = await this.steps(jobId);
    for (const step of steps.slice(0, Math.max(0, steps.length - this.keep))) {
      await this.artifacts.deletePrefix(`${this.#prefix(jobId)}checkpoints/${stepName(step)}/`);
    }
  }

  /**
   * Makes the store's newest complete step available under `checkpointDir`;
   * returns it (null: the store has none). A step already complete locally
   * is not downloaded again.
   */
  async restore(jobId: string, checkpointDir: string): Promise<number | null> {
    if (!this.active) return null;
    const step = (await this.steps(jobId)).at(-1);
    if (step === undefined) return null;
    const name = stepName(step);
    const local = `${checkpointDir.replace(/\/+$/, "")}/${name}`;
    if (await pathExists(`${local}/${STATE_FILE}`)) return step;
    const tmp = `${local}.download-${crypto.randomUUID().slice(0, 8)}`;
    await Deno.mkdir(tmp, { recursive: true });
    try {
      const prefix = `${this.#prefix(jobId)}checkpoints/${name}/`;
      const keys: string[] = [];
      for await (const o of this.artifacts.list(prefix)) keys.push(o.key);
      // The state file last, as written: a step directory is complete once it is there.
      keys.sort((a, b) => Number(a.endsWith(STATE_FILE)) - Number(b.endsWith(STATE_FILE)));
      for (const key of keys) {
        const file = key.slice(prefix.length);
        if (file.includes("/")) continue;
        if (!await this.artifacts.getFile(key, `${tmp}/${file}`)) throw new Error(`${key} vanished while restoring`);
      }
      await Deno.remove(local, { recursive: true }).catch(() => {});
      await Deno.rename(tmp, local);
    } catch (e) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw e;
    }
    return step;
  }

  /** Removes every stored checkpoint of the job. */
  async remove(jobId: string): Promise<void> {
    if (!this.active) return;
    await this.artifacts.deletePrefix(this.#prefix(jobId));
  }

  /** Job ids that have anything in the store (for the start-up sweep of ended jobs). */
  async jobIds(): Promise<string[]> {
    if (!this.active) return [];
    const ids = new Set<string>();
    for await (const o of this.artifacts.list("jobs/")) {
      const id = o.key.split("/")[1];
      if (id && JOB_ID.test(id)) ids.add(id);
    }
    return [...ids];
  }
}
