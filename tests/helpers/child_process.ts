/**
 * A child process for process-level tests: both output pipes drained into
 * `output` (a full pipe would block the child), the `listening on <port>`
 * line awaited, kill by signal.
 */
export class ChildProcess {
  readonly output: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #port: Promise<number>;
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(readonly name: string, args: string[], env: Record<string, string>, opts: { echo?: boolean } = {}) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: new URL("../..", import.meta.url).pathname, // the repo root: deno.json and its import map
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.#child.status.then((s) => {
      this.#exited = true;
      return s;
    });
    let listening: (port: number) => void = () => {};
    this.#port = new Promise((resolve) => (listening = resolve));
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      let rest = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop()!;
        for (const line of lines) {
          this.output.push(line);
          if (opts.echo) console.error(`[${name}] ${line}`);
          const m = /listening on (?:http:\/\/[^:]+:)?(\d+)/.exec(line);
          if (m) listening(Number(m[1]));
        }
      }
      if (rest) this.output.push(rest);
    };
    drain(this.#child.stdout);
    drain(this.#child.stderr);
  }

  get pid(): number {
    return this.#child.pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** The port from the child's `listening on` line (rejects if it exits first). */
  async port(timeoutMs = 120_000): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.#port,
        this.status.then((s) => Promise.reject(new Error(`${this.name} exited (${s.code}):\n${this.log(40)}`))),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.name} did not listen:\n${this.log(40)}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  log(lines = 200): string {
    return this.output.slice(-lines).join("\n");
  }

  async kill(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (!this.#exited) {
      try {
        this.#child.kill(signal);
      } catch {
        // already gone
      }
    }
    return await this.status;
  }
}

/** A port free right now on loopback (for a child that must be told its port up front). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
