import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../src/config.ts";
import { DEFAULT_PROBE_TIMEOUT_MS } from "../src/registry/probe.ts";
import { loadRegistryConfig, RegistryConfigError } from "../src/registry/registry_config.ts";

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

Deno.test("registry config: defaults, MODEL_PROBE_TIMEOUT_MS, one-line errors", () => {
  const d = loadRegistryConfig({});
  assert.equal(d.probeTimeoutMs, DEFAULT_PROBE_TIMEOUT_MS);
  assert.equal(d.leaseTtlMs, 30_000);
  assert.equal(d.compileMode, "patch");
  assert.equal(loadRegistryConfig({ MODEL_PROBE_TIMEOUT_MS: "120000" }).probeTimeoutMs, 120_000);
  // An empty value means unset, as for every variable.
  assert.equal(loadRegistryConfig({ MODEL_PROBE_TIMEOUT_MS: "" }).probeTimeoutMs, DEFAULT_PROBE_TIMEOUT_MS);
  for (const bad of ["0", "-5", "1.5", "soon"]) {
    assert.throws(() => loadRegistryConfig({ MODEL_PROBE_TIMEOUT_MS: bad }), (e: Error) => {
      assert.ok(e instanceof RegistryConfigError);
      assert.match(e.message, /^invalid environment variable MODEL_PROBE_TIMEOUT_MS: /);
      return true;
    });
  }
});
