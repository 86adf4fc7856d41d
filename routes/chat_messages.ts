/**
 * OpenAI chat messages → the tokenizer's template messages: `developer` is
 * the newer name of `system`; content parts must be text (joined by "\n", as
 * vLLM does); tools, images and audio are rejected by param path.
 */
import type { ChatMessage } from "../src/model/tokenizer.ts";
import { badRequest } from "./errors.ts";
import type { ChatMessageInput } from "./schemas.ts";

export function toTemplateMessages(messages: ChatMessageInput[]): ChatMessage[] {
  return messages.map((m, i) => {
    if (m.role === "tool" || m.role === "function") {
      throw badRequest(`'${m.role}' messages are not supported (no tool calling)`, `messages[${i}].role`);
    }
    if (m.tool_calls && m.tool_calls.length > 0) {
      throw badRequest("tool calls are not supported", `messages[${i}].tool_calls`);
    }
    return { role: m.role === "developer" ? "system" : m.role, content: contentText(m, i) };
  });
}

function contentText(m: ChatMessageInput, i: number): string {
  const content = m.content;
  if (content === null || content === undefined) {
    if (m.role === "assistant") return "";
    throw badRequest(`'messages[${i}].content' is required for role '${m.role}'`, `messages[${i}].content`);
  }
  if (typeof content === "string") return content;
  return content.map((part, j) => {
    if (part.type !== "text") {
      throw badRequest(
        `Content part type '${part.type}' is not supported; only 'text' parts are`,
        `messages[${i}].content[${j}].type`,
      );
    }
    if (typeof part.text !== "string") {
      throw badRequest("A text content part needs 'text'", `messages[${i}].content[${j}].text`);
    }
    return part.text;
  }).join("\n");
}
