import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { join } from "node:path";
import { OpenAPIHono } from "@hono/zod-openapi";
import OpenAI, { toFile } from "openai";
import type { AppEnv } from "../routes/app_env.ts";
import { errorResponse, toApiError } from "../routes/errors.ts";
import { filesRoutes } from "../routes/files.ts";
import { BlobStore } from "../src/store/blob_store.ts";
import { displayFilename, FileService } from "../src/store/file_service.ts";
import type { Store } from "../src/store/store.ts";
import { resetStore } from "../src/store/testing.ts";
import { defineStoreTests } from "./helpers/store_backends.ts";

const enc = new TextEncoder();
const JSONL = '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n';

interface Harness {
  app: OpenAPIHono<AppEnv>;
  files: FileService;
  blobRoot: string;
  store: Store;
}

async function harness(store: Store, dataDir: string, maxUploadBytes?: number): Promise<Harness> {
  const blobRoot = join(dataDir, `files-${crypto.randomUUID()}`);
  const files = new FileService(store, await BlobStore.open(blobRoot));
  // Mounted the way src/app.ts mounts routers: errors rendered once, by the app.
  const app = new OpenAPIHono<AppEnv>();
  app.route("/", filesRoutes({ files, maxUploadBytes }));
  app.onError((err, c) => errorResponse(c, toApiError(err)));
  return { app, files, blobRoot, store };
}

function form(content: BlobPart, filename = "train.jsonl", purpose: string | null = "fine-tune"): FormData {
  const f = new FormData();
  if (purpose !== null) f.append("purpose", purpose);
  f.append("file", new File([content], filename));
  return f;
}

const upload = async (h: Harness, body: BodyInit, headers?: HeadersInit): Promise<Response> =>
  await h.app.request("/v1/files", { method: "POST", body, headers });

/** A multipart body built by hand, for exact control of the filename bytes. */
function rawMultipart(
  filenameHeader: string,
  content: string,
  purpose = "fine-tune",
): { body: Uint8Array<ArrayBuffer>; type: string } {
  const b = "xXxBoundaryxXx";
  const text = `--${b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n${purpose}\r\n` +
    `--${b}\r\nContent-Disposition: form-data; name="file"; ${filenameHeader}\r\n` +
    `Content-Type: application/octet-stream\r\n\r\n${content}\r\n--${b}--\r\n`;
  return { body: enc.encode(text), type: `multipart/form-data; boundary=${b}` };
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Every file under the blob root, relative; temp files included. */
async function listTree(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(root, rel))) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listTree(root, p));
    else out.push(p);
  }
  return out.sort();
}

async function expectError(res: Response, status: number, param: string | null, code?: string | null) {
  assert.equal(res.status, status, await res.clone().text());
  const body = await res.json();
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(body.error.param, param, JSON.stringify(body));
  if (code !== undefined) assert.equal(body.error.code, code, JSON.stringify(body));
  assert.ok(body.error.message.length > 0);
  return body.error;
}

Deno.test("displayFilename strips control characters and caps the length, keeps the rest", () => {
  assert.equal(displayFilename("../../etc/passwd"), "../../etc/passwd");
  assert.equal(displayFilename("a\u0000b\nc.jsonl"), "abc.jsonl");
  assert.equal(displayFilename("é".repeat(300)), "é".repeat(255));
  assert.equal(displayFilename("\u0000"), "upload");
  assert.equal(displayFilename(null), "upload");
});

