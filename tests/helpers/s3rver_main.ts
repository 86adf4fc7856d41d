/**
 * An S3-compatible server for tests and benchmarks: s3rver (npm), which
 * speaks the S3 REST API over HTTP on loopback and keeps objects in a
 * directory. Run as its own process (tests/helpers/s3_server.ts starts it):
 *   deno run -A tests/helpers/s3rver_main.ts DIR BUCKET...
 * prints `listening on <port>` once it accepts requests; SIGTERM stops it.
 * Credentials: access key S3RVER, secret S3RVER (s3rver's own).
 */
import S3rver from "s3rver";

const [directory, ...buckets] = Deno.args;
if (!directory) throw new Error("usage: s3rver_main.ts DIR BUCKET...");
const server = new S3rver({
  address: "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? "0"),
  silent: true,
  directory,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
const { port } = await server.run();
console.log(`listening on ${port}`);
const stop = async () => {
  await server.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
