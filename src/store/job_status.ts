/**
 * The fine-tuning job lifecycle (pure): which status may follow which. The
 * store enforces it with compare-and-set updates, so two actors racing
 * (a worker finishing, a user cancelling) cannot both win.
 *
 *   validating_files → queued | failed | cancelled
 *   queued           → running (claim only) | failed | cancelled
 *   running          → succeeded | failed | cancelled | paused | queued (lease handed back)
 *   paused           → queued (resume) | failed | cancelled
 *   succeeded, failed, cancelled: terminal
 */
import { JOB_STATUSES } from "./schema.ts";

export type JobStatus = typeof JOB_STATUSES[number];

export const TERMINAL_STATUSES = ["succeeded", "failed", "cancelled"] as const satisfies readonly JobStatus[];
export const ACTIVE_STATUSES = [
  "validating_files",
  "queued",
  "running",
  "paused",
] as const satisfies readonly JobStatus[];

const NEXT: Record<JobStatus, readonly JobStatus[]> = {
  validating_files: ["queued", "failed", "cancelled"],
  queued: ["running", "failed", "cancelled"],
  running: ["succeeded", "failed", "cancelled", "paused", "queued"],
  paused: ["queued", "failed", "cancelled"],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export function isTerminal(status: JobStatus): boolean {
  return (TERMINAL_STATUSES as readonly JobStatus[]).includes(status);
}

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return NEXT[from].includes(to);
}

/** Statuses a job may be in for `to` to follow. */
export function predecessors(to: JobStatus): JobStatus[] {
  return JOB_STATUSES.filter((from) => canTransition(from, to));
}