defineStoreTests("files api", [
  {
    name: "upload, retrieve, list, content, delete round trip",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      const res = await upload(h, form(JSONL));
      assert.equal(res.status, 200, await res.clone().text());
      const file = await res.json();
      assert.match(file.id, /^file-/);
      assert.deepEqual({ ...file, id: "", created_at: 0 }, {
        id: "",
        object: "file",
        bytes: enc.encode(JSONL).length,
        created_at: 0,
        expires_at: null,
        filename: "train.jsonl",
        purpose: "fine-tune",
        status: "processed",
        status_details: null,
      });
      assert.ok(Math.abs(file.created_at - Date.now() / 1000) < 60);

      const sha = await sha256Hex(enc.encode(JSONL));
      assert.deepEqual(await listTree(h.blobRoot), [`${sha.slice(0, 2)}/${sha}`]);
      assert.equal(await Deno.readTextFile(join(h.blobRoot, sha.slice(0, 2), sha)), JSONL);

      assert.deepEqual(await (await h.app.request(`/v1/files/${file.id}`)).json(), file);
      const list = await (await h.app.request("/v1/files")).json();
      assert.deepEqual(list, { object: "list", data: [file], first_id: file.id, last_id: file.id, has_more: false });

      const content = await h.app.request(`/v1/files/${file.id}/content`);
      assert.equal(content.status, 200);
      assert.equal(content.headers.get("content-type"), "application/octet-stream");
      assert.equal(content.headers.get("content-length"), String(file.bytes));
      assert.match(content.headers.get("content-disposition") ?? "", /^attachment; filename="train.jsonl"/);
      assert.equal(await content.text(), JSONL);

      const del = await h.app.request(`/v1/files/${file.id}`, { method: "DELETE" });
      assert.deepEqual(await del.json(), { id: file.id, object: "file", deleted: true });
      await expectError(await h.app.request(`/v1/files/${file.id}`), 404, "id", null);
      await expectError(await h.app.request(`/v1/files/${file.id}/content`), 404, "id");
      await expectError(await h.app.request(`/v1/files/${file.id}`, { method: "DELETE" }), 404, "id");
      assert.deepEqual((await (await h.app.request("/v1/files")).json()).data, []);
      assert.deepEqual(await listTree(h.blobRoot), [], "unreferenced blob removed, no temp files left");
    },
  },
  {
    name: "the openai SDK can upload, list, read and delete",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      const client = new OpenAI({
        apiKey: "sk-test",
        baseURL: "http://files.test/v1",
        maxRetries: 0,
        fetch: (url: string | URL | Request, init?: RequestInit) => Promise.resolve(h.app.request(url, init)),
      });
      const created = await client.files.create({
        file: await toFile(enc.encode(JSONL), "sdk.jsonl"),
        purpose: "fine-tune",
      });
      assert.equal(created.filename, "sdk.jsonl");
      assert.equal(created.bytes, enc.encode(JSONL).length);
      assert.equal((await client.files.retrieve(created.id)).id, created.id);
      const page = await client.files.list({ purpose: "fine-tune" });
      assert.deepEqual(page.data.map((f) => f.id), [created.id]);
      assert.equal(await (await client.files.content(created.id)).text(), JSONL);
      assert.equal((await client.files.delete(created.id)).deleted, true);
      await assert.rejects(client.files.retrieve(created.id), (e: unknown) => e instanceof OpenAI.NotFoundError);
    },
  },
  {
    name: "purpose other than fine-tune, missing fields, wrong body → 400 naming the parameter",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      for (const purpose of ["assistants", "batch", "vision", "", "x".repeat(5000)]) {
        const err = await expectError(await upload(h, form(JSONL, "t.jsonl", purpose)), 400, "purpose");
        assert.ok(err.message.length < 300);
      }
      await expectError(await upload(h, form(JSONL, "t.jsonl", null)), 400, "purpose");
      const onlyPurpose = new FormData();
      onlyPurpose.append("purpose", "fine-tune");
      await expectError(await upload(h, onlyPurpose), 400, "file");
      const notAFile = new FormData();
      notAFile.append("purpose", "fine-tune");
      notAFile.append("file", "just a string field");
      await expectError(await upload(h, notAFile), 400, "file");
      const two = form(JSONL);
      two.append("file", new File([JSONL], "second.jsonl"));
      await expectError(await upload(h, two), 400, "file");
      await expectError(
        await upload(h, enc.encode('{"purpose":"fine-tune"}'), { "content-type": "application/json" }),
        400,
        null,
        "invalid_content_type",
      );
      await expectError(
        await upload(h, enc.encode("garbage"), { "content-type": "multipart/form-data; boundary=zzz" }),
        400,
        null,
        "invalid_multipart",
      );
      assert.deepEqual(await listTree(h.blobRoot), [], "nothing stored, no temp files");
    },
  },
  {
    name: "empty and non-UTF-8 files are rejected at upload",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      await expectError(await upload(h, form(new Uint8Array(0))), 400, "file", "invalid_file");
      await expectError(await upload(h, form(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))), 400, "file", "invalid_file");
      // A multi-byte character cut off at the end is invalid too.
      await expectError(await upload(h, form(new Uint8Array([0x61, 0xc3]))), 400, "file", "invalid_file");
      assert.deepEqual(await listTree(h.blobRoot), []);
      assert.equal((await store.files.list({ limit: 10 })).data.length, 0);
    },
  },
  {
    name: "oversize → 413, from Content-Length or while streaming; nothing left on disk",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir, 1024);
      // Streamed FormData (no Content-Length): caught while writing the file.
      await expectError(await upload(h, form("x".repeat(2048))), 413, "file", "file_too_large");
      // Exactly at the limit is fine.
      assert.equal((await upload(h, form("y".repeat(1024)))).status, 200);
      // Declared too large: refused before the body is read.
      let pulled = 0;
      const never = new ReadableStream<Uint8Array>({
        pull(c) {
          pulled++;
          c.enqueue(new Uint8Array(1024));
        },
      });
      const res = await upload(h, never, {
        "content-type": "multipart/form-data; boundary=b",
        "content-length": String(64 * 1024 * 1024),
      });
      await expectError(res, 413, "file", "file_too_large");
      assert.ok(pulled <= 1, `body was read (${pulled} pulls)`);
      // No Content-Length and an endless body: the total limit stops it.
      const endless = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(enc.encode(`--b\r\nContent-Disposition: form-data; name="junk"\r\n\r\n`));
        },
        pull(c) {
          c.enqueue(new Uint8Array(64 * 1024).fill(0x61));
        },
      });
      await expectError(
        await upload(h, endless, { "content-type": "multipart/form-data; boundary=b" }),
        413,
        null,
        "request_too_large",
      );
      const tree = await listTree(h.blobRoot);
      assert.equal(tree.length, 1, `only the accepted file: ${tree}`);
      assert.ok(!tree.some((p) => p.startsWith(".tmp/")));
    },
  },
  {
    name: "path-like, NUL-bearing and very long filenames are metadata only",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      const cases: [string, string, string][] = [
        ['filename="../../etc/passwd"', "../../etc/passwd", "passwd"],
        ['filename="a/b.jsonl"', "a/b.jsonl", "b.jsonl"],
        ['filename="..\\\\..\\\\win.ini"', "..\\..\\win.ini", "win.ini"],
        ['filename="nul\u0000byte.jsonl"', "nulbyte.jsonl", "nulbyte.jsonl"],
        ["filename*=UTF-8''%00%2F..%2Fx.jsonl", "/../x.jsonl", "x.jsonl"],
        [`filename="${"L".repeat(5000)}"`, "L".repeat(255), "L".repeat(255)],
      ];
      for (const [header, stored, attachment] of cases) {
        const { body, type } = rawMultipart(header, JSONL);
        const res = await upload(h, body, { "content-type": type });
        assert.equal(res.status, 200, `${header.slice(0, 40)}: ${await res.clone().text()}`);
        const file = await res.json();
        assert.equal(file.filename, stored);
        const content = await h.app.request(`/v1/files/${file.id}/content`);
        const disposition = content.headers.get("content-disposition") ?? "";
        assert.ok(disposition.startsWith(`attachment; filename="${attachment}"`), disposition);
        assert.equal(await content.text(), JSONL);
      }
      const sha = await sha256Hex(enc.encode(JSONL));
      // Six uploads, one blob, at its hash; no other path was ever created.
      assert.deepEqual(await listTree(h.blobRoot), [`${sha.slice(0, 2)}/${sha}`]);
      // Nothing but the blob store and (for PGlite) the database was written under DATA_DIR.
      const outside = (await listTree(dataDir)).filter((p) => !/^(files-[^/]+|db)\//.test(p) && p !== "db.lock");
      assert.deepEqual(outside, []);
    },
  },
  {
    name: "unknown ids → 404 with the OpenAI envelope",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      for (
        const [path, method] of [["/v1/files/file-nope", "GET"], ["/v1/files/file-nope", "DELETE"], [
          "/v1/files/file-nope/content",
          "GET",
        ]] as const
      ) {
        const err = await expectError(await h.app.request(path, { method }), 404, "id", null);
        assert.equal(err.type, "invalid_request_error");
        assert.match(err.message, /file-nope/);
      }
    },
  },
  {
    name: "list: cursor pagination, order, purpose filter, parameter validation",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await (await upload(h, form(`{"i":${i}}\n`, `f${i}.jsonl`))).json()).id);
      const p1 = await (await h.app.request("/v1/files?limit=2")).json();
      assert.deepEqual(p1.data.map((f: { id: string }) => f.id), [ids[2], ids[1]]);
      assert.equal(p1.has_more, true);
      assert.equal(p1.first_id, ids[2]);
      assert.equal(p1.last_id, ids[1]);
      const p2 = await (await h.app.request(`/v1/files?limit=2&after=${p1.last_id}`)).json();
      assert.deepEqual(p2.data.map((f: { id: string }) => f.id), [ids[0]]);
      assert.equal(p2.has_more, false);
      const asc = await (await h.app.request("/v1/files?order=asc")).json();
      assert.deepEqual(asc.data.map((f: { id: string }) => f.id), ids);
      const other = await (await h.app.request("/v1/files?purpose=batch")).json();
      assert.deepEqual(other, { object: "list", data: [], first_id: null, last_id: null, has_more: false });
      await expectError(await h.app.request("/v1/files?limit=0"), 400, "limit");
      await expectError(await h.app.request("/v1/files?limit=10001"), 400, "limit");
      await expectError(await h.app.request("/v1/files?order=sideways"), 400, "order");
      await expectError(await h.app.request("/v1/files?after=file-nope"), 400, "after", "invalid_cursor");
    },
  },
  {
    name: "concurrent uploads of the same bytes: distinct files, one blob, freed with the last",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      const content = JSONL.repeat(2000); // ~180 KB: several chunks each
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => upload(h, form(content, `c${i}.jsonl`))));
      const files = await Promise.all(results.map((r) => {
        assert.equal(r.status, 200);
        return r.json();
      }));
      assert.equal(new Set(files.map((f) => f.id)).size, 6);
      const sha = await sha256Hex(enc.encode(content));
      assert.deepEqual(await listTree(h.blobRoot), [`${sha.slice(0, 2)}/${sha}`]);
      // Deletes racing each other (and a fresh upload) never lose bytes someone still references.
      const [again] = await Promise.all([
        upload(h, form(content, "late.jsonl")).then((r) => r.json()),
        ...files.slice(0, 5).map((f) => h.app.request(`/v1/files/${f.id}`, { method: "DELETE" })),
      ]);
      for (const f of [files[5], again]) {
        assert.equal(await (await h.app.request(`/v1/files/${f.id}/content`)).text(), content);
      }
      await h.app.request(`/v1/files/${files[5].id}`, { method: "DELETE" });
      assert.equal((await listTree(h.blobRoot)).length, 1);
      await h.app.request(`/v1/files/${again.id}`, { method: "DELETE" });
      assert.deepEqual(await listTree(h.blobRoot), []);
    },
  },
  {
    name: "a deleted file stays readable for the job that uses it; GC frees it after the job",
    async fn({ store, dataDir }) {
      const h = await harness(store, dataDir);
      const file = await (await upload(h, form(JSONL))).json();
      const job = await store.jobs.create({
        model: "base",
        trainingFile: file.id,
        seed: 1,
        method: { type: "supervised" },
        hyperparameters: {},
        status: "queued",
      });
      assert.equal((await h.app.request(`/v1/files/${file.id}`, { method: "DELETE" })).status, 200);
      await expectError(await h.app.request(`/v1/files/${file.id}`), 404, "id");
      const forRunner = await h.files.content(file.id, { includeDeleted: true });
      assert.equal(await new Response(forRunner.stream).text(), JSONL);
      assert.equal(await h.files.collectGarbage(), 0);
      assert.equal((await listTree(h.blobRoot)).length, 1);
      await store.jobs.transition(job.id, "cancelled");
      assert.equal(await h.files.collectGarbage(), 1);
      assert.deepEqual(await listTree(h.blobRoot), []);
      assert.equal(await h.files.collectGarbage(), 0);
    },
  },
], resetStore);
