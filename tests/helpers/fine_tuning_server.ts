/**
 * A fine-tuning server for process-level tests (tests/job_crash.test.ts):
 * store + files + runner + routes wired as main.ts wires them, configured
 * from the environment:
 *   DATA_DIR   (required) store, files, job dirs; versions under DATA_DIR/versions
 *   MODEL_DIR  (required) served for fine-tuning as model id MODEL_ID (default "tiny")
 *   PORT       default 0 (any); prints `listening on <port>` once ready
 *   THREADS    training threads (default 1)
 *   LEASE_MS   default 10000
 * SIGTERM/SIGINT: the running job is checkpointed and re-queued, then exit 0.
 */
import { openStore } from "../../src/store/store.ts";
import { DirectoryVersionSink } from "./directory_version_sink.ts";
import { baseModels, wireFineTuning } from "./fine_tuning.ts";

const env = (name: string, fallback?: string): string => {
  const v = Deno.env.get(name) ?? fallback;
  if (v === undefined) throw new Error(`${name} is required`);
  return v;
};

const dataDir = env("DATA_DIR");
const store = await openStore({ dataDir, databaseUrl: null });
const w = await wireFineTuning(store, {
  dataDir,
  sink: new DirectoryVersionSink(`${dataDir}/versions`),
  baseModels: baseModels({ [env("MODEL_ID", "tiny")]: env("MODEL_DIR") }),
  threads: Number(env("THREADS", "1")),
  leaseMs: Number(env("LEASE_MS", "10000")),
  pollMs: 200,
});
await w.runner.start();
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(env("PORT", "0")),
  onListen: ({ port }) => console.log(`listening on ${port}`),
}, w.app.fetch);

const stop = async () => {
  await w.runner.stop();
  await server.shutdown();
  await store.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
