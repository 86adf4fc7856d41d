/**
 * A fine-tuning run's checkpoint directory: `<root>/step-00000120/` holds the
 * trainer state (train_checkpoint.ts: factors, moments, weights + merge log,
 * step, data position) and `fine_tune.json` (the run's fingerprint, token
 * count and last metrics). A checkpoint counts only once `fine_tune.json` is
 * there (written last), so a crash mid-save leaves the previous one as latest.
 */
import { encodeHex } from "../model/hex.ts";
import { pathExists } from "../path_checks.ts";

const FORMAT = "scalora-fine-tune";
const VERSION = 1;
/** The file whose presence makes a step directory a complete checkpoint (written last). */
export const STATE_FILE = "fine_tune.json";
/** A checkpoint directory's name: `step-` and the step, zero-padded to 8 digits. */
export const STEP_DIR = /^step-(\d{8,})$/;

export interface FineTuneState {
  format: typeof FORMAT;
  version: number;
  /** Hash of everything that determines the run's trajectory (fineTune refuses to resume another run). */
  fingerprint: string;
  step: number;
  totalSteps: number;
  trainedTokens: number;
  /** Loss of the last step taken (null before the first). */
  lastTrainLoss: number | null;
  /** The checkpoint's metrics as reported in the event. */
  metrics: Record<string, unknown>;
}

export class FineTuneCheckpointError extends Error {
  override name = "FineTuneCheckpointError";
}

export function stepName(step: number): string {
  return `step-${String(step).padStart(8, "0")}`;
}

export function stepDir(root: string, step: number): string {
  return `${root.replace(/\/+$/, "")}/${stepName(step)}`;
}

/** Complete checkpoints under `root`, oldest first (none when `root` does not exist). */
export async function listCheckpoints(root: string): Promise<{ step: number; dir: string }[]> {
  const out: { step: number; dir: string }[] = [];
  try {
    for await (const e of Deno.readDir(root)) {
      const m = e.isDirectory ? STEP_DIR.exec(e.name) : null;
      if (!m) continue;
      const dir = `${root.replace(/\/+$/, "")}/${e.name}`;
      if (await pathExists(`${dir}/${STATE_FILE}`)) out.push({ step: Number(m[1]), dir });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return out.sort((a, b) => a.step - b.step);
}

export async function writeFineTuneState(dir: string, state: Omit<FineTuneState, "format" | "version">): Promise<void> {
  const full: FineTuneState = { format: FORMAT, version: VERSION, ...state };
  const tmp = `${dir}/${STATE_FILE}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, JSON.stringify(full, null, 2) + "\n");
  await Deno.rename(tmp, `${dir}/${STATE_FILE}`);
}

export async function readFineTuneState(dir: string): Promise<FineTuneState> {
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(`${dir}/${STATE_FILE}`));
  } catch (e) {
    throw new FineTuneCheckpointError(`${dir}: cannot read ${STATE_FILE} (${e instanceof Error ? e.message : e})`);
  }
  const s = raw as Partial<FineTuneState> | null;
  if (
    s?.format !== FORMAT || s.version !== VERSION || typeof s.fingerprint !== "string" ||
    !Number.isInteger(s.step) || !Number.isInteger(s.totalSteps) || typeof s.trainedTokens !== "number"
  ) {
    throw new FineTuneCheckpointError(`${dir}: not a ${FORMAT} v${VERSION} checkpoint`);
  }
  return s as FineTuneState;
}

/** Removes all but the newest `keep` checkpoints (and leftovers of interrupted saves). */
export async function pruneCheckpoints(root: string, keep: number): Promise<void> {
  const all = await listCheckpoints(root);
  for (const { dir } of all.slice(0, Math.max(0, all.length - keep))) await Deno.remove(dir, { recursive: true });
  try {
    for await (const e of Deno.readDir(root)) {
      // saveTrainingCheckpoint's temporary siblings of a save that died.
      if (e.isDirectory && /^step-\d+\.partial-\d+$/.test(e.name) && !e.name.endsWith(`.partial-${Deno.pid}`)) {
        await Deno.remove(`${root}/${e.name}`, { recursive: true }).catch(() => {});
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** SHA-256 (hex) of a JSON-serialisable value. */
export async function fingerprint(value: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return encodeHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}
