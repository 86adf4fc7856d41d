/**
 * Hub downloads (src/model/hub.ts, the README's default first run) against a
 * stand-in hub this test starts on loopback and names in HF_ENDPOINT: the
 * hub's URL layout (`<owner>/<name>/resolve/<revision>/<file>`), weights
 * behind LFS-style 302 redirects to another origin, sharded indexes, the
 * hub's `X-Error-Code` refusals, bodies cut off mid-stream, a stalled server,
 * HF_TOKEN (sent to the hub, never to the redirect target), and a complete
 * cached copy used without the network. The last test starts the whole
 * service with `MODEL=<owner>/<name>` and chats with it through the openai
 * client.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadConfig } from "../src/config.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ModelLoadError } from "../src/model/errors.ts";
import { downloadFromHub, hubCachePath } from "../src/model/hub.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { createServices } from "../src/services.ts";

const TOKEN = "hf_test_token_123";

interface Logged {
  origin: "hub" | "cdn";
  path: string;
  auth: string | null;
}

/** What the stand-in does for one file instead of serving it. */
type Fault = "cut" | "stall_headers" | "stall_body" | "server_error";

interface RepoSpec {
  dir: string;
  /** 403 GatedRepo unless the request carries TOKEN. */
  gated?: boolean;
  /** Answer 404 RepoNotFound (as the hub does for some clients) instead of 401. */
  gone?: boolean;
}

/**
 * A hub on 127.0.0.1 and its LFS CDN on localhost (another origin, as
 * cdn-lfs.huggingface.co is): `*.safetensors` answer 302 to the CDN.
 */
class StandInHub {
  readonly log: Logged[] = [];
  readonly repos = new Map<string, RepoSpec>();
  /** `<owner>/<name>/<file>` → fault, applied once (then the file is served normally). */
  readonly faults = new Map<string, Fault>();
  readonly #stalls = new Set<ReadableStreamDefaultController<Uint8Array>>();
  readonly #pendingStalls: (() => void)[] = [];
  readonly #hub: Deno.HttpServer<Deno.NetAddr>;
  readonly #cdn: Deno.HttpServer<Deno.NetAddr>;

  constructor() {
    const quiet = { onListen: () => {}, onError: () => new Response("error", { status: 500 }) };
    this.#cdn = Deno.serve({ port: 0, hostname: "127.0.0.1", ...quiet }, (req) => this.#serveCdn(req));
    this.#hub = Deno.serve({ port: 0, hostname: "127.0.0.1", ...quiet }, (req) => this.#serveHub(req));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.#hub.addr.port}`;
  }

  requests(origin: "hub" | "cdn", file?: string): Logged[] {
    return this.log.filter((l) => l.origin === origin && (file === undefined || l.path.endsWith(`/${file}`)));
  }

