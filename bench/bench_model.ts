/**
 * The benchmarks' shared test model: `./data/bench/<preset>/model` (generated
 * once, deterministically: llama, bytes tokenizer, seed 0) and the data dir
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
    await generateTinyModel({ out: modelDir, arch: "llama", preset, tokenizer: "bytes", seed: 0 });
  }
  return { modelDir, dataDir: `${root}/data` };
}
