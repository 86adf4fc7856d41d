/**
 * Crash safety across processes: a server (tests/helpers/fine_tuning_server.ts)
 * trains a job; once a checkpoint is recorded it is killed with SIGKILL and
 * restarted on the same DATA_DIR. The job must resume from its checkpoint and
 * succeed, and its final deltas must equal an uninterrupted run's.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { fineTune } from "../src/train/fine_tune.ts";
import { resolveHyperparameters, trainOptions } from "../src/jobs/job_spec.ts";
import { DirectoryVersionSink } from "./helpers/directory_version_sink.ts";
import { deltaDifference, facts, tinyModel, waitFor } from "./helpers/fine_tuning.ts";

type Json = Record<string, unknown>;

/** 40 examples / batch 4 = 10 steps per epoch x 8 = 80 steps; a checkpoint every 5. */
const EXAMPLES = 40;
const SEED = 21;
const HP = {
  n_epochs: 8,
  batch_size: 4,
  learning_rate_multiplier: 50,
  rank: 2,
  alpha: 4,
  scaling: "column" as const,
  interval: 3,
  max_length: 32,
  checkpoint_every: 5,
};

class ServerProcess {
  readonly output: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly port: Promise<number>;

  constructor(env: Record<string, string>) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./helpers/fine_tuning_server.ts", import.meta.url).pathname],
      cwd: new URL("..", import.meta.url).pathname, // the repo root: deno.json and its import map
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let listening: (port: number) => void = () => {};
    this.port = new Promise((resolve) => (listening = resolve));
    // Drain both pipes (a full pipe would block the server) and watch for the ready line.
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      for await (const line of stream.pipeThrough(new TextDecoderStream()).pipeThrough(new LineSplitter())) {
        this.output.push(line);
        const m = /^listening on (\d+)$/.exec(line);
        if (m) listening(Number(m[1]));
      }
    };
    drain(this.#child.stdout);
    drain(this.#child.stderr);
  }

  async url(): Promise<string> {
    const port = await Promise.race([
      this.port,
      this.#child.status.then((s) => Promise.reject(new Error(`server exited (${s.code}):\n${this.log()}`))),
    ]);
    return `http://127.0.0.1:${port}`;
  }

  log(): string {
    return this.output.join("\n");
  }

  async kill(signal: Deno.Signal): Promise<Deno.CommandStatus> {
    try {
      this.#child.kill(signal);
    } catch {
      // already gone
    }
    return await this.#child.status;
  }
}

class LineSplitter extends TransformStream<string, string> {
  constructor() {
    let rest = "";
    super({
      transform(chunk, controller) {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop()!;
        for (const l of lines) controller.enqueue(l);
      },
      flush(controller) {
        if (rest) controller.enqueue(rest);
      },
    });
  }
}

Deno.test("job crash: kill -9 mid-training, restart, the job resumes and matches an uninterrupted run", async () => {
  const root = await Deno.makeTempDir({ prefix: "job_crash_test_" });
  const model = await tinyModel(`${root}/model`);
  const dataDir = `${root}/data`;
  const env = { DATA_DIR: dataDir, MODEL_DIR: model, THREADS: "1", NO_COLOR: "1" };
  const text = facts(EXAMPLES);
  let server = new ServerProcess(env);
  try {
    let base = await server.url();
    const api = async (path: string, init?: RequestInit): Promise<Json> => {
      const res = await fetch(`${base}${path}`, init);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      return body;
    };
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", new File([text], "train.jsonl"));
    const file = await api("/v1/files", { method: "POST", body: form });
    const job = await api("/v1/fine_tuning/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "tiny",
        training_file: file.id,
        seed: SEED,
        suffix: "crash",
        method: { type: "supervised", supervised: { hyperparameters: HP } },
      }),
    });
    const id = job.id as string;

    // The uninterrupted reference, run here meanwhile with the options the runner derives for the job.
    const reference = fineTune(trainOptions(resolveHyperparameters(HP, EXAMPLES), {
      model,
      dataDir: root,
      trainText: text,
      checkpointDir: `${root}/reference`,
      seed: SEED,
      threads: 1,
    }));

    const firstCheckpoint = await waitFor(
      "a checkpoint",
      async () => {
        const list = await api(`/v1/fine_tuning/jobs/${id}/checkpoints`);
        return (list.data as Json[]).at(-1);
      },
      60_000,
      20,
    );
    const status = await server.kill("SIGKILL");
    assert.equal(status.signal, "SIGKILL");
    const before = await Deno.readDir(`${dataDir}/jobs/${id}/checkpoints`);
    const saved: string[] = [];
    for await (const e of before) saved.push(e.name);
    assert.ok(saved.some((n) => /^step-\d+$/.test(n)), `a checkpoint is on disk: ${saved}`);

    server = new ServerProcess(env);
    base = await server.url();
    const done = await waitFor(
      "the job to finish",
      async () => {
        const j = await api(`/v1/fine_tuning/jobs/${id}`);
        return ["succeeded", "failed", "cancelled"].includes(j.status as string) ? j : null;
      },
      60_000,
      100,
    );
    assert.equal(done.status, "succeeded", `${JSON.stringify(done.error)}\n${server.log()}`);
    assert.equal(done.fine_tuned_model, `ft:tiny:crash:${id}`);

    const events = ((await api(`/v1/fine_tuning/jobs/${id}/events?limit=1000`)).data as Json[]).reverse();
    const messages = events.map((e) => e.message as string);
    assert.ok(
      messages.some((m) => m.startsWith("The server restarted while the job was running")),
      messages.join("\n"),
    );
    const resumed = messages.map((m) => /^resumed from step (\d+)/.exec(m)).find(Boolean);
    assert.ok(resumed, `the run resumed from a checkpoint:\n${messages.join("\n")}`);
    const resumedAt = Number(resumed[1]);
    assert.ok(resumedAt >= (firstCheckpoint.step_number as number) && resumedAt < 80, `resumed at ${resumedAt}`);
    assert.equal(messages.filter((m) => m.startsWith("Fine-tuning job started")).length, 1);

    // Checkpoints are recorded once each, across both processes; every one after the resume point is there
    // (one saved to disk just before the kill may lack its row: the run resumes from it but does not re-announce it).
    const checkpoints = ((await api(`/v1/fine_tuning/jobs/${id}/checkpoints?limit=100`)).data as Json[])
      .map((c) => c.step_number as number).sort((a, b) => a - b);
    assert.equal(new Set(checkpoints).size, checkpoints.length);
    assert.ok(checkpoints.includes(firstCheckpoint.step_number as number));
    for (let step = resumedAt + 5; step <= 80; step += 5) assert.ok(checkpoints.includes(step), `step ${step}`);

    const final = await new DirectoryVersionSink(`${dataDir}/versions`).read(`ft:tiny:crash:${id}`);
    const expected = (await reference).deltas;
    const diff = deltaDifference(expected, final.deltas);
    assert.ok(diff.size > 0);
    assert.ok(diff.relative < 1e-6, `the resumed run differs from an uninterrupted one by ${diff.relative}`);
    await waitFor(
      "the job's files to be removed",
      async () => !await Deno.stat(`${dataDir}/jobs/${id}`).then(() => true, () => false),
    );
  } catch (e) {
    console.error(`--- server output ---\n${server.log()}`);
    throw e;
  } finally {
    await server.kill("SIGTERM");
    await Deno.remove(root, { recursive: true });
  }
});
