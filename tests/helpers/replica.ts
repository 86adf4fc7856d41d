/**
 * A replica of the server for the multi-replica tier: `src/main.ts` in its
 * own process with its own DATA_DIR, on a port chosen up front (so a
 * restarted replica keeps its address), talked to over HTTP.
 */
import { ChildProcess, freePort } from "./child_process.ts";
import { denoEnv } from "./s3_server.ts";

export type Json = Record<string, unknown>;

export class Replica {
  process: ChildProcess;
  readonly url: string;

  private constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly port: number,
    readonly env: Record<string, string>,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.process = this.#spawn();
  }

  /** Starts `src/main.ts` (MODEL, DATABASE_URL, ARTIFACT_STORE, … in `env`); resolves once /ready is 200. */
  static async start(name: string, dataDir: string, env: Record<string, string>): Promise<Replica> {
    const r = new Replica(name, dataDir, freePort(), env);
    await r.ready();
    return r;
  }

  #spawn(): ChildProcess {
    return new ChildProcess(this.name, ["run", "-A", new URL("../../src/main.ts", import.meta.url).pathname], {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      ...denoEnv(),
      DEVICE: "cpu",
      HOST: "127.0.0.1",
      PORT: String(this.port),
      DATA_DIR: this.dataDir,
      ...this.env,
    }, { echo: Deno.env.get("REPLICA_ECHO") === "1" });
  }

  /** Waits for /ready 200 (the process must stay up). */
  async ready(timeoutMs = 180_000): Promise<void> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      if (this.process.exited) throw new Error(`${this.name} exited:\n${this.process.log(60)}`);
      const res = await fetch(`${this.url}/ready`).catch(() => null);
      if (res?.status === 200) {
        await res.body?.cancel();
        return;
      }
      await res?.body?.cancel();
      if (performance.now() > until) throw new Error(`${this.name} not ready:\n${this.process.log(60)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** kill -9 (or another signal); resolves once the process is gone. */
  async kill(signal: Deno.Signal): Promise<Deno.CommandStatus> {
    return await this.process.kill(signal);
  }

  /** A new process on the same data directory and port. */
  async restart(): Promise<void> {
    if (!this.process.exited) await this.process.kill("SIGTERM");
    this.process = this.#spawn();
    await this.ready();
  }

  async fetch(path: string, init?: RequestInit): Promise<Response> {
    return await fetch(`${this.url}${path}`, init);
  }

  /** JSON of a request that must answer `status` (default 200). */
  async json(path: string, init?: RequestInit & { status?: number }): Promise<Json> {
    const res = await this.fetch(path, init);
    const text = await res.text();
    const want = init?.status ?? 200;
    if (res.status !== want) throw new Error(`${this.name} ${init?.method ?? "GET"} ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  }

  post(path: string, body: unknown, status = 200): Promise<Json> {
    return this.json(path, {
      method: body === undefined ? "POST" : "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body ?? {}),
      status,
    });
  }

  put(path: string, body: unknown, status = 200): Promise<Json> {
    return this.json(path, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      status,
    });
  }

  log(lines = 200): string {
    return `--- ${this.name} ---\n${this.process.log(lines)}`;
  }
}
