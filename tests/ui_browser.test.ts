/**
 * The dashboard in a real headless Chromium (tests/helpers/browser.ts),
 * against the whole service (src/services.ts) on a generated tiny model:
 *
 * 0. `deno task start` (its command, from deno.json), then /ui: the overview
 *    shows the server with no console errors.
 * 1. `/` redirects a browser to /ui; the overview shows the server with no
 *    console errors (asserted for every page of the flow).
 * 2. New job: a file dropped on the drop zone is uploaded and its bad lines
 *    are listed per line before anything starts; good files enable Start;
 *    the job page's loss chart gains points while the job trains; the
 *    version appears on the versions page.
 * 3. Aliases: switch (with the validation result), chat through the alias in
 *    the playground (streamed, the same text the API gives; side by side
 *    with the base), one-click rollback.
 * 4. Eval-gated promotion: "evaluate, then switch" accepts the better model;
 *    a worse job gated on the alias is refused, with both scores on its page
 *    and in the alias history. Pause, resume and cancel from a job's page.
 * 5. Keyboard navigation (skip link, menu, Enter to send) and a label on
 *    every control of every page.
 * 6. With API_KEYS the pages show only the key prompt until a key works, and
 *    the key goes as a Bearer header, never in a URL.
 *
 * SCALORA_SCREENSHOTS=<dir> saves screenshots of the main pages there (the
 * README's come from `SCALORA_SCREENSHOTS=docs/screenshots`).
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { browserTest, launchChromium } from "./helpers/browser.ts";
import { ChildProcess } from "./helpers/child_process.ts";
import {
  REPLY,
  replyJsonl,
  startService,
  type TestService,
  tinyLlama,
  TRAIN_QUESTIONS,
  VALID_QUESTIONS,
} from "./helpers/service.ts";

const BAD = [
  JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: REPLY }] }),
  "this line is not JSON",
  JSON.stringify({ messages: [{ role: "user", content: "no answer here" }] }),
].join("\n") + "\n";

const SCREENSHOTS = Deno.env.get("SCALORA_SCREENSHOTS");
const LONG = 240_000;

/** The service, warmed up (its engines loaded). */
async function startServer(root: string, extraEnv: Record<string, string> = {}): Promise<TestService> {
  const srv = await startService(root, extraEnv);
  await srv.services.warm();
  return srv;
}

/** Console errors and uncaught page errors, collected for the whole flow. */
function watchConsole(page: Page, allow: RegExp[] = []): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !allow.some((re) => re.test(m.text()))) errors.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
  return errors;
}

async function screenshot(page: Page, name: string): Promise<void> {
  if (!SCREENSHOTS) return;
  await Deno.mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });
}

/** Drops a file on a drop zone the way a user's drag and drop does (a DataTransfer with a File). */
async function dropFile(page: Page, zone: string, name: string, text: string): Promise<void> {
  // Page code as a string: these tests type-check without the DOM library.
  const transfer = await page.evaluateHandle(`(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([${JSON.stringify(text)}], ${JSON.stringify(name)}, { type: "application/jsonl" }));
    return dt;
  })()`);
  await page.locator(zone).dispatchEvent("dragover", { dataTransfer: transfer });
  await page.locator(zone).dispatchEvent("drop", { dataTransfer: transfer });
}

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).textContent())?.trim() ?? "";
}

/** Fills the new-job form (files already checked) and starts it; resolves with the job id from the job page. */
async function startJob(page: Page, fields: Record<string, string>, promotion?: { alias: string }): Promise<string> {
  for (const [name, value] of Object.entries(fields)) await page.locator(`#new-job [name=${name}]`).fill(value);
  if (promotion) await page.locator("#promote-alias").fill(promotion.alias);
  await page.locator("#start-job").click();
  await page.waitForURL(/\/ui\/jobs\/ftjob-/);
  return await text(page, "#job-id");
}

async function waitForStatus(page: Page, status: string): Promise<void> {
  await page.locator("#job-status").filter({ hasText: status }).waitFor({ timeout: LONG });
}

