/**
 * The dashboard's page shell (server-rendered Hono JSX): head with the
 * project's stylesheet and the page's script module (and uPlot's own dist
 * files where a page draws charts), a skip link, the API-key prompt, the main
 * navigation and the page. Pages carry no data: each page's module fetches it
 * from the API with the key as a Bearer header, so with API_KEYS set the
 * shell stays hidden behind the prompt until a key is accepted.
 */
import type { Child } from "hono/jsx";

export const PAGES = [
  { id: "overview", href: "/ui", label: "Overview" },
  { id: "jobs", href: "/ui/jobs", label: "Jobs" },
  { id: "new_job", href: "/ui/jobs/new", label: "New job" },
  { id: "versions", href: "/ui/versions", label: "Versions" },
  { id: "aliases", href: "/ui/aliases", label: "Aliases" },
  { id: "playground", href: "/ui/playground", label: "Playground" },
] as const;

export type PageId = typeof PAGES[number]["id"] | "job";

/** Every page id: each page loads the module `/ui/assets/<id>.js` (Layout). */
export const PAGE_IDS: readonly PageId[] = [...PAGES.map((p) => p.id), "job"];

export interface LayoutProps {
  title: string;
  page: PageId;
  /** API_KEYS is set: the page shows only the key prompt until a key works. */
  authRequired: boolean;
  /** The page draws uPlot charts. */
  charts?: boolean;
  children?: Child;
}

export function Layout(props: LayoutProps) {
  const current = props.page === "job" ? "jobs" : props.page;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{props.title} · ScaLoRA Server</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href="/ui/assets/style.css" />
        {props.charts && <link rel="stylesheet" href="/ui/vendor/uPlot.min.css" />}
        {props.charts && <script src="/ui/vendor/uPlot.iife.min.js"></script>}
        <script type="module" src={`/ui/assets/${props.page}.js`}></script>
      </head>
      <body data-auth={props.authRequired ? "required" : "open"} data-page={props.page}>
        <a class="skip" href="#main">Skip to content</a>
        <div id="key-gate" hidden>
          <form id="key-form" class="card key-card" aria-labelledby="key-title">
            <h1 id="key-title">ScaLoRA Server</h1>
            <p>This server requires an API key. It is kept for this browser tab and sent as a Bearer header.</p>
            <label for="api-key">API key</label>
            <input id="api-key" name="api-key" type="password" autocomplete="off" required />
            <button type="submit">Continue</button>
            <p id="key-error" class="error" role="alert"></p>
          </form>
        </div>
        <div id="app" hidden={props.authRequired}>
          <header class="topbar">
            <span class="brand">ScaLoRA</span>
            <nav aria-label="Main">
              <ul>
                {PAGES.map((p) => (
                  <li>
                    <a href={p.href} aria-current={p.id === current ? "page" : undefined}>{p.label}</a>
                  </li>
                ))}
              </ul>
            </nav>
            {props.authRequired && <button type="button" id="forget-key" class="secondary">Forget key</button>}
          </header>
          <main id="main" tabindex={-1}>
            {props.children}
          </main>
          <p id="status" class="status" role="status" aria-live="polite"></p>
        </div>
      </body>
    </html>
  );
}
