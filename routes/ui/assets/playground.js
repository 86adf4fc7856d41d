// Playground: chat with any base model, version or alias, streamed, with temperature and max tokens; with
// "compare", the same conversation goes to two models side by side.
import { announce, boot, el, fillModelSelect, listModels, streamSSE } from "./app.js";

const form = document.getElementById("chat-form");
const compare = document.getElementById("compare");
const stopButton = document.getElementById("stop");
/** Per pane: the conversation so far (user and assistant turns). */
const history = { a: [], b: [] };
let controller = null;

function bubble(side, role, text) {
  const node = el(
    "div",
    { class: `msg ${role}` },
    el("span", { class: "who" }, role === "user" ? "You" : "Model"),
    el("p", {}, text),
  );
  const log = document.getElementById(`chat-${side}`);
  log.append(node);
  log.scrollTop = log.scrollHeight;
  return node.querySelector("p");
}

async function send(side, prompt, settings, signal) {
  const model = document.getElementById(`model-${side}`).value;
  history[side].push({ role: "user", content: prompt });
  bubble(side, "user", prompt);
  const out = bubble(side, "assistant", "");
  out.parentElement.setAttribute("aria-busy", "true");
  const messages = [
    ...(settings.system ? [{ role: "system", content: settings.system }] : []),
    ...history[side],
  ];
  let text = "";
  let usage = null;
  try {
    await streamSSE("/v1/chat/completions", {
      model,
      messages,
      temperature: settings.temperature,
      max_tokens: settings.maxTokens,
      stream: true,
      stream_options: { include_usage: true },
    }, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        text += delta;
        out.textContent = text;
      }
      if (chunk.usage) usage = chunk.usage;
    }, signal);
    history[side].push({ role: "assistant", content: text });
    document.getElementById(`usage-${side}`).textContent = usage
      ? `${model}: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`
      : model;
  } catch (e) {
    out.textContent = text;
    out.parentElement.append(el("p", { class: "error" }, e.name === "AbortError" ? "stopped" : e.message));
    history[side].pop();
  } finally {
    out.parentElement.removeAttribute("aria-busy");
  }
}

function clear() {
  for (const side of ["a", "b"]) {
    history[side] = [];
    document.getElementById(`chat-${side}`).replaceChildren();
    document.getElementById(`usage-${side}`).textContent = "";
  }
}

boot(async () => {
  const models = await listModels();
  const wanted = new URLSearchParams(location.search).get("model") ?? undefined;
  fillModelSelect(document.getElementById("model-a"), models, { selected: wanted });
  fillModelSelect(document.getElementById("model-b"), models);
  compare.addEventListener("change", () => {
    document.getElementById("pane-b").hidden = !compare.checked;
  });
  for (const side of ["a", "b"]) document.getElementById(`model-${side}`).addEventListener("change", clear);
  document.getElementById("clear").addEventListener("click", clear);
  stopButton.addEventListener("click", () => controller?.abort());
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const prompt = form.elements.prompt.value.trim();
    if (!prompt || controller) return;
    const settings = {
      temperature: Number(form.elements.temperature.value),
      maxTokens: Number(form.elements.max_tokens.value),
      system: form.elements.system.value.trim(),
    };
    controller = new AbortController();
    stopButton.disabled = false;
    document.getElementById("send").disabled = true;
    form.elements.prompt.value = "";
    const sides = compare.checked ? ["a", "b"] : ["a"];
    try {
      await Promise.all(sides.map((side) => send(side, prompt, settings, controller.signal)));
    } catch (err) {
      announce(err.message, "error");
    } finally {
      controller = null;
      stopButton.disabled = true;
      document.getElementById("send").disabled = false;
      form.elements.prompt.focus();
    }
  });
  // Enter sends, Shift+Enter adds a line.
  form.elements.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
});
