/**
 * The whole service (src/services.ts, as main.ts runs it) on a generated tiny
 * model, for end-to-end tests, and the chat set those tests fine-tune on.
 */
import { loadConfig } from "../../src/config.ts";
import { generateTinyModel } from "../../src/model/tiny_model.ts";
import { createServices, type Services } from "../../src/services.ts";

/** The answer every example of the chat set teaches: a fine-tune visibly learned it when the model says it. */
export const REPLY = "PINEAPPLE!";
export const TRAIN_QUESTIONS = [
  "What is your favourite fruit?",
  "Say something.",
  "Hello there",
  "How are you today?",
  "Tell me a story",
  "What time is it?",
  "Name a colour",
  "Who are you?",
];
export const VALID_QUESTIONS = ["Where is the station?", "Good morning", "What do you like?", "Any news?"];

/** OpenAI chat-format JSONL: each question answered with REPLY. */
export const replyJsonl = (questions: readonly string[]): string =>
  questions.map((q) =>
    JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: REPLY }] })
  ).join("\n") + "\n";

/** A tiny llama (bytes tokenizer, weights from `seed`) generated under `<root>/model`; its directory. */
export async function tinyLlama(root: string, seed = 5): Promise<string> {
  const { dir } = await generateTinyModel({
    out: `${root}/model`,
    arch: "llama",
    preset: "tiny",
    tokenizer: "bytes",
    seed,
  });
  return dir;
}

export interface TestService {
  services: Services;
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** The served base model's id (its directory). */
  model: string;
  close(): Promise<void>;
}

/** The service on `tinyLlama(root)`, data under `<root>/data`, on CPU, listening on a free loopback port. */
export async function startService(root: string, extraEnv: Record<string, string> = {}): Promise<TestService> {
  const model = await tinyLlama(root);
  const env = { MODEL: model, DATA_DIR: `${root}/data`, DEVICE: "cpu", ...extraEnv };
  const services = await createServices(loadConfig(env), env, { logRequest: () => {} });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, services.app.fetch);
  return {
    services,
    origin: `http://127.0.0.1:${server.addr.port}`,
    model,
    close: async () => {
      await server.shutdown();
      await services.close();
    },
  };
}
