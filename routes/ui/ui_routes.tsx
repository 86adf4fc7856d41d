/**
 * The dashboard at /ui, served by the same Hono app as the API and fully
 * offline: the pages are server-rendered JSX (pages.tsx in layout.tsx), the
 * client code is plain ES modules from routes/ui/assets/ (no build step), and
 * the charts are uPlot's own dist files from its npm package. A strict
 * Content-Security-Policy keeps every script, style and connection on this
 * origin. `GET /` redirects browsers (Accept: text/html) here.
 *
 * The pages themselves hold no data and are open; everything they show comes
 * from /v1 with the key the user typed, as a Bearer header (assets/app.js).
 */
import { createRequire } from "node:module";
import { Hono } from "hono";
import type { Context } from "hono";
import { html } from "hono/html";
import type { Child } from "hono/jsx";
import type { AppEnv } from "../app_env.ts";
import { ApiError } from "../errors.ts";
import { Layout, PAGE_IDS, type PageId } from "./layout.tsx";
import { AliasesPage, JobPage, JobsPage, NewJobPage, OverviewPage, PlaygroundPage, VersionsPage } from "./pages.tsx";

export interface UiDeps {
  /** API_KEYS is set: pages show only the key prompt until a key works. */
  authRequired: boolean;
}

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const TYPES: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

const ASSETS_DIR = new URL("./assets/", import.meta.url);
/** The client modules and stylesheet: only these names are served (the shared modules, one per page, the CSS). */
const ASSETS = ["app.js", "charts.js", ...PAGE_IDS.map((id) => `${id}.js`), "style.css"];
/** uPlot's own dist files, from its npm package. */
const VENDOR: Record<string, string> = {
  "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
  "uPlot.min.css": "uplot/dist/uPlot.min.css",
};

/** Files are read on first request (no I/O at import) and kept. */
const cache = new Map<string, Promise<Uint8Array>>();
function readOnce(key: string, path: () => string | URL): Promise<Uint8Array> {
  let hit = cache.get(key);
  if (!hit) {
    hit = Deno.readFile(path());
    hit.catch(() => cache.delete(key));
    cache.set(key, hit);
  }
  return hit;
}

const notFound = (c: Context) =>
  new ApiError(404, `Unknown route ${c.req.method} ${c.req.path}`, "invalid_request_error", null, "not_found");

function typeOf(name: string): string {
  return TYPES[name.slice(name.lastIndexOf(".") + 1)] ?? "application/octet-stream";
}

export function uiRoutes(deps: UiDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const page = (c: Context, title: string, id: PageId, body: Child, charts = false) => {
    c.header("Content-Security-Policy", CSP);
    c.header("Cache-Control", "no-store");
    const layout = (
      <Layout title={title} page={id} authRequired={deps.authRequired} charts={charts}>
        {body}
      </Layout>
    );
    return c.html(html`<!DOCTYPE html>${layout}`);
  };

  // A browser opening the server's root lands on the dashboard; API clients keep the JSON 404.
  app.get("/", (c) => {
    if ((c.req.header("accept") ?? "").includes("text/html")) return c.redirect("/ui", 302);
    throw notFound(c);
  });
  app.get("/ui", (c) => page(c, "Overview", "overview", <OverviewPage />));
  app.get("/ui/", (c) => c.redirect("/ui", 301));
  app.get("/ui/jobs", (c) => page(c, "Jobs", "jobs", <JobsPage />));
  app.get("/ui/jobs/new", (c) => page(c, "New job", "new_job", <NewJobPage />));
  app.get("/ui/jobs/:id", (c) => {
    const id = c.req.param("id");
    return page(c, `Job ${id}`, "job", <JobPage jobId={id} />, true);
  });
  app.get("/ui/versions", (c) => page(c, "Versions", "versions", <VersionsPage />));
  app.get("/ui/aliases", (c) => page(c, "Aliases", "aliases", <AliasesPage />));
  app.get("/ui/playground", (c) => page(c, "Playground", "playground", <PlaygroundPage />));

  app.get("/ui/assets/:name", async (c) => {
    const name = c.req.param("name");
    if (!ASSETS.includes(name)) throw notFound(c);
    const body = await readOnce(`asset:${name}`, () => new URL(name, ASSETS_DIR));
    return c.body(body as Uint8Array<ArrayBuffer>, 200, { "Content-Type": typeOf(name), "Cache-Control": "no-cache" });
  });
  app.get("/ui/vendor/:name", async (c) => {
    const name = c.req.param("name");
    if (!Object.hasOwn(VENDOR, name)) throw notFound(c);
    const spec = VENDOR[name];
    const body = await readOnce(`vendor:${name}`, () => createRequire(import.meta.url).resolve(spec));
    return c.body(body as Uint8Array<ArrayBuffer>, 200, {
      "Content-Type": typeOf(name),
      "Cache-Control": "public, max-age=86400",
    });
  });
  return app;
}
