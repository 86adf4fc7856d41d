/**
 * bench:serve's load generator, run as a Worker: its fetch streams, SSE
 * parsing and JSON decoding stay off the event loop of the server under test
 * (as a client on another machine would), for both servers alike.
 *
 * Message in: a `LevelSpec`; message out: a `LevelRun` (or `{ error }`).
 */
/// <reference lib="deno.worker" />

export interface LevelSpec {
  baseURL: string;
  model: string;
  concurrency: number;
  requestsPerStream: number;
  promptTokens: number;
  newTokens: number;
  /** No request starts after this many seconds. */
  levelSeconds: number;
  /** Varies the prompts between calls (warm-up and measured levels never repeat a prompt). */
  salt: number;
}

export interface LevelRun {
  concurrency: number;
  requests: number;
  completion_tokens: number;
  seconds: number;
  tok_s: number;
  ttfts: number[];
}

interface RequestSample {
  ttftMs: number;
  tokens: number;
}

/** One streaming completion; resolves with its TTFT and completion token count (from the usage chunk). */
async function streamOnce(spec: LevelSpec, promptIds: number[]): Promise<RequestSample> {
  const started = performance.now();
  const res = await fetch(`${spec.baseURL}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      model: spec.model,
      prompt: promptIds,
      max_tokens: spec.newTokens,
      temperature: 0,
      ignore_eos: true,
      // A chunk per token even when a token shows no text (the bench model's
      // random ids mostly decode to nothing), so TTFT is the first token, not
      // the first printable text. The baseline ignores it.
      logprobs: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttftMs = NaN;
  let tokens = 0;
  let buf = "";
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buf += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data) as { choices: { text: string }[]; usage?: { completion_tokens: number } | null };
      if (Number.isNaN(ttftMs) && chunk.choices.length > 0) ttftMs = performance.now() - started;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  return { ttftMs, tokens };
}

/** `concurrency` client loops, each sending `requestsPerStream` requests back to back. */
async function runLevel(spec: LevelSpec): Promise<LevelRun> {
  const deadline = performance.now() + spec.levelSeconds * 1000;
  const samples: RequestSample[] = [];
  const started = performance.now();
  await Promise.all(Array.from({ length: spec.concurrency }, async (_, stream) => {
    for (let r = 0; r < spec.requestsPerStream && performance.now() < deadline; r++) {
      // Distinct prompts per request, so nothing could be served from a cache.
      const promptIds = Array.from(
        { length: spec.promptTokens },
        (_, i) => (i * 7919 + stream * 131 + r * 17 + spec.salt * 29) % 256,
      );
      samples.push(await streamOnce(spec, promptIds));
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const tokens = samples.reduce((a, s) => a + s.tokens, 0);
  return {
    concurrency: spec.concurrency,
    requests: samples.length,
    completion_tokens: tokens,
    seconds,
    tok_s: tokens / seconds,
    ttfts: samples.map((s) => s.ttftMs),
  };
}

self.onmessage = async (e: MessageEvent<LevelSpec>) => {
  try {
    self.postMessage(await runLevel(e.data));
  } catch (err) {
    self.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
};
