/**
 * Eval-gated promotion: the pure decision (promotion_gate.ts), then the whole
 * service (src/services.ts) on a generated tiny model with the official
 * `openai` client: a well-trained job gated on an alias that serves the base
 * model wins and switches it; a barely-trained one loses to it and is
 * refused; both decisions carry both scores in a job event and in the alias
 * history; the candidate's score is the job's own `full_valid_loss` (the same
 * evaluation code); ScaLoRA's update rank grows past r; rollback skips refused rows; `PUT /v1/aliases/{name}`
 * with `evaluate` refuses and accepts the same way; bad gates are 400s.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import { decidePromotion } from "../src/registry/promotion_gate.ts";
import type { ModelScores, PromotionDecision } from "../src/registry/types.ts";
import { replyJsonl, startService, TRAIN_QUESTIONS, VALID_QUESTIONS } from "./helpers/service.ts";

const score = (model: string, loss: number, acc = 0.5): ModelScores => ({
  model,
  full_valid_loss: loss,
  full_valid_mean_token_accuracy: acc,
  tokens: 10,
});
const evalSet = { source: "test", examples: 1, tokens: 10 };

Deno.test("promotion gate: lower loss / higher accuracy wins, by min_improvement, against current or a threshold", () => {
  const gate = { metric: "full_valid_loss", mustBeat: "current", minImprovement: 0 } as const;
  const decide = (g: Parameters<typeof decidePromotion>[0]["gate"], c: ModelScores, i: ModelScores | null) =>
    decidePromotion({ alias: "prod", gate: g, candidate: c, incumbent: i, evalSet });
  assert.equal(decide(gate, score("a", 1.0), score("b", 1.5)).decision, "switched");
  assert.equal(decide(gate, score("a", 1.5), score("b", 1.0)).decision, "refused");
  assert.equal(decide(gate, score("a", 1.0), score("b", 1.0)).decision, "refused", "a tie keeps the alias");
  assert.equal(decide(gate, score("a", NaN), score("b", 1.0)).decision, "refused");
  assert.equal(decide(gate, score("a", 1.0), score("b", NaN)).decision, "switched");
  assert.equal(decide(gate, score("a", 2.0), null).decision, "switched", "no target: the candidate takes it");
  assert.equal(decide({ ...gate, minImprovement: 0.6 }, score("a", 1.0), score("b", 1.5)).decision, "refused");
  assert.equal(decide({ ...gate, minImprovement: 0.4 }, score("a", 1.0), score("b", 1.5)).decision, "switched");
  const acc = { metric: "full_valid_mean_token_accuracy", mustBeat: "current", minImprovement: 0 } as const;
  assert.equal(decide(acc, score("a", 9, 0.8), score("b", 1, 0.6)).decision, "switched");
  assert.equal(decide(acc, score("a", 1, 0.6), score("b", 9, 0.8)).decision, "refused");
  const threshold = { ...gate, mustBeat: 1.2 };
  const d = decide(threshold, score("a", 1.3), score("b", 5));
  assert.equal(d.decision, "refused", "a threshold is what counts, not the incumbent");
  assert.equal(d.threshold, 1.2);
  assert.deepEqual(d.incumbent, { model: "b", score: 5 });
  assert.equal(decide(threshold, score("a", 1.1), null).decision, "switched");
  assert.match(d.reason, /does not beat the threshold 1\.2/);
});

async function waitForJob(baseURL: string, jobId: string): Promise<void> {
  const res = await fetch(`${baseURL}/fine_tuning/jobs/${jobId}/events?stream=true`);
  // Read to the end: the stream closes once the job is terminal.
  await res.body!.pipeTo(new WritableStream());
}

Deno.test({
  name: "eval-gated promotion: a better job switches the alias, a worse one is refused; PUT evaluate does the same",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir();
    const srv = await startService(root);
    const { services, model: dir } = srv;
    const baseURL = `${srv.origin}/v1`;
    const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 300_000 });
    const api = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${baseURL}${path}`, {
        method,
        ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
      });
      return { status: res.status, json: await res.json() };
    };
    try {
      await services.warm();
      const upload = (name: string, text: string) =>
        client.files.create({ file: new File([text], name), purpose: "fine-tune" });
      const train = await upload("train.jsonl", replyJsonl(TRAIN_QUESTIONS));
      const valid = await upload("valid.jsonl", replyJsonl(VALID_QUESTIONS));

      // The alias serves the base model to begin with.
      assert.equal((await api("PUT", "/aliases/prod", { target: dir })).status, 200);

      const gatedJob = (suffix: string, hp: Record<string, unknown>) =>
        client.fineTuning.jobs.create({
          model: dir,
          training_file: train.id,
          validation_file: valid.id,
          suffix,
          seed: 3,
          method: { type: "supervised", supervised: { hyperparameters: { batch_size: 4, ...hp } } },
          // The gate rides at the top level, next to OpenAI's fields (Python: extra_body).
          ...{ promotion: { alias: "prod", metric: "full_valid_loss", must_beat: "current" } },
        });
      const promotionEvent = async (jobId: string) => {
        const events = await client.fineTuning.jobs.listEvents(jobId, { limit: 100 });
        const e = events.data.find((e) => (e.data as { promotion?: unknown } | null)?.promotion);
        assert.ok(e, "the decision is a job event");
        return { event: e, decision: (e.data as { promotion: PromotionDecision }).promotion };
      };

      // 1. A well-trained model beats the base model: the alias switches.
      const strong = await gatedJob("strong", { n_epochs: 5, learning_rate_multiplier: 50, interval: 1 });
      assert.deepEqual((strong as unknown as { promotion: unknown }).promotion, {
        alias: "prod",
        metric: "full_valid_loss",
        must_beat: "current",
        min_improvement: 0,
        eval_file: null,
      });
      await waitForJob(baseURL, strong.id);
      const strongDone = await client.fineTuning.jobs.retrieve(strong.id);
      assert.equal(strongDone.status, "succeeded", JSON.stringify(strongDone.error));
      const strongModel = strongDone.fine_tuned_model!;
      const won = await promotionEvent(strong.id);
      assert.equal(won.decision.decision, "switched", won.event.message);
      assert.equal(won.decision.candidate.model, strongModel);
      assert.equal(won.decision.incumbent?.model, dir);
      assert.ok(won.decision.candidate.score! < won.decision.incumbent!.score!, won.decision.reason);
      assert.deepEqual(won.decision.eval_set, {
        source: `validation_file ${valid.id}`,
        examples: VALID_QUESTIONS.length,
        tokens: won.decision.eval_set!.tokens,
      });
      assert.equal((await api("GET", "/aliases/prod")).json.target, strongModel);
      // The candidate's score is its own job's full_valid_loss: the same evaluation code and tokenization.
      const checkpoints = await client.fineTuning.jobs.checkpoints.list(strong.id);
      const final = checkpoints.data.reduce((a, b) => (a.step_number > b.step_number ? a : b));
      const reported = (final.metrics as { full_valid_loss: number }).full_valid_loss;
      assert.ok(
        Math.abs(won.decision.candidate.score! - reported) < 5e-3 * Math.max(1, reported),
        `gate ${won.decision.candidate.score} vs job ${reported}`,
      );

      // ScaLoRA's per-event stats: merges grow the update's rank past r (8) with interval 1.
      const metrics = (await client.fineTuning.jobs.listEvents(strong.id, { limit: 100 })).data
        .filter((e) => e.type === "metrics").map((e) => e.data as { step: number; scaling?: { update_rank: number } });
      const ranks = metrics.filter((m) => m.scaling).sort((a, b) => a.step - b.step).map((m) => m.scaling!.update_rank);
      assert.ok(ranks.length > 1 && ranks.at(-1)! > 8 && ranks.at(-1)! >= ranks[0], JSON.stringify(ranks));

      // 2. A barely-trained model loses to it: refused, the alias stays.
      const weak = await gatedJob("weak", { n_epochs: 1, learning_rate_multiplier: 0.01, scaling: "none" });
      await waitForJob(baseURL, weak.id);
      const weakDone = await client.fineTuning.jobs.retrieve(weak.id);
      assert.equal(weakDone.status, "succeeded", "a refused promotion does not fail the job");
      const weakModel = weakDone.fine_tuned_model!;
      const lost = await promotionEvent(weak.id);
      assert.equal(lost.decision.decision, "refused", lost.event.message);
      assert.equal(lost.event.level, "warn");
      assert.equal(lost.decision.incumbent?.model, strongModel);
      assert.ok(lost.decision.candidate.score! > lost.decision.incumbent!.score!);
      assert.equal((await api("GET", "/aliases/prod")).json.target, strongModel);
      assert.equal(services.coordinator.serving("prod"), strongModel);

      // Both decisions are in the alias history, with both scores.
      const history = (await api("GET", "/aliases/prod")).json.history as {
        action: string;
        target: string;
        previous: string | null;
        evaluation: PromotionDecision | null;
      }[];
      assert.deepEqual(history.map((h) => [h.action, h.target]), [
        ["refused", weakModel],
        ["set", strongModel],
        ["set", dir],
      ]);
      assert.equal(history[0].previous, strongModel);
      assert.equal(history[0].evaluation?.decision, "refused");
      assert.equal(history[0].evaluation?.candidate.score, lost.decision.candidate.score);
      assert.equal(history[1].evaluation?.decision, "switched");
      assert.equal(history[2].evaluation, null);

      // 3. "Evaluate, then switch" over PUT: the weak model is refused again, with its job's validation file.
      const put = await api("PUT", "/aliases/prod", { target: weakModel, evaluate: {} });
      assert.equal(put.status, 200, JSON.stringify(put.json));
      assert.equal(put.json.object, "model.alias.evaluation");
      assert.equal(put.json.evaluation.decision, "refused");
      assert.equal(put.json.changed, false);
      assert.equal(put.json.alias.target, strongModel);
      // A threshold it cannot reach refuses even the strong model (against the base, via rollback below).
      const unreachable = await api("PUT", "/aliases/prod", {
        target: dir,
        evaluate: { must_beat: 0, file: valid.id },
      });
      assert.equal(unreachable.json.evaluation.decision, "refused", JSON.stringify(unreachable.json));
      assert.equal(unreachable.json.evaluation.threshold, 0);
      assert.equal(unreachable.json.evaluation.eval_set.source, `eval_file ${valid.id}`);
      // Accuracy as the metric, against the current target: the base model does not beat the strong one.
      const byAccuracy = await api("PUT", "/aliases/prod", {
        target: dir,
        evaluate: { metric: "full_valid_mean_token_accuracy", file: valid.id },
      });
      assert.equal(byAccuracy.json.evaluation.decision, "refused", JSON.stringify(byAccuracy.json));

      // Rollback skips refused rows: back to the base model, the set before the strong one.
      const rolled = await api("POST", "/aliases/prod/rollback");
      assert.equal(rolled.status, 200, JSON.stringify(rolled.json));
      assert.equal(rolled.json.target, dir);
      // Now the weak model does beat what the alias serves (the base): evaluate, then switch accepts it.
      const accepted = await api("PUT", "/aliases/prod", { target: weakModel, evaluate: { file: valid.id } });
      assert.equal(accepted.json.evaluation.decision, "switched", JSON.stringify(accepted.json.evaluation));
      assert.equal(accepted.json.changed, true);
      assert.equal(accepted.json.alias.target, weakModel);
      assert.equal(services.coordinator.serving("prod"), weakModel);
      const again = await api("PUT", "/aliases/prod", { target: weakModel, evaluate: { file: valid.id } });
      assert.equal(again.json.evaluation.decision, "unchanged");

      // Bad gates are 400s naming the parameter.
      const bad = async (body: Record<string, unknown>, param: string) => {
        const r = await api("POST", "/fine_tuning/jobs", { model: dir, training_file: train.id, ...body });
        assert.equal(r.status, 400, JSON.stringify(r.json));
        assert.equal(r.json.error.param, param, JSON.stringify(r.json));
      };
      await bad({ promotion: { alias: "prod" } }, "promotion.eval_file");
      await bad({ validation_file: valid.id, promotion: { alias: "bad alias!" } }, "promotion.alias");
      await bad({ validation_file: valid.id, promotion: { alias: "prod", metric: "bleu" } }, "promotion.metric");
      await bad({ validation_file: valid.id, promotion: { alias: "prod", must_beat: "best" } }, "promotion.must_beat");
      await bad({ promotion: { alias: "prod", eval_file: "file-nope" } }, "promotion.eval_file");
      await bad({ validation_file: valid.id, promote_to_alias: "prod", promotion: { alias: "prod" } }, "promotion");
      const noData = await api("PUT", "/aliases/prod", { target: dir, evaluate: {} });
      assert.equal(noData.status, 400, JSON.stringify(noData.json));
      assert.equal(noData.json.error.param, "evaluate.file");
      const badFile = await upload("bad.jsonl", "not json\n");
      const badData = await api("PUT", "/aliases/prod", { target: dir, evaluate: { file: badFile.id } });
      assert.equal(badData.status, 400, JSON.stringify(badData.json));
      assert.equal(badData.json.error.code, "invalid_evaluation");
      assert.match(badData.json.error.message, /line 1/);
    } finally {
      await srv.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});
