/**
 * The artifact store's two backends behave alike: the local directory and an
 * S3-compatible server (s3rver, started here in its own process). Round
 * trips of files and bytes, listing and deletion by prefix, multipart
 * uploads of large files, sha256 integrity on every read (a tampered object
 * fails its stream; a failed download leaves no file), and the blob store
 * over S3.
 */
import assert from "node:assert/strict";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { ArtifactIntegrityError, type ArtifactStore, sha256Bytes, sha256File } from "../src/store/artifact_store.ts";
import { BlobStore } from "../src/store/blob_store.ts";
import { LocalArtifactStore } from "../src/store/local_artifact_store.ts";
import { parseS3Url } from "../src/store/s3_artifact_store.ts";
import { S3Server } from "./helpers/s3_server.ts";

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = seed >>> 0;
  for (let i = 0; i < bytes; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function conformance(store: ArtifactStore, scratch: string): Promise<void> {
  const src = `${scratch}/src.bin`;
  const data = pattern(300_000, 1);
  await Deno.writeFile(src, data);
  const info = await store.putFile("a/b/one.bin", src);
  assert.equal(info.bytes, data.byteLength);
  assert.ok(await Deno.stat(src).then(() => true), "putFile without move keeps the source");
  assert.equal((await store.head("a/b/one.bin"))?.bytes, data.byteLength);
  assert.equal(await store.head("a/b/none.bin"), null);
  assert.equal(await store.get("a/b/none.bin"), null);
  assert.equal(await store.exists("a/b/one.bin"), true);

  const read = await store.get("a/b/one.bin", { sha256: sha256Bytes(data) });
  assert.ok(read);
  assert.deepEqual(await readAll(read.stream), data);

  await store.putBytes("a/c/two.txt", new TextEncoder().encode("two"));
  await store.putBytes("z/three.txt", new TextEncoder().encode("three"));
  const listed = await Array.fromAsync(store.list("a/"));
  assert.deepEqual(listed.map((o) => o.key), ["a/b/one.bin", "a/c/two.txt"]);
  assert.deepEqual(listed.map((o) => o.bytes), [data.byteLength, 3]);

  // getFile: verified bytes in place; the temporary sibling is gone.
  assert.equal(await store.getFile("a/c/two.txt", `${scratch}/dl/two.txt`), true);
  assert.equal(await Deno.readTextFile(`${scratch}/dl/two.txt`), "two");
  assert.deepEqual((await Array.fromAsync(Deno.readDir(`${scratch}/dl`))).map((e) => e.name), ["two.txt"]);
  assert.equal(await store.getFile("a/none", `${scratch}/dl/none`), false);

  // A wrong expected hash fails the stream at its end, and getFile leaves nothing behind.
  const bad = await store.get("a/b/one.bin", { sha256: "0".repeat(64) });
  assert.ok(bad);
  await assert.rejects(readAll(bad.stream), ArtifactIntegrityError);
  await assert.rejects(
    store.getFile("a/b/one.bin", `${scratch}/dl/one.bin`, { sha256: "0".repeat(64) }),
    ArtifactIntegrityError,
  );
  assert.deepEqual((await Array.fromAsync(Deno.readDir(`${scratch}/dl`))).map((e) => e.name), ["two.txt"]);

  // move: the source goes.
  const moved = `${scratch}/moved.bin`;
  await Deno.writeFile(moved, data.subarray(0, 10));
  await store.putFile("m/moved.bin", moved, { move: true });
  assert.equal(await Deno.stat(moved).then(() => true, () => false), false);
  assert.equal((await store.head("m/moved.bin"))?.bytes, 10);

  assert.equal(await store.deletePrefix("a/"), 2);
  assert.deepEqual((await Array.fromAsync(store.list(""))).map((o) => o.key), ["m/moved.bin", "z/three.txt"]);
  await store.delete("z/three.txt");
  await store.delete("z/three.txt"); // missing is fine
  assert.equal(await store.exists("z/three.txt"), false);
  await assert.rejects(() => store.deletePrefix("m"), /ends with "\/"/);

  // Keys are ours: nothing that could escape the root or differ between backends.
  for (const key of ["../x", "a//b", "/abs", "a/./b", "a b"]) {
    await assert.rejects(() => store.putBytes(key, new Uint8Array(1)), /not a valid artifact key/);
  }
}

Deno.test("artifact store: local directory backend", async () => {
  const root = await Deno.makeTempDir({ prefix: "artifacts-local-" });
  try {
    const store = new LocalArtifactStore(`${root}/store`);
    await store.check();
    await conformance(store, await Deno.makeTempDir({ dir: root }));
    // A tampered file fails its read when the caller knows the hash (content-addressed keys).
    await store.putBytes("t/x", new TextEncoder().encode("original"));
    await Deno.writeTextFile(`${root}/store/t/x`, "tampered");
    const read = await store.get("t/x", { sha256: sha256Bytes(new TextEncoder().encode("original")) });
    await assert.rejects(readAll(read!.stream), ArtifactIntegrityError);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: "artifact store: S3 backend (s3rver over HTTP on loopback)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s3 = await S3Server.start();
    const root = await Deno.makeTempDir({ prefix: "artifacts-s3-" });
    try {
      const store = s3.store("unit", { partSize: 5 * 1024 * 1024 });
      await store.check();
      assert.equal(store.location, `s3://${s3.bucket}/unit/`);

      await t.step("conformance", async () => {
        await conformance(store, await Deno.makeTempDir({ dir: root }));
        // Every key lives under the store's prefix.
        assert.ok((await s3.keys()).every((k) => k.startsWith("unit/")));
      });

      await t.step("large files upload in parts, stream back whole and verified", async () => {
        const path = `${root}/big.bin`;
        await Deno.writeFile(path, pattern(12 * 1024 * 1024 + 12345, 7));
        const sha = await sha256File(path);
        const commands: string[] = [];
        store.client.middlewareStack.add((next, context) => (args) => {
          commands.push(context.commandName ?? "?");
          return next(args);
        }, { step: "initialize", name: "recordCommands" });
        const info = await store.putFile("big/big.bin", path);
        store.client.middlewareStack.remove("recordCommands");
        assert.equal(info.sha256, sha);
        // Three parts of at most 5 MiB, uploaded as one multipart upload.
        assert.deepEqual(commands.filter((c) => c !== "UploadPartCommand"), [
          "CreateMultipartUploadCommand",
          "CompleteMultipartUploadCommand",
        ]);
        assert.equal(commands.filter((c) => c === "UploadPartCommand").length, 3);
        const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: "unit/big/big.bin" }));
        assert.equal(head.ContentLength, 12 * 1024 * 1024 + 12345);
        assert.equal(head.Metadata?.sha256, sha);
        assert.equal(await store.getFile("big/big.bin", `${root}/big.copy`), true);
        assert.equal(await sha256File(`${root}/big.copy`), sha);
      });

      await t.step("an object whose bytes do not match its recorded sha256 fails its read", async () => {
        await store.putBytes("t/obj", new TextEncoder().encode("original"));
        const recorded = (await store.head("t/obj"))!.sha256!;
        // Overwrite the body behind the store's back, keeping the old metadata.
        await s3.client.send(
          new PutObjectCommand({
            Bucket: s3.bucket,
            Key: "unit/t/obj",
            Body: "tampered",
            Metadata: { sha256: recorded },
          }),
        );
        const read = await store.get("t/obj");
        await assert.rejects(readAll(read!.stream), ArtifactIntegrityError);
        await assert.rejects(store.getFile("t/obj", `${root}/obj`), ArtifactIntegrityError);
        assert.equal(await Deno.stat(`${root}/obj`).then(() => true, () => false), false);
      });

      await t.step("blob store: content-addressed uploads through S3", async () => {
        const blobs = await BlobStore.open(`${root}/files`, { artifacts: store, prefix: "files/" });
        const content = new TextEncoder().encode('{"prompt":"a","completion":"b"}\n');
        const staged = await blobs.stage(ReadableStream.from([content]), { maxBytes: 1 << 20 });
        await blobs.publish(staged);
        const key = `unit/files/${staged.sha256.slice(0, 2)}/${staged.sha256}`;
        assert.ok((await s3.keys("unit/files/")).includes(key));
        await blobs.commit(staged);
        // The staging copy is gone; the bytes live only in the bucket.
        assert.deepEqual(await Array.fromAsync(Deno.readDir(`${root}/files/.tmp`)), []);
        const read = await blobs.read(staged.sha256);
        assert.deepEqual(await readAll(read!.stream), content);
        const got = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
        assert.equal(got.Metadata?.sha256, staged.sha256);
        await blobs.remove(staged.sha256);
        assert.equal(await blobs.exists(staged.sha256), false);
      });
    } finally {
      await s3.stop();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("artifact store: ARTIFACT_STORE URLs", () => {
  assert.deepEqual(parseS3Url("s3://bucket"), { bucket: "bucket", prefix: "" });
  assert.deepEqual(parseS3Url("s3://my.bucket-1/a/b/"), { bucket: "my.bucket-1", prefix: "a/b/" });
  assert.throws(() => parseS3Url("s3://B"), /s3:\/\/bucket/);
  assert.throws(() => parseS3Url("http://x/y"), /s3:\/\/bucket/);
  assert.throws(() => parseS3Url("s3://bucket/../x"), /not a valid artifact key/);
});
