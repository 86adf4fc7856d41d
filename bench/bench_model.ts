/**
 * The benchmarks' shared test model: `./data/bench/<preset>/model` (generated
 * once, deterministically: llama, bytes tokenizer, seed 0; f16 weights for the
 * 1B preset) and the data dir
 * whose compiled serving graph they all reuse.
 */
import { generateTinyModel, type TinyPreset } from "../src/model/tiny_model.ts";

export interface BenchModel {
  modelDir: string;
  dataDir: string;
}

export async function benchModel(preset: TinyPreset): Promise<BenchModel> {
  const root = `./data/bench/${preset}`;
  const modelDir = `${root}/model`;
  try {
    await Deno.stat(`${modelDir}/config.json`);
  } catch {
    // The 1B preset is stored in f16 (2.5 GB rather than 5); engines convert to their compute dtype.
    const dtype = preset === "llama3.2-1b" ? "F16" : "F32";
    await generateTinyModel({ out: modelDir, arch: "llama", preset, tokenizer: "bytes", seed: 0, dtype });
  }
  return { modelDir, dataDir: `${root}/data` };
}
