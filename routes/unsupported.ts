/**
 * OpenAI parameters that would change what is generated but that this server
 * cannot honour: each gets a 400 naming the parameter, rather than being
 * silently ignored (a client relying on them would get wrong output).
 */
import { badRequest } from "./errors.ts";
import type { ChatCompletionRequest, CompletionRequest } from "./schemas.ts";

const unsupported = (param: string, why: string) =>
  badRequest(`'${param}' is not supported by this server: ${why}`, param, "unsupported_parameter");

function isEmpty(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === "object") return Object.keys(value).length === 0;
  return false;
}

function checkCommon(body: ChatCompletionRequest | CompletionRequest): void {
  if (!isEmpty(body.logit_bias)) throw unsupported("logit_bias", "only an empty map is accepted");
  if (body.stream_options && !body.stream) {
    throw badRequest("'stream_options' is only allowed when 'stream' is true", "stream_options");
  }
}

export function checkChatSupported(body: ChatCompletionRequest): void {
  checkCommon(body);
  if (!isEmpty(body.tools)) throw unsupported("tools", "tool calling is not available");
  if (body.tool_choice !== undefined && body.tool_choice !== null && body.tool_choice !== "none") {
    throw unsupported("tool_choice", "only 'none' is accepted");
  }
  if (!isEmpty(body.functions)) throw unsupported("functions", "function calling is not available");
  if (body.function_call !== undefined && body.function_call !== null && body.function_call !== "none") {
    throw unsupported("function_call", "only 'none' is accepted");
  }
  if (body.response_format && body.response_format.type !== "text") {
    throw unsupported("response_format", `type '${body.response_format.type}' is not available; use 'text'`);
  }
  if (body.audio !== undefined && body.audio !== null) throw unsupported("audio", "text output only");
  if (body.modalities && body.modalities.some((m) => m !== "text")) {
    throw unsupported("modalities", "text output only");
  }
  if (body.prediction !== undefined && body.prediction !== null) {
    throw unsupported("prediction", "predicted outputs are not available");
  }
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && !body.logprobs) {
    throw badRequest("'top_logprobs' requires 'logprobs' to be true", "top_logprobs");
  }
}

export function checkCompletionSupported(body: CompletionRequest): void {
  checkCommon(body);
  if (body.suffix) throw unsupported("suffix", "insertion (fill-in-the-middle) is not available");
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== (body.n ?? 1)) {
    throw unsupported("best_of", "server-side best-of selection is not available; use 'n'");
  }
  if (body.stream && body.echo && body.logprobs !== undefined && body.logprobs !== null) {
    throw badRequest("'echo' with 'logprobs' is not supported when streaming", "echo", "unsupported_parameter");
  }
}
