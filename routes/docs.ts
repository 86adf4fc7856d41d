/**
 * `/docs`: a self-contained page (no CDN, no external network) that lists the
 * operations of `/openapi.json` with their parameters, request schemas and
 * responses. Deliberately plain; any OpenAPI tool can read `/openapi.json`.
 */
import { Hono } from "hono";
import type { AppEnv } from "./app_env.ts";

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ScaLoRA Server API</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;font-size:1.05rem}.m{display:inline-block;min-width:3.5rem;font-weight:700}
.get{color:#1565c0}.post{color:#2e7d32}code,pre{font:12px ui-monospace,monospace}
pre{background:#f5f5f5;padding:.6rem;overflow:auto;max-height:28rem}summary{cursor:pointer}
</style></head><body>
<h1>ScaLoRA Server API</h1>
<p>OpenAI-compatible endpoints. Machine-readable spec: <a href="/openapi.json"><code>/openapi.json</code></a>.
Routes under <code>/v1</code> need <code>Authorization: Bearer &lt;key&gt;</code> when the server has API keys.</p>
<div id="ops">Loading…</div>
<script>
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const show = (label, obj) => "<details><summary>" + esc(label) + "</summary><pre>" + esc(JSON.stringify(obj, null, 2)) + "</pre></details>";
fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  const schemas = (spec.components && spec.components.schemas) || {};
  const deref = (s) => s && s.$ref ? { [s.$ref.split("/").pop()]: schemas[s.$ref.split("/").pop()] } : s;
  let html = "";
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      html += "<h2><span class='m " + method + "'>" + method.toUpperCase() + "</span> <code>" + esc(path) + "</code></h2>";
      html += "<p>" + esc(op.summary || "") + (op.security ? " <em>(API key)</em>" : "") + "</p>";
      if (op.parameters) html += show("parameters", op.parameters);
      const body = op.requestBody && op.requestBody.content["application/json"];
      if (body) html += show("request body", deref(body.schema));
      for (const [status, resp] of Object.entries(op.responses || {})) {
        const content = resp.content || {};
        const first = Object.entries(content)[0];
        html += show(status + " — " + (resp.description || "") + (first ? " (" + Object.keys(content).join(", ") + ")" : ""),
          first ? deref(first[1].schema) : {});
      }
    }
  }
  document.getElementById("ops").innerHTML = html;
}).catch((e) => { document.getElementById("ops").textContent = "Cannot load /openapi.json: " + e; });
</script></body></html>`;

export function docsRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/docs", (c) => c.html(PAGE));
  return app;
}
