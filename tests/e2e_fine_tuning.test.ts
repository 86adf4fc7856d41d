/**
 * End to end through the whole service (src/services.ts, as main.ts runs it)
 * with the official `openai` client: upload a JSONL that teaches a distinctive
 * reply, fine-tune with ScaLoRA (column-wise scaling), stream the job's
 * events, chat with the fine-tuned model, then point an alias at it and roll
 * the alias back to the base model.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import { REPLY, replyJsonl, startService, TRAIN_QUESTIONS } from "./helpers/service.ts";

async function chat(client: OpenAI, model: string, content: string): Promise<string> {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content }],
    temperature: 0,
    max_tokens: 16,
  });
  return r.choices[0].message.content ?? "";
}

async function readEvents(baseURL: string, jobId: string): Promise<{ type: string; data: unknown }[]> {
  const res = await fetch(`${baseURL}/fine_tuning/jobs/${jobId}/events?stream=true`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const events: { type: string; data: unknown }[] = [];
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body!) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data === "[DONE]") return events;
      if (data) events.push(JSON.parse(data));
    }
  }
  return events;
}

Deno.test({
  name: "e2e fine-tuning: upload, ScaLoRA job, events, fine-tuned model, alias switch and rollback",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir();
    const srv = await startService(root);
    const { services, model: dir } = srv;
    const baseURL = `${srv.origin}/v1`;
    const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
    try {
      await services.warm();
      const before = await chat(client, dir, TRAIN_QUESTIONS[0]);
      assert.ok(!before.startsWith(REPLY), `the base model already answers ${JSON.stringify(before)}`);

      const file = await client.files.create({
        file: new File([replyJsonl(TRAIN_QUESTIONS)], "pineapple.jsonl"),
        purpose: "fine-tune",
      });
      const job = await client.fineTuning.jobs.create({
        model: dir,
        training_file: file.id,
        suffix: "pineapple",
        seed: 1,
        method: {
          type: "supervised",
          supervised: {
            hyperparameters: {
              n_epochs: 30,
              batch_size: 4,
              learning_rate_multiplier: 50,
              // ScaLoRA extras ride in the same object (see README).
              ...{ scaling: "column", rank: 8, interval: 1 },
            },
          },
        },
      });
      const events = await readEvents(baseURL, job.id);
      assert.ok(events.some((e) => e.type === "metrics"), "metrics events were streamed");

      const done = await client.fineTuning.jobs.retrieve(job.id);
      assert.equal(done.status, "succeeded", JSON.stringify(done.error));
      const ftModel = done.fine_tuned_model!;
      assert.match(ftModel, /^ft:.*:pineapple:/);
      const models = (await client.models.list()).data.map((m) => m.id);
      assert.ok(models.includes(ftModel));

      // The learned behaviour, on a question it was trained on and one it was not.
      assert.equal(await chat(client, ftModel, TRAIN_QUESTIONS[0]), REPLY);
      assert.equal(await chat(client, ftModel, "Where is the station?"), REPLY);
      assert.equal(await chat(client, dir, TRAIN_QUESTIONS[0]), before);

      const alias = async (method: string, path: string, body?: unknown) => {
        const res = await fetch(`${baseURL}/aliases/${path}`, {
          method,
          ...(body === undefined
            ? {}
            : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
        });
        const json = await res.json();
        assert.equal(res.status, 200, JSON.stringify(json));
        return json;
      };
      await alias("PUT", "prod", { target: dir });
      assert.equal(await chat(client, "prod", TRAIN_QUESTIONS[0]), before);
      await alias("PUT", "prod", { target: ftModel });
      assert.equal(await chat(client, "prod", TRAIN_QUESTIONS[0]), REPLY);
      await alias("POST", "prod/rollback");
      assert.equal(await chat(client, "prod", TRAIN_QUESTIONS[0]), before);
    } finally {
      await srv.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});
