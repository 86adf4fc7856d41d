/**
 * A loopback TCP forwarder that a test can cut and restore: how a test makes
 * one replica lose its database (every connection through it drops and new
 * ones are refused) while the others keep theirs.
 */
export class TcpProxy {
  readonly #conns = new Set<Deno.Conn>();
  #listener: Deno.Listener | null = null;
  #port = 0;

  private constructor(readonly target: { hostname: string; port: number }) {}

  static start(target: { hostname: string; port: number }): TcpProxy {
    const proxy = new TcpProxy(target);
    proxy.#listen(0);
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get cut(): boolean {
    return this.#listener === null;
  }

  #listen(port: number): void {
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    this.#port = (listener.addr as Deno.NetAddr).port;
    this.#listener = listener;
    (async () => {
      try {
        for await (const client of listener) this.#forward(client);
      } catch {
        // closed by cutOff()
      }
    })();
  }

  async #forward(client: Deno.Conn): Promise<void> {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect(this.target);
    } catch {
      client.close();
      return;
    }
    this.#conns.add(client);
    this.#conns.add(upstream);
    const close = () => {
      for (const c of [client, upstream]) {
        if (this.#conns.delete(c)) {
          try {
            c.close();
          } catch {
            // already closed
          }
        }
      }
    };
    const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
        }
      } catch {
        // either side went away
      }
      close();
    };
    pipe(client, upstream);
    pipe(upstream, client);
  }

  /** Drops every connection and refuses new ones (the port stays reserved for restore). */
  cutOff(): void {
    this.#listener?.close();
    this.#listener = null;
    for (const c of [...this.#conns]) {
      this.#conns.delete(c);
      try {
        c.close();
      } catch {
        // already closed
      }
    }
  }

  /** Accepts connections again, on the same port. */
  restore(): void {
    if (this.#listener === null) this.#listen(this.#port);
  }

  close(): void {
    this.cutOff();
  }
}
