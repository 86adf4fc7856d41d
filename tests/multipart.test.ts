import assert from "node:assert/strict";
import { multipartBoundary, MultipartError, readMultipart } from "../routes/multipart.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function streamOf(bytes: Uint8Array, chunkSize: number): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(controller) {
      if (off >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(off, off + chunkSize));
      off += chunkSize;
    },
  });
}

interface ParsedPart {
  name: string;
  filename: string | null;
  contentType: string | null;
  body: string;
}

async function parseAll(body: Uint8Array, boundary: string, chunkSize = 1 << 16, maxTotalBytes = 1 << 20) {
  const out: ParsedPart[] = [];
  for await (const part of readMultipart(streamOf(body, chunkSize), boundary, { maxTotalBytes })) {
    const chunks: Uint8Array[] = [];
    for await (const c of part.body) chunks.push(c.slice());
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of chunks) all.set(c, (o += c.length) - c.length);
    out.push({ name: part.name, filename: part.filename, contentType: part.contentType, body: dec.decode(all) });
  }
  return out;
}

const B = "----b0undary42";
const SAMPLE = enc.encode(
  "preamble to ignore\r\n" +
    `--${B}\r\n` +
    'Content-Disposition: form-data; name="purpose"\r\n\r\n' +
    "fine-tune\r\n" +
    `--${B}\r\n` +
    'Content-Disposition: form-data; name="file"; filename="a \\"quoted\\" name.jsonl"\r\n' +
    "Content-Type: application/jsonl\r\n\r\n" +
    '{"a":1}\r\n{"b":"--not-a-boundary\r\n--' + B.slice(0, 6) + '"}\r\n' +
    `--${B}--\r\n` +
    "epilogue",
);

Deno.test("multipart: boundary from Content-Type", () => {
  assert.equal(multipartBoundary(`multipart/form-data; boundary=${B}`), B);
  assert.equal(multipartBoundary('multipart/form-data; charset=utf-8; boundary="quoted b"'), "quoted b");
  assert.equal(multipartBoundary("application/json"), null);
  assert.equal(multipartBoundary("multipart/form-data"), null);
  assert.equal(multipartBoundary(null), null);
});

Deno.test("multipart: same parts at every chunking, near-boundary bytes stay body", async () => {
  const expected: ParsedPart[] = [
    { name: "purpose", filename: null, contentType: null, body: "fine-tune" },
    {
      name: "file",
      filename: 'a "quoted" name.jsonl',
      contentType: "application/jsonl",
      body: '{"a":1}\r\n{"b":"--not-a-boundary\r\n--' + B.slice(0, 6) + '"}',
    },
  ];
  for (const size of [1, 2, 3, 7, 16, 64, SAMPLE.length]) {
    assert.deepEqual(await parseAll(SAMPLE, B, size), expected, `chunk size ${size}`);
  }
});

Deno.test("multipart: RFC 5987 filename*, empty parts, unread parts skipped", async () => {
  const body = enc.encode(
    `--${B}\r\n` +
      'Content-Disposition: form-data; name="file"; filename="fallback.txt"; filename*=UTF-8\'\'%C3%A9t%C3%A9.jsonl\r\n\r\n' +
      "\r\n" +
      `--${B}\r\n` +
      'Content-Disposition: form-data; name="skipped"\r\n\r\n' +
      "x".repeat(1000) + "\r\n" +
      `--${B}\r\n` +
      'Content-Disposition: form-data; name="last"\r\n\r\n' +
      "end\r\n" +
      `--${B}--`,
  );
  const names: string[] = [];
  let first: ParsedPart | null = null;
  for await (const part of readMultipart(streamOf(body, 5), B, { maxTotalBytes: 1 << 20 })) {
    names.push(part.name);
    if (part.name === "file") first = { name: part.name, filename: part.filename, contentType: null, body: "" };
    if (part.name === "last") {
      for await (const c of part.body) assert.equal(dec.decode(c), "end");
    }
  }
  assert.deepEqual(names, ["file", "skipped", "last"]);
  assert.equal(first?.filename, "été.jsonl");
});

Deno.test("multipart: malformed bodies and limits are typed errors", async () => {
  const cases: [string, Uint8Array, "malformed" | "too_large", number?][] = [
    ["no boundary at all", enc.encode("just text"), "malformed"],
    ["truncated part", enc.encode(`--${B}\r\nContent-Disposition: form-data; name="f"\r\n\r\nabc`), "malformed"],
    ["no disposition", enc.encode(`--${B}\r\nContent-Type: text/plain\r\n\r\nabc\r\n--${B}--`), "malformed"],
    ["header too big", enc.encode(`--${B}\r\nX: ${"y".repeat(20_000)}\r\n\r\nabc\r\n--${B}--`), "too_large"],
    [
      "body too big",
      enc.encode(`--${B}\r\nContent-Disposition: form-data; name="f"\r\n\r\n${"z".repeat(5000)}\r\n--${B}--`),
      "too_large",
      1000,
    ],
  ];
  for (const [label, body, kind, max] of cases) {
    await assert.rejects(parseAll(body, B, 64, max), (e: unknown) => {
      assert.ok(e instanceof MultipartError, `${label}: ${e}`);
      assert.equal(e.kind, kind, label);
      return true;
    });
  }
});

Deno.test("multipart: matches what Request builds from FormData", async () => {
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", new File([enc.encode('{"x":1}\n')], "train.jsonl", { type: "application/jsonl" }));
  const req = new Request("http://x/", { method: "POST", body: form });
  const boundary = multipartBoundary(req.headers.get("content-type"));
  assert.ok(boundary);
  const body = new Uint8Array(await req.arrayBuffer());
  assert.deepEqual(await parseAll(body, boundary, 3), [
    { name: "purpose", filename: null, contentType: null, body: "fine-tune" },
    { name: "file", filename: "train.jsonl", contentType: "application/jsonl", body: '{"x":1}\n' },
  ]);
});
