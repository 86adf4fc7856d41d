import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../src/config.ts";

Deno.test("service config: defaults, API keys, body limit, request timeout", () => {
  const d = loadConfig({});
  assert.equal(d.port, 8000);
  assert.deepEqual(d.apiKeys, []);
  assert.equal(d.maxBodyBytes, 4 * 1024 * 1024);
  assert.equal(d.requestTimeoutMs, null);
  const c = loadConfig({ API_KEYS: " a, b ,,", MAX_BODY_BYTES: "65536", REQUEST_TIMEOUT_MS: "30000", PORT: "0" });
  assert.deepEqual(c.apiKeys, ["a", "b"]);
  assert.equal(c.maxBodyBytes, 65536);
  assert.equal(c.requestTimeoutMs, 30000);
  assert.equal(c.port, 0);
  assert.throws(() => loadConfig({ MAX_BODY_BYTES: "12" }), ConfigError);
  assert.throws(() => loadConfig({ REQUEST_TIMEOUT_MS: "soon" }), /REQUEST_TIMEOUT_MS/);
});
