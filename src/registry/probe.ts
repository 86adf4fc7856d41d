/**
 * The check an engine passes before an alias switches to it: a probe prompt
 * whose logits must be finite (every prompt-token log-probability and every
 * chosen token's), and a short greedy smoke generation that must produce its
 * full token budget without an error or timeout.
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import type { GenerationEngine } from "../serve/engine_types.ts";
import { errorText } from "./errors.ts";

export interface ProbeResult {
  ok: boolean;
  /** Why it failed (null when ok). */
  reason: string | null;
  /** The smoke generation's text (for the event log). */
  text: string;
  ms: number;
}

export interface ProbeOptions {
  prompt?: string;
  /** Greedy tokens generated. Default 3. */
  maxTokens?: number;
  /** Default DEFAULT_PROBE_TIMEOUT_MS. */
  timeoutMs?: number;
}

/**
 * The probe's time limit, queueing included. It is an engine's first generation, so it pays for what a device does
 * once per session: on a software Vulkan adapter with a cold shader cache a tiny model's first generation, which
 * compiles the WebGPU kernels, took over 30 s (2-core VM); a hung engine is still reported, only later.
 */
export const DEFAULT_PROBE_TIMEOUT_MS = 300_000;

export const DEFAULT_PROBE_PROMPT = "Hello";

export async function probeEngine(
  engine: GenerationEngine,
  tokenizer: Tokenizer,
  opts: ProbeOptions = {},
): Promise<ProbeResult> {
  const started = performance.now();
  const maxTokens = opts.maxTokens ?? 3;
  let promptIds = tokenizer.encode(opts.prompt ?? DEFAULT_PROBE_PROMPT);
  if (promptIds.length === 0) promptIds = [tokenizer.bosTokenId ?? 0];
  const result = (ok: boolean, reason: string | null, text: string): ProbeResult => ({
    ok,
    reason,
    text,
    ms: performance.now() - started,
  });
  let text = "";
  try {
    let generated = 0;
    for await (
      const ev of engine.generate({
        promptIds,
        maxTokens,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        stop: [],
        stopTokenIds: [],
        logprobs: 0,
        promptLogprobs: true,
        timeoutMs: opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
      })
    ) {
      text += ev.text;
      if (ev.type === "token") {
        generated++;
        const lp = ev.logprob?.logprob;
        if (lp === undefined || !Number.isFinite(lp)) {
          return result(false, `non-finite logits: token ${generated} has logprob ${lp}`, text);
        }
      } else {
        const bad = (ev.promptLogprobs ?? []).findIndex((p) => p !== null && !Number.isFinite(p.logprob));
        if (bad >= 0) {
          return result(false, `non-finite logits on the probe prompt (position ${bad})`, text);
        }
        if (ev.completionTokens !== maxTokens || generated !== maxTokens) {
          return result(false, `smoke generation produced ${generated} of ${maxTokens} tokens`, text);
        }
      }
    }
    return result(true, null, text);
  } catch (e) {
    return result(false, `smoke generation failed: ${errorText(e)}`, text);
  }
}
