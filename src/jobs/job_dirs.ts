/**
 * A job's files on local disk: `<dataDir>/jobs/<job-id>/` holds its trainer
 * checkpoints (`checkpoints/`, fineTune's format) and a run marker. The
 * marker is written when a run starts and removed when it ends, so a marker
 * found at the next start means the previous run died with its process; its
 * count lets the runner stop retrying a job that keeps killing the server.
 */
const JOB_ID = /^ftjob-[A-Za-z0-9]+$/;
const RUN_MARKER = "run.json";

export class JobDirs {
  readonly root: string;

  constructor(dataDir: string) {
    this.root = `${dataDir}/jobs`;
  }

  /** Refuses anything but a job id: ids become paths. */
  dir(jobId: string): string {
    if (!JOB_ID.test(jobId)) throw new Error(`not a job id: ${jobId}`);
    return `${this.root}/${jobId}`;
  }

  checkpoints(jobId: string): string {
    return `${this.dir(jobId)}/checkpoints`;
  }

  async remove(jobId: string): Promise<void> {
    try {
      await Deno.remove(this.dir(jobId), { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  /** Records that a run starts; returns how many earlier runs died without `runEnded`. */
  async runStarts(jobId: string): Promise<number> {
    const dir = this.dir(jobId);
    await Deno.mkdir(dir, { recursive: true });
    let crashes = 0;
    try {
      const previous = JSON.parse(await Deno.readTextFile(`${dir}/${RUN_MARKER}`)) as { crashes?: unknown };
      crashes = (typeof previous.crashes === "number" ? previous.crashes : 0) + 1;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound || e instanceof SyntaxError)) throw e;
    }
    await Deno.writeTextFile(`${dir}/${RUN_MARKER}`, JSON.stringify({ crashes, pid: Deno.pid }));
    return crashes;
  }

  async runEnded(jobId: string): Promise<void> {
    await Deno.remove(`${this.dir(jobId)}/${RUN_MARKER}`).catch(() => {});
  }
}