  async close(): Promise<void> {
    for (const c of this.#stalls) {
      try {
        c.close();
      } catch {
        // already cancelled by the client that gave up on it
      }
    }
    for (const release of this.#pendingStalls) release();
    await Promise.all([this.#hub.shutdown(), this.#cdn.shutdown()]);
  }

  #fault(key: string): Fault | undefined {
    const f = this.faults.get(key);
    this.faults.delete(key);
    return f;
  }

  async #serveHub(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    this.log.push({ origin: "hub", path, auth: req.headers.get("authorization") });
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (!m) return new Response("not found", { status: 404 });
    const [, owner, name, revision, file] = m;
    const repo = this.repos.get(`${owner}/${name}`);
    if (repo?.gone) {
      return new Response("Repository not found", { status: 404, headers: { "X-Error-Code": "RepoNotFound" } });
    }
    if (!repo) {
      return new Response("Repository not found", { status: 401, headers: { "X-Error-Code": "RepoNotFound" } });
    }
    if (revision !== "main") {
      return new Response("Invalid rev id", { status: 404, headers: { "X-Error-Code": "RevisionNotFound" } });
    }
    if (repo.gated && req.headers.get("authorization") !== `Bearer ${TOKEN}`) {
      return new Response("Access to this model is restricted", {
        status: 403,
        headers: { "X-Error-Code": "GatedRepo" },
      });
    }
    const fault = this.#fault(`${owner}/${name}/${file}`);
    if (fault === "stall_headers") {
      await new Promise<void>((resolve) => this.#pendingStalls.push(resolve));
      return new Response("late", { status: 503 });
    }
    if (fault === "server_error") return new Response("boom", { status: 500 });
    if (file.endsWith(".safetensors")) {
      if (fault) this.faults.set(`${owner}/${name}/${file}`, fault); // the CDN applies it
      // LFS: the hub answers with a redirect to the content store.
      return new Response(null, {
        status: 302,
        headers: { Location: `http://localhost:${this.#cdn.addr.port}/lfs/${owner}/${name}/${file}` },
      });
    }
    return await this.#file(repo, file, fault);
  }

  async #serveCdn(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    this.log.push({ origin: "cdn", path, auth: req.headers.get("authorization") });
    const m = /^\/lfs\/([^/]+)\/([^/]+)\/(.+)$/.exec(path);
    const repo = m ? this.repos.get(`${m[1]}/${m[2]}`) : undefined;
    if (!m || !repo) return new Response("no such object", { status: 404 });
    return await this.#file(repo, m[3], this.#fault(`${m[1]}/${m[2]}/${m[3]}`));
  }

  async #file(repo: RepoSpec, file: string, fault: Fault | undefined): Promise<Response> {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = await Deno.readFile(`${repo.dir}/${file}`);
    } catch {
      return new Response("Entry not found", { status: 404, headers: { "X-Error-Code": "EntryNotFound" } });
    }
    const headers = { "Content-Length": String(bytes.length), "Content-Type": "application/octet-stream" };
    if (fault === "cut" || fault === "stall_body") {
      const half = bytes.subarray(0, Math.floor(bytes.length / 2));
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          c.enqueue(half);
          // Cut: the connection drops mid-body. Stall: nothing more is ever sent.
          if (fault === "cut") setTimeout(() => c.error(new Error("connection cut")), 20);
          else this.#stalls.add(c);
        },
        cancel: () => {},
      });
      return new Response(body, { headers });
    }
    return new Response(bytes, { headers });
  }
}

async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, value] of Object.entries(v)) value === undefined ? Deno.env.delete(k) : Deno.env.set(k, value);
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(before);
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) out.push(e.name);
  return out.sort();
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