/** Every form control on the page that has no accessible name (label, aria-label, aria-labelledby, text). */
function unlabelled(page: Page): Promise<string[]> {
  return page.evaluate(`(() => {
    const bad = [];
    for (const e of document.querySelectorAll("input, select, textarea, button, a[href]")) {
      const labelled = (e.labels?.length ?? 0) > 0 || e.getAttribute("aria-label") ||
        e.getAttribute("aria-labelledby") || (e.textContent ?? "").trim().length > 0;
      if (!labelled) bad.push(e.outerHTML.slice(0, 120));
    }
    return bad;
  })()`);
}

/** The focused element's id and text. */
function focused(page: Page): Promise<{ id: string; text: string }> {
  return page.evaluate(`({ id: document.activeElement?.id ?? "", text: document.activeElement?.textContent ?? "" })`);
}

browserTest("deno task start, then /ui shows the overview with no console errors", async () => {
  const root = await Deno.makeTempDir();
  const dir = await tinyLlama(root);
  // The start task's own command line (deno.json), run with this Deno.
  const tasks = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url))).tasks;
  const [deno, ...args] = (tasks.start as string).split(/\s+/);
  assert.equal(deno, "deno");
  const server = new ChildProcess("start", args, {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    MODEL: dir,
    DATA_DIR: `${root}/data`,
    DEVICE: "cpu",
    HOST: "127.0.0.1",
    PORT: "0",
  });
  const browser = await launchChromium();
  try {
    const base = `http://127.0.0.1:${await server.port()}`;
    for (
      let i = 0;
      i < 600 && (await fetch(`${base}/ready`).then((r) => r.body?.cancel().then(() => r.status))) !== 200;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const page = await browser.newPage();
    const errors = watchConsole(page);
    await page.goto(`${base}/ui`);
    await page.locator("#ov-status").filter({ hasText: "ready" }).waitFor({ timeout: 60_000 });
    await page.locator("#ov-device").filter({ hasText: "cpu" }).waitFor();
    await page.locator("#engines tbody tr", { hasText: dir }).waitFor();
    await page.locator("#ov-rps").filter({ hasText: /^\d/ }).waitFor();
    assert.deepEqual(errors, [], server.log(40));
  } finally {
    await browser.close();
    await server.kill("SIGTERM");
    await Deno.remove(root, { recursive: true });
  }
});

const PAGES = ["/ui", "/ui/jobs", "/ui/jobs/new", "/ui/versions", "/ui/aliases", "/ui/playground"];

