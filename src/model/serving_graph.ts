/**
 * The serving graph of a checkpoint, and its export as a model directory that
 * transformers.js loads (`onnx/model.onnx` + `model.onnx_data`, config and
 * tokenizer files beside it).
 */
import { GraphBuilder } from "../onnx/builder.ts";
import type { Graph, Value } from "../onnx/ir.ts";
import { writeModel } from "../onnx/writer.ts";
import type { ModelConfig } from "./config.ts";
import { buildDecoder, type ComputeDType, convertWeights, IO_NAMES } from "./decoder_graph.ts";
import { weightLayout } from "./layout.ts";

/** Where weights come from: a checkpoint, or memory in tests. */
export interface WeightSource {
  readonly config: ModelConfig;
  read(name: string): Promise<Float32Array>;
}

/** The KV-cache causal-LM graph with every weight as a lazily read initializer. */
export function buildServingGraph(source: WeightSource, dtype: ComputeDType = "float32"): Graph {
  const g = new GraphBuilder("causal_lm");
  const shapes = new Map(weightLayout(source.config).map((t) => [t.name, t.shape]));
  const created = new Map<string, Value>();
  const weight = (name: string): Value => {
    const hit = created.get(name);
    if (hit) return hit;
    const shape = shapes.get(name);
    if (!shape) throw new Error(`serving graph asked for unknown weight "${name}"`);
    const v = g.initializer(name, dtype, shape, async () => convertWeights(await source.read(name), dtype));
    created.set(name, v);
    return v;
  };
  const { logits, logSumExp } = buildDecoder(g, source.config, { dtype, kvCache: true, weight });
  g.output(logits!, IO_NAMES.logits);
  g.output(logSumExp!, IO_NAMES.logitsLogSumExp);
  return g.build();
}

const ONNX_DTYPE_NAMES: Record<ComputeDType, string> = { float32: "fp32", float16: "fp16", bfloat16: "bf16" };

/**
 * The model file inside a model directory, named as transformers.js looks for
 * it per dtype (it has no bf16 variant: bf16 exports serve this engine only).
 */
export function servingModelPath(dir: string, dtype: ComputeDType): string {
  const suffix = dtype === "float32" ? "" : `_${ONNX_DTYPE_NAMES[dtype]}`;
  return `${dir}/onnx/model${suffix}.onnx`;
}

/** Writes the serving model (+ its `.onnx_data`) under `<dir>/onnx/`. */

export async function writeServingModel(source: WeightSource, dir: string, dtype: ComputeDType): Promise<string> {
  await Deno.mkdir(`${dir}/onnx`, { recursive: true });
  const path = servingModelPath(dir, dtype);
  await writeModel(buildServingGraph(source, dtype), path);
  return path;
}

/**
 * Exports a complete model directory: the ONNX serving model, config.json
 * (with the transformers.js hints for external data and dtype), and the
 * tokenizer and generation files copied from `fromDir`.
 */
export async function exportModelDirectory(
  source: WeightSource,
  fromDir: string,
  outDir: string,
  dtype: ComputeDType = "float32",
): Promise<void> {
  await writeServingModel(source, outDir, dtype);
  const config = JSON.parse(await Deno.readTextFile(`${fromDir}/config.json`));
  config["transformers.js_config"] = {
    ...(config["transformers.js_config"] ?? {}),
    dtype: ONNX_DTYPE_NAMES[dtype],
    use_external_data_format: true,
  };
  await Deno.writeTextFile(`${outDir}/config.json`, JSON.stringify(config, null, 2));
  for (const name of ["generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    try {
      await Deno.copyFile(`${fromDir}/${name}`, `${outDir}/${name}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}
