/**
 * The transformers.js baseline the benchmarks compare against: the model
 * directory this project exports, loaded offline in fp32, and a greedy
 * `generate()` (no EOS) that reports each new token as it is chosen.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import {
  AutoModelForCausalLM,
  BaseStreamer,
  type PreTrainedModel,
  Tensor,
  type TextStreamer,
} from "@huggingface/transformers";
import { configureTransformersOffline } from "../src/model/tokenizer.ts";

/** A streamer gets the prompt first, then each generated token. */
class TokenStreamer extends BaseStreamer {
  #calls = 0;
  constructor(private readonly onToken: (id: number) => void) {
    super();
  }
  override put(value: bigint[][]): void {
    if (this.#calls++ > 0) this.onToken(Number(value[0][0]));
  }
  override end(): void {}
}

export interface TransformersBaseline {
  generate(promptIds: number[], maxNewTokens: number, onToken: (id: number) => void): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * `threads`: onnxruntime intra-op threads; null keeps transformers.js' own
 * default (it sets none, and onnxruntime then picked one thread on a 2-vCPU
 * VM). The benchmarks pass the count this server's sessions use, so a ratio
 * measures the serving design, not a thread setting.
 */
export async function loadTransformersBaseline(
  compiledDir: string,
  threads: number | null,
): Promise<TransformersBaseline> {
  configureTransformersOffline();
  const tjs = await AutoModelForCausalLM.from_pretrained(compiledDir, {
    local_files_only: true,
    dtype: "fp32",
    session_options: threads === null ? {} : { intraOpNumThreads: threads },
  }) as PreTrainedModel;
  return {
    generate: async (promptIds, maxNewTokens, onToken) => {
      await tjs.generate({
        input_ids: new Tensor("int64", BigInt64Array.from(promptIds.map(BigInt)), [1, promptIds.length]),
        max_new_tokens: maxNewTokens,
        do_sample: false,
        eos_token_id: [],
        // Its typings ask for BaseStreamer & TextStreamer; generate() only calls put/end.
        streamer: new TokenStreamer(onToken) as unknown as TextStreamer,
      });
    },
    dispose: async () => {
      await tjs.dispose();
    },
  };
}