browserTest(
  "dashboard flow: upload, live training, versions, alias switch, playground, rollback, gated promotion, keyboard and labels",
  async (t) => {
    const root = await Deno.makeTempDir();
    const srv = await startServer(root);
    const browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(60_000);
    const errors = watchConsole(page);
    const api = async (path: string, init?: RequestInit) => {
      const res = await fetch(`${srv.origin}${path}`, init);
      assert.ok(res.ok, `${path}: ${res.status} ${await res.clone().text()}`);
      return await res.json();
    };
    try {
      await t.step("/ redirects a browser to the overview, which shows the server without console errors", async () => {
        await page.goto(`${srv.origin}/`);
        assert.equal(new URL(page.url()).pathname, "/ui");
        await page.locator("#ov-status").filter({ hasText: "ready" }).waitFor();
        // The device comes from a second request (/v1/dashboard) after /ready: wait for it, do not race it.
        await page.locator("#ov-device").filter({ hasText: "cpu (float32)" }).waitFor();
        assert.equal(await text(page, "#ov-bases"), srv.model);
        await page.locator("#engines tbody tr", { hasText: srv.model }).waitFor();
        // Rates need two scrapes of /metrics.
        await page.locator("#ov-rps").filter({ hasText: /^\d/ }).waitFor();
        await screenshot(page, "overview");
        assert.deepEqual(errors, []);
      });

      let strongJob = "";
      await t.step("new job: a dropped file's bad lines are listed per line; good files start a job", async () => {
        await page.locator("nav >> text=New job").click();
        await page.waitForURL(/\/ui\/jobs\/new$/);
        await page.locator("#base-model option").first().waitFor({ state: "attached" });
        // The defaults shown come from the fine-tuning configuration.
        assert.equal(await page.locator("#hp-rank").getAttribute("placeholder"), "8");
        assert.equal(await page.locator("#hp-interval").getAttribute("placeholder"), "10");
        assert.equal(await page.locator("#method").inputValue(), "column");
        assert.equal(await page.locator("#hp-merge-split").inputValue(), "larger");
        assert.equal(await page.locator("#hp-lr_boost").getAttribute("placeholder"), "2");

        await dropFile(page, "#training-drop", "bad.jsonl", BAD);
        const issues = page.locator("#training-issues tbody tr");
        await issues.first().waitFor();
        const rows = await issues.allTextContents();
        assert.equal(rows.length, 2, rows.join(" | "));
        assert.match(rows[0], /^2\s*invalid_json/);
        assert.match(rows[1], /^3\s*no_assistant_message/);
        assert.equal(await page.locator("#start-job").isDisabled(), true, "Start stays disabled while lines are bad");
        await screenshot(page, "new_job");

        await dropFile(page, "#training-drop", "train.jsonl", replyJsonl(TRAIN_QUESTIONS));
        await page.locator("#training-check .ok").waitFor();
        assert.match(await text(page, "#training-check"), /8 examples/);
        assert.match(await text(page, "#auto-values"), /auto means \d+ epochs/);
        await dropFile(page, "#validation-drop", "valid.jsonl", replyJsonl(VALID_QUESTIONS));
        await page.locator("#validation-check .ok").waitFor();
        await page.locator("#start-job:not([disabled])").waitFor();
        // 12 epochs of 4 batches: 48 steps, enough for the page to see the curve grow.
        strongJob = await startJob(page, {
          n_epochs: "12",
          batch_size: "2",
          learning_rate_multiplier: "50",
          interval: "1",
          lr_boost: "1",
          checkpoint_every: "16",
          suffix: "strong",
          seed: "3",
        });
        assert.match(strongJob, /^ftjob-/);
        const hp = (await api(`/v1/fine_tuning/jobs/${strongJob}`)).hyperparameters as Record<string, unknown>;
        assert.equal(hp.lr_boost, 1, "the form's lr boost cap reaches the job");
      });

      await t.step("the job page's loss chart gains points while it trains", async () => {
        const seen: number[] = [];
        const deadline = Date.now() + LONG;
        for (;;) {
          const status = await text(page, "#job-status");
          const points = Number(await page.locator("#loss-chart").getAttribute("data-points"));
          if (status === "running" && points > 0 && seen.at(-1) !== points) seen.push(points);
          if (["succeeded", "failed", "cancelled"].includes(status) || Date.now() > deadline) break;
          await page.waitForTimeout(100);
        }
        assert.ok(seen.length >= 2 && seen.at(-1)! > seen[0], `points seen while running: ${seen}`);
        await waitForStatus(page, "succeeded");
        // The whole curve: one point per step, validation points at the checkpoints, ScaLoRA's stats.
        await page.locator("#loss-chart[data-points='48']").waitFor();
        assert.ok(Number(await page.locator("#scalora-chart").getAttribute("data-points")) >= 40);
        assert.match(await text(page, "#job-step"), /^48 \/ 48$/);
        assert.notEqual(await text(page, "#job-lr"), "–");
        assert.notEqual(await text(page, "#job-tps"), "–");
        assert.ok(Number(await text(page, "#sc-rank")) > 8, "merges grew the update's rank past r");
        await page.locator("#checkpoints tbody tr", { hasText: ":ckpt-step-16" }).waitFor();
        assert.ok((await page.locator("#events tbody tr").count()) > 48);
        await page.locator("#job-cancel[disabled]").waitFor();
        await screenshot(page, "job");
      });

      const strongModel = (await api(`/v1/fine_tuning/jobs/${strongJob}`)).fine_tuned_model as string;
      await t.step("the version appears on the versions page", async () => {
        await page.locator("nav >> text=Versions").click();
        const versionRow = page.locator("#versions tbody tr", { hasText: strongModel });
        await versionRow.waitFor();
        assert.match((await versionRow.textContent())!, new RegExp(strongJob));
        assert.match((await versionRow.textContent())!, /final/);
        await page.locator("#show-checkpoints").check();
        await page.locator("#versions tbody tr", { hasText: ":ckpt-step-16" }).waitFor();
        await page.locator(`button[aria-label="Export ${strongModel} as HF"]`).click();
        await page.locator("#export-result button", { hasText: "Download model.safetensors" }).waitFor({
          timeout: LONG,
        });
        await page.locator("#show-checkpoints").uncheck();
        await screenshot(page, "versions");
      });

      const switchTo = async (target: string, gated: boolean) => {
        await page.locator("#alias-name").fill("prod");
        await page.locator("#alias-target").selectOption(target);
        await page.locator(gated ? "#switch-gated" : "#switch-now").click();
        await page.locator("#switch-result p").first().waitFor({ timeout: LONG });
        return await text(page, "#switch-result");
      };

      await t.step("aliases: switch shows the validation result", async () => {
        await page.locator("nav >> text=Aliases").click();
        await page.locator(`#alias-target option[value="${strongModel}"]`).waitFor({ state: "attached" });
        assert.match(await switchTo(srv.model, false), new RegExp(`prod now serves ${srv.model}`));
        const result = await switchTo(strongModel, false);
        assert.match(result, new RegExp(`prod now serves ${strongModel.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
        assert.match(result, /Validated before the switch: loaded in .* ms, checked/);
        await page.locator("#aliases tbody tr", { hasText: strongModel }).waitFor();
        assert.equal(srv.services.coordinator.serving("prod"), strongModel);
      });

      const chatApi = async (model: string, content: string) =>
        (await api("/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model, messages: [{ role: "user", content }], temperature: 0, max_tokens: 16 }),
        })).choices[0].message.content as string;

      await t.step("playground: chat through the alias, streamed, side by side with the base model", async () => {
        await page.goto(`${srv.origin}/ui/playground?model=prod`);
        await page.locator('#model-a option[value="prod"]').waitFor({ state: "attached" });
        assert.equal(await page.locator("#model-a").inputValue(), "prod");
        await page.locator("#compare").check();
        await page.locator("#model-b").selectOption(srv.model);
        await page.locator("#temperature").fill("0");
        await page.locator("#max-tokens").fill("16");
        // The keyboard way: type the message and press Enter.
        await page.locator("#prompt").focus();
        await page.keyboard.type(TRAIN_QUESTIONS[0]);
        await page.keyboard.press("Enter");
        await page.locator("#usage-a").filter({ hasText: "completion tokens" }).waitFor();
        await page.locator("#usage-b").filter({ hasText: "completion tokens" }).waitFor();
        const a = await page.locator("#chat-a .msg.assistant p").first().textContent();
        const b = await page.locator("#chat-b .msg.assistant p").first().textContent();
        assert.equal(a, await chatApi(strongModel, TRAIN_QUESTIONS[0]), "the alias serves the fine-tuned model");
        assert.equal(b, await chatApi(srv.model, TRAIN_QUESTIONS[0]));
        assert.notEqual(a, b);
        await screenshot(page, "playground");
      });

      await t.step("one-click rollback", async () => {
        await page.locator("nav >> text=Aliases").click();
        await page.locator('button[aria-label="Roll back prod"]').click();
        await page.locator("#switch-result", { hasText: `prod rolled back to ${srv.model}` }).waitFor();
        assert.equal(srv.services.coordinator.serving("prod"), srv.model);
        await page.locator("#aliases tbody tr td", { hasText: srv.model }).first().waitFor();
      });

      await t.step("gated promotion: evaluate, then switch accepts the better model", async () => {
        const result = await switchTo(strongModel, true);
        assert.match(result, /^switched/, result);
        assert.match(result, new RegExp(`Current ${srv.model.replaceAll("/", "\\/")}`));
        assert.equal(srv.services.coordinator.serving("prod"), strongModel);
      });

      await t.step("gated promotion: a worse job gated on the alias is refused, with both scores shown", async () => {
        await page.locator("nav >> text=New job").click();
        await page.locator("#base-model option").first().waitFor({ state: "attached" });
        await dropFile(page, "#training-drop", "train.jsonl", replyJsonl(TRAIN_QUESTIONS));
        await dropFile(page, "#validation-drop", "valid.jsonl", replyJsonl(VALID_QUESTIONS));
        await page.locator("#training-check .ok").waitFor();
        await page.locator("#validation-check .ok").waitFor();
        await page.locator("#method").selectOption("none");
        await startJob(page, {
          n_epochs: "1",
          batch_size: "4",
          learning_rate_multiplier: "0.01",
          suffix: "weak",
          seed: "3",
        }, { alias: "prod" });
        await waitForStatus(page, "succeeded");
        await page.locator("#promotion .decision.refused").waitFor();
        const panel = await text(page, "#promotion");
        assert.match(panel, /Candidate \(full_valid_loss\)ft:.*:weak:.*: \d/);
        assert.match(panel, new RegExp(`Current target${strongModel.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&")}: \\d`));
        assert.equal(srv.services.coordinator.serving("prod"), strongModel, "the worse model did not take the alias");

        await page.locator("nav >> text=Aliases").click();
        await page.locator("#history-alias").selectOption("prod");
        const refused = page.locator("#history tbody tr", { hasText: "refused" });
        await refused.waitFor();
        assert.match(
          (await refused.textContent())!,
          /refused: full_valid_loss [\d.]+ \(candidate\) vs ft:.*strong.* [\d.]+/,
        );
        await page.locator("#history tbody tr", { hasText: "switched: full_valid_loss" }).waitFor();
        await screenshot(page, "aliases");
      });

      await t.step("pause, resume and cancel from the job page", async () => {
        await page.locator("nav >> text=New job").click();
        await page.locator("#base-model option").first().waitFor({ state: "attached" });
        await dropFile(page, "#training-drop", "train.jsonl", replyJsonl(TRAIN_QUESTIONS));
        await page.locator("#training-check .ok").waitFor();
        // 8 examples x 50 epochs, one per step: long enough to pause.
        await startJob(page, { n_epochs: "50", batch_size: "1", checkpoint_every: "0", suffix: "long", seed: "3" });
        await waitForStatus(page, "running");
        await page.locator("#job-pause:not([disabled])").click();
        await waitForStatus(page, "paused");
        await page.locator("#events tbody tr", { hasText: "Training paused at step" }).waitFor({ timeout: LONG });
        await page.locator("#job-resume:not([disabled])").click();
        await waitForStatus(page, "running");
        await page.locator("#events tbody tr", { hasText: "continuing from its latest checkpoint" }).waitFor();
        await page.locator("#job-cancel:not([disabled])").click();
        await waitForStatus(page, "cancelled");
        assert.equal(await page.locator("#job-pause").isDisabled(), true);
        assert.equal(await page.locator("#job-cancel").isDisabled(), true);
      });

      await t.step("keyboard: skip link, the menu, and every control labelled on every page", async () => {
        await page.goto(`${srv.origin}/ui`);
        await page.keyboard.press("Tab");
        assert.equal((await focused(page)).text, "Skip to content");
        await page.keyboard.press("Enter");
        assert.equal((await focused(page)).id, "main");
        await page.goto(`${srv.origin}/ui`);
        await page.keyboard.press("Tab"); // the skip link
        await page.keyboard.press("Tab"); // Overview
        await page.keyboard.press("Tab"); // Jobs
        assert.equal((await focused(page)).text, "Jobs");
        await page.keyboard.press("Enter");
        await page.waitForURL(/\/ui\/jobs$/);
        await page.locator("#jobs tbody tr a").first().waitFor();
        // The job links are reachable by Tab and open with Enter.
        let reached = false;
        for (let i = 0; i < 20 && !reached; i++) {
          await page.keyboard.press("Tab");
          reached = (await focused(page)).text.startsWith("ftjob-");
        }
        assert.ok(reached, "a job link is reachable with Tab");
        await page.keyboard.press("Enter");
        await page.waitForURL(/\/ui\/jobs\/ftjob-/);

        for (const path of [...PAGES, `/ui/jobs/${strongJob}`]) {
          await page.goto(`${srv.origin}${path}`);
          await page.waitForLoadState("networkidle").catch(() => {});
          assert.deepEqual(await unlabelled(page), [], `unlabelled controls on ${path}`);
        }
        // The file inputs of the new-job page are reachable from the keyboard.
        await page.goto(`${srv.origin}/ui/jobs/new`);
        let file = false;
        for (let i = 0; i < 15 && !file; i++) {
          await page.keyboard.press("Tab");
          file = (await focused(page)).id === "training-file";
        }
        assert.ok(file, "the training file input is reachable with Tab");
      });

      await t.step("no console errors on any page of the flow", () => {
        assert.deepEqual(errors, []);
      });
    } finally {
      await browser.close();
      await srv.close();
      await Deno.remove(root, { recursive: true });
    }
  },
);

browserTest(
  "with API_KEYS the dashboard shows only the key prompt, then sends the key as a Bearer header",
  async () => {
    const root = await Deno.makeTempDir();
    const srv = await startServer(root, { API_KEYS: "sk-ui-test" });
    const browser = await launchChromium();
    const page = await browser.newPage();
    // A rejected key is a 401 the browser logs; nothing else may be.
    const errors = watchConsole(page, [/status of 401/]);
    const requests: { url: string; auth: string | undefined }[] = [];
    page.on("request", (r) => requests.push({ url: r.url(), auth: r.headers()["authorization"] }));
    try {
      await page.goto(`${srv.origin}/ui`);
      await page.locator("#api-key").waitFor();
      assert.equal(await page.locator("#app").isVisible(), false, "nothing but the prompt");
      assert.equal(await page.locator("nav").isVisible(), false);
      assert.equal((await focused(page)).id, "api-key");
      assert.deepEqual(
        requests.filter((r) => new URL(r.url).pathname.startsWith("/v1/")),
        [],
        "no API call without a key",
      );

      await page.locator("#api-key").fill("wrong");
      await page.keyboard.press("Enter");
      await page.locator("#key-error", { hasText: "not accepted" }).waitFor();
      assert.equal(await page.locator("#app").isVisible(), false);

      await page.locator("#api-key").fill("sk-ui-test");
      await page.keyboard.press("Enter");
      await page.locator("#ov-status").filter({ hasText: "ready" }).waitFor();
      await page.locator("#ov-device").filter({ hasText: "cpu" }).waitFor();
      assert.equal(await page.locator("#key-gate").isVisible(), false);
      // Asked once: the next page uses the same key.
      await page.locator("nav >> text=Aliases").click();
      await page.locator("#alias-target option").first().waitFor({ state: "attached" });
      assert.equal(await page.locator("#key-gate").isVisible(), false);

      const apiCalls = requests.filter((r) => new URL(r.url).pathname.startsWith("/v1/"));
      assert.ok(apiCalls.length > 3);
      assert.ok(apiCalls.slice(1).every((r) => r.auth === "Bearer sk-ui-test"), JSON.stringify(apiCalls));
      assert.ok(requests.every((r) => !r.url.includes("sk-ui-test")), "the key never appears in a URL");
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await srv.close();
      await Deno.remove(root, { recursive: true });
    }
  },
);