async function rejectsWith(p: Promise<unknown>, pattern: RegExp): Promise<ModelLoadError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ModelLoadError, `expected a ModelLoadError, got ${e}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"), "one line");
    return e;
  }
  throw new Error(`expected a rejection matching ${pattern}`);
}

interface Fixture {
  hub: StandInHub;
  root: string;
  /** Generated single-file and sharded repositories. */
  single: string;
  sharded: string;
}

async function fixture(): Promise<Fixture> {
  const root = await Deno.makeTempDir({ prefix: "scalora-hub-" });
  const single = `${root}/src-single`;
  const sharded = `${root}/src-sharded`;
  await generateTinyModel({ out: single, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 11 });
  await generateTinyModel({ out: sharded, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 12, shards: 3 });
  // The optional files this repository lacks must read as "not there" (EntryNotFound), not as errors.
  await Deno.remove(`${single}/generation_config.json`);
  const hub = new StandInHub();
  hub.repos.set("org/single", { dir: single });
  hub.repos.set("org/sharded", { dir: sharded });
  hub.repos.set("org/gated", { dir: single, gated: true });
  return { hub, root, single, sharded };
}

function hubTest(name: string, fn: (f: Fixture) => Promise<void>): void {
  Deno.test({
    name: `hub: ${name}`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const f = await fixture();
      try {
        await withEnv({ HF_ENDPOINT: f.hub.endpoint, HF_TOKEN: undefined, HF_ACCESS_TOKEN: undefined }, () => fn(f));
      } finally {
        await f.hub.close();
        await Deno.remove(f.root, { recursive: true });
      }
    },
  });
}

hubTest("single-file repository: LFS redirect followed, optional files missing, token only to the hub", async (f) => {
  const cacheDir = `${f.root}/cache`;
  await withEnv({ HF_TOKEN: TOKEN }, async () => {
    const ckpt = await openCheckpoint("org/single", { cacheDir });
    try {
      assert.equal(ckpt.dir, await Deno.realPath(hubCachePath("org/single", { cacheDir })));
      const want = await openCheckpoint(f.single);
      try {
        for (const name of ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"]) {
          assert.deepEqual(await ckpt.read(name), await want.read(name));
        }
      } finally {
        want.close();
      }
    } finally {
      ckpt.close();
    }
  });
  const dir = hubCachePath("org/single", { cacheDir });
  assert.ok(await sameBytes(`${dir}/model.safetensors`, `${f.single}/model.safetensors`));
  assert.ok(!(await listFiles(dir)).includes("generation_config.json"));
  assert.ok((await listFiles(dir)).every((n) => !n.includes(".tmp-")));
  // The weights came from the CDN through the redirect; the token went to the hub only.
  assert.equal(f.hub.requests("cdn", "model.safetensors").length, 1);
  assert.ok(f.hub.requests("hub").length > 0);
  assert.ok(f.hub.requests("hub").every((r) => r.auth === `Bearer ${TOKEN}`));
  assert.deepEqual(f.hub.requests("cdn").map((r) => r.auth), [null]);
});

hubTest("sharded index: every shard fetched once and the checkpoint reads as the source", async (f) => {
  const cacheDir = `${f.root}/cache`;
  const dir = await downloadFromHub("org/sharded", { cacheDir });
  const shards = (await listFiles(f.sharded)).filter((n) => n.endsWith(".safetensors"));
  assert.equal(shards.length, 3);
  for (const s of shards) {
    assert.ok(await sameBytes(`${dir}/${s}`, `${f.sharded}/${s}`), s);
    assert.equal(f.hub.requests("cdn", s).length, 1, s);
  }
  assert.equal(f.hub.requests("hub", "model.safetensors").length, 0, "no single-file probe when an index exists");
  const ckpt = await openCheckpoint("org/sharded", { cacheDir });
  const want = await openCheckpoint(f.sharded);
  try {
    for (const name of want.tensors.keys()) assert.deepEqual(await ckpt.read(name), await want.read(name), name);
  } finally {
    ckpt.close();
    want.close();
  }
});

hubTest("unknown repository (401 or 404 RepoNotFound), unknown revision, missing weights", async (f) => {
  const cacheDir = `${f.root}/cache`;
  await rejectsWith(openCheckpoint("org/nope", { cacheDir }), /"org\/nope" does not exist on the Hugging Face hub/);
  f.hub.repos.set("org/gone", { dir: f.single, gone: true });
  await rejectsWith(
    openCheckpoint("org/gone", { cacheDir }),
    /"org\/gone" does not exist on the Hugging Face hub \(HTTP 404, RepoNotFound\)/,
  );
  await rejectsWith(
    downloadFromHub("org/single", { cacheDir, revision: "v9" }),
    /"org\/single" on the Hugging Face hub has no such revision/,
  );
  // A repository without weights (or without config.json) says which file is missing.
  const empty = `${f.root}/src-empty`;
  await Deno.mkdir(empty);
  await Deno.copyFile(`${f.single}/config.json`, `${empty}/config.json`);
  f.hub.repos.set("org/empty", { dir: empty });
  await rejectsWith(downloadFromHub("org/empty", { cacheDir }), /has neither model\.safetensors nor/);
  f.hub.repos.set("org/bare", { dir: `${f.root}/does-not-exist` });
  await rejectsWith(downloadFromHub("org/bare", { cacheDir }), /has no config\.json \(HTTP 404\)/);
});

hubTest("gated repository: 403 GatedRepo names the fix; with HF_TOKEN it downloads", async (f) => {
  const cacheDir = `${f.root}/cache`;
  const err = await rejectsWith(downloadFromHub("org/gated", { cacheDir }), /gated repository/);
  assert.match(err.message, /HF_TOKEN/);
  assert.ok(err.message.includes(`${f.hub.endpoint}/org/gated`), err.message);
  const dir = await withEnv({ HF_TOKEN: TOKEN }, () => downloadFromHub("org/gated", { cacheDir }));
  assert.ok(await sameBytes(`${dir}/model.safetensors`, `${f.single}/model.safetensors`));
  assert.deepEqual(f.hub.requests("cdn").map((r) => r.auth), [null]);
});

hubTest("a body cut off mid-stream leaves no partial file; the next start fetches only what is missing", async (f) => {
  const cacheDir = `${f.root}/cache`;
  const dir = hubCachePath("org/sharded", { cacheDir });
  const shards = (await listFiles(f.sharded)).filter((n) => n.endsWith(".safetensors"));
  f.hub.faults.set(`org/sharded/${shards[1]}`, "cut");
  await rejectsWith(downloadFromHub("org/sharded", { cacheDir }), new RegExp(`download of ${shards[1]} failed`));
  const after = await listFiles(dir);
  assert.ok(after.includes(shards[0]), "the shard before the cut is kept");
  assert.ok(!after.includes(shards[1]) && !after.includes(shards[2]), after.join(", "));
  assert.ok(after.every((n) => !n.includes(".tmp-")), after.join(", "));

  await downloadFromHub("org/sharded", { cacheDir });
  for (const s of shards) assert.ok(await sameBytes(`${dir}/${s}`, `${f.sharded}/${s}`), s);
  assert.equal(f.hub.requests("cdn", shards[0]).length, 1, "the complete shard is not fetched again");
  assert.equal(f.hub.requests("cdn", shards[1]).length, 2);

  // Single file: a cut weights file is not left behind as a complete copy either.
  const single = hubCachePath("org/single", { cacheDir });
  f.hub.faults.set("org/single/model.safetensors", "cut");
  await rejectsWith(downloadFromHub("org/single", { cacheDir }), /download of model\.safetensors failed/);
  assert.ok(!(await listFiles(single)).some((n) => n.startsWith("model.safetensors")));
  await downloadFromHub("org/single", { cacheDir });
  assert.ok(await sameBytes(`${single}/model.safetensors`, `${f.single}/model.safetensors`));
});

hubTest("a temp file left by a killed download is removed on the next start", async (f) => {
  const cacheDir = `${f.root}/cache`;
  const dir = hubCachePath("org/single", { cacheDir });
  await Deno.mkdir(dir, { recursive: true });
  // A pid that is not running (pids are far below 2^22 on Linux).
  await Deno.writeTextFile(`${dir}/model.safetensors.tmp-4194000`, "partial");
  await downloadFromHub("org/single", { cacheDir });
  assert.ok((await listFiles(dir)).every((n) => !n.includes(".tmp-")));
});

hubTest("a stalled server times out: before the headers and in the middle of a body", async (f) => {
  const cacheDir = `${f.root}/cache`;
  f.hub.faults.set("org/single/config.json", "stall_headers");
  const started = performance.now();
  await rejectsWith(downloadFromHub("org/single", { cacheDir, timeoutMs: 300 }), /no response within 0\.3 s/);
  f.hub.faults.set("org/single/model.safetensors", "stall_body");
  await rejectsWith(
    downloadFromHub("org/single", { cacheDir, timeoutMs: 300 }),
    /download of model\.safetensors stalled for 0\.3 s/,
  );
  assert.ok(performance.now() - started < 10_000, "both gave up within seconds");
  assert.ok(!(await listFiles(hubCachePath("org/single", { cacheDir }))).some((n) => n.startsWith("model.")));
  // A 5xx is reported with its status and the local-model hint.
  f.hub.faults.set("org/single/config.json", "server_error");
  await rejectsWith(downloadFromHub("org/single", { cacheDir }), /HTTP 500\).*MODEL=/);
});

hubTest("a complete cached copy is used without the network", async (f) => {
  const cacheDir = `${f.root}/cache`;
  await downloadFromHub("org/sharded", { cacheDir });
  const seen = f.hub.log.length;
  // Nothing listens here: any request would fail.
  await withEnv({ HF_ENDPOINT: "http://127.0.0.1:9" }, async () => {
    const ckpt = await openCheckpoint("org/sharded", { cacheDir, hubTimeoutMs: 500 });
    ckpt.close();
  });
  assert.equal(f.hub.log.length, seen);
  // An incomplete copy (a shard gone) does go back to the hub, and fails clearly when it cannot.
  const shard = (await listFiles(hubCachePath("org/sharded", { cacheDir }))).find((n) => n.endsWith(".safetensors"))!;
  await Deno.remove(`${hubCachePath("org/sharded", { cacheDir })}/${shard}`);
  await withEnv({ HF_ENDPOINT: "http://127.0.0.1:9" }, async () => {
    await rejectsWith(openCheckpoint("org/sharded", { cacheDir, hubTimeoutMs: 500 }), /network unreachable/);
  });
});

hubTest("first run of the service with MODEL=<owner>/<name>: downloaded, served, answered", async (f) => {
  const dataDir = `${f.root}/data`;
  const env = { MODEL: "org/single", DATA_DIR: dataDir, DEVICE: "cpu" };
  const services = await createServices(loadConfig(env), env);
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, services.app.fetch);
  try {
    await services.warm();
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${server.addr.port}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      timeout: 60_000,
    });
    const models = await client.models.list();
    assert.ok(models.data.some((m) => m.id === "org/single"));
    const r = await client.chat.completions.create({
      model: "org/single",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 4,
      temperature: 0,
    });
    assert.equal(r.model, "org/single");
    assert.equal(r.usage?.completion_tokens, 4);
    assert.ok(await sameBytes(`${dataDir}/hub/org/single/model.safetensors`, `${f.single}/model.safetensors`));
  } finally {
    await server.shutdown();
    await services.close();
  }
});
