/**
 * The dashboard's server side without a browser (the browser tier,
 * tests/ui_browser.test.ts, drives the pages): `/` redirects browsers and
 * keeps the JSON 404 for API clients; every page renders with its labelled
 * controls and a strict CSP; the client modules, stylesheet and uPlot's dist
 * files come from the project and its npm dependencies (nothing else is
 * served, nothing is loaded from elsewhere); the new-job form shows the
 * configuration's defaults; `GET /v1/dashboard` and
 * `POST /v1/dashboard/check_file` answer as documented, behind API keys.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { loadConfig } from "../src/config.ts";
import { DEFAULTS } from "../src/jobs/job_spec.ts";
import { createServices } from "../src/services.ts";
import { tinyLlama } from "./helpers/service.ts";

const PAGES = ["/ui", "/ui/jobs", "/ui/jobs/new", "/ui/jobs/ftjob-x", "/ui/versions", "/ui/aliases", "/ui/playground"];

Deno.test({
  name: "dashboard routes: redirect, pages, offline assets, overview and file check APIs",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const root = await Deno.makeTempDir();
    const dir = await tinyLlama(root);
    const env = { MODEL: dir, DATA_DIR: `${root}/data`, DEVICE: "cpu", API_KEYS: "k1" };
    const services = await createServices(loadConfig(env), env, { logRequest: () => {} });
    const app = services.app;
    const auth = { Authorization: "Bearer k1" };
    try {
      await services.warm();

      await t.step("/ redirects browsers to /ui; API clients get the JSON 404", async () => {
        const html = await app.request("/", { headers: { Accept: "text/html,application/xhtml+xml" } });
        assert.equal(html.status, 302);
        assert.equal(html.headers.get("location"), "/ui");
        const json = await app.request("/", { headers: { Accept: "application/json" } });
        assert.equal(json.status, 404);
        assert.equal((await json.json()).error.code, "not_found");
      });

      await t.step("pages: open shells (no data) with a strict CSP, same-origin assets only", async () => {
        for (const path of PAGES) {
          const res = await app.request(path);
          assert.equal(res.status, 200, path);
          assert.match(res.headers.get("content-type") ?? "", /text\/html/);
          const csp = res.headers.get("content-security-policy") ?? "";
          assert.match(csp, /default-src 'self'/);
          assert.match(csp, /script-src 'self'(;|$)/);
          const body = await res.text();
          assert.ok(body.startsWith("<!DOCTYPE html>"), path);
          // API keys are required: the app is hidden behind the key prompt.
          assert.match(body, /data-auth="required"/);
          assert.match(body, /<div id="app" hidden/);
          // Every script, stylesheet and link points at this origin.
          for (const [, url] of body.matchAll(/(?:src|href)="([^"]*)"/g)) {
            assert.ok(url.startsWith("/") || url.startsWith("#") || url === "data:,", `${path}: ${url}`);
          }
          // Every control has a label: <input id=X> comes with <label for=X> or sits inside a label.
          for (const [, id] of body.matchAll(/<(?:input|select|textarea)[^>]*\bid="([^"]+)"/g)) {
            const inLabel = new RegExp(`<label[^>]*>(?:(?!</label>).)*id="${id}"`, "s").test(body);
            assert.ok(body.includes(`for="${id}"`) || inLabel, `${path}: #${id} has no label`);
          }
        }
      });

      await t.step("the new-job form shows the fine-tuning configuration's defaults", async () => {
        const body = await (await app.request("/ui/jobs/new")).text();
        assert.match(body, new RegExp(`id="hp-rank"[^>]*placeholder="${DEFAULTS.rank}"`));
        assert.match(body, new RegExp(`id="hp-interval"[^>]*placeholder="${DEFAULTS.interval}"`));
        assert.match(body, new RegExp(`id="hp-max_length"[^>]*placeholder="${DEFAULTS.maxLength}"`));
        assert.match(body, new RegExp(`<option value="${DEFAULTS.mergeSplit}" selected`));
        assert.match(body, new RegExp(`id="hp-lr_boost"[^>]*placeholder="${DEFAULTS.lrBoost}"`));
        assert.match(body, new RegExp(`<option value="${DEFAULTS.scaling}" selected`));
        for (const m of DEFAULTS.targetModules) assert.match(body, new RegExp(`value="${m}" checked`));
      });

      await t.step("assets: the client modules and uPlot's own dist files, nothing else", async () => {
        for (const name of ["app.js", "job.js", "charts.js", "style.css"]) {
          const res = await app.request(`/ui/assets/${name}`);
          assert.equal(res.status, 200, name);
          assert.match(res.headers.get("content-type") ?? "", name.endsWith(".js") ? /text\/javascript/ : /text\/css/);
          const text = await res.text();
          assert.ok(!/https?:\/\//.test(text.replace(/\/\/ .*$/gm, "")), `${name} names no remote URL`);
        }
        const uplot = await app.request("/ui/vendor/uPlot.iife.min.js");
        assert.equal(uplot.status, 200);
        assert.match(await uplot.text(), /uPlot/);
        assert.equal((await app.request("/ui/vendor/uPlot.min.css")).status, 200);
        for (const bad of ["/ui/assets/nope.js", "/ui/assets/..%2Fui_routes.tsx", "/ui/vendor/constructor"]) {
          assert.equal((await app.request(bad)).status, 404, bad);
        }
      });

      await t.step("GET /v1/dashboard: device, base models, engines and memory; behind the key", async () => {
        assert.equal((await app.request("/v1/dashboard")).status, 401);
        const res = await app.request("/v1/dashboard", { headers: auth });
        assert.equal(res.status, 200);
        const ov = await res.json();
        assert.equal(ov.object, "dashboard.overview");
        assert.equal(ov.device, "cpu");
        assert.equal(ov.dtype, "float32");
        assert.deepEqual(ov.base_models, [dir]);
        assert.equal(ov.engines.length, 1);
        assert.equal(ov.engines[0].model, dir);
        assert.ok(ov.engines[0].bytes > 0);
        assert.equal(ov.memory.used_bytes, ov.engines[0].bytes);
        assert.equal(ov.running_job, null);
      });

      await t.step("POST /v1/dashboard/check_file lists bad lines, or the values auto resolves to", async () => {
        const upload = async (text: string) => {
          const form = new FormData();
          form.append("purpose", "fine-tune");
          form.append("file", new File([text], "data.jsonl"));
          const r = await app.request("/v1/files", { method: "POST", body: form, headers: auth });
          assert.equal(r.status, 200);
          return (await r.json()).id as string;
        };
        const check = async (file: string, extra: Record<string, unknown> = {}) => {
          const r = await app.request("/v1/dashboard/check_file", {
            method: "POST",
            headers: { ...auth, "content-type": "application/json" },
            body: JSON.stringify({ file, model: dir, ...extra }),
          });
          return { status: r.status, json: await r.json() };
        };
        const good = JSON.stringify({
          messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "yo" }],
        });
        const bad = await upload(
          [good, "{oops", JSON.stringify({ messages: [{ role: "user", content: "x" }] })].join("\n"),
        );
        const b = await check(bad);
        assert.equal(b.status, 200);
        assert.equal(b.json.valid, false);
        assert.equal(b.json.issue_count, 2);
        assert.deepEqual(b.json.issues.map((i: { line: number; code: string }) => [i.line, i.code]), [
          [2, "invalid_json"],
          [3, "no_assistant_message"],
        ]);
        const ok = await upload(Array(10).fill(good).join("\n"));
        const g = await check(ok);
        assert.equal(g.json.valid, true, JSON.stringify(g.json));
        assert.equal(g.json.examples, 10);
        assert.equal(g.json.hyperparameters.n_epochs, 10, "auto: 100 examples-epochs");
        assert.equal(g.json.hyperparameters.rank, DEFAULTS.rank);
        // The job's own max_length: cut to 8 tokens, no example keeps an assistant token.
        const short = await check(ok, { max_length: 8 });
        assert.equal(short.json.valid, false);
        assert.equal(short.json.issue_count, 10);
        assert.ok(short.json.issues.every((i: { code: string }) => i.code === "no_trainable_tokens"));
        assert.equal((await check("file-nope")).status, 400);
        assert.equal((await check(ok, { model: "nope" })).json.error?.param, "model");
      });
    } finally {
      await services.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});
