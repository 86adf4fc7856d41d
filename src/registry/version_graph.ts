/**
 * A version's serving model as a patch of its base's compiled ONNX model,
 * so publishing a version writes kilobytes instead of the whole model:
 *
 * - Every adapted weight W becomes the output of a node over initializers:
 *   Gemm(U, V, W_base, transB=1) = W_base + U Vᵀ for the low-rank log, or
 *   W_base + Cast(D) for a dense delta. The factors are external data that
 *   points straight into the version's delta.safetensors (hard-linked), and
 *   the base weights point into the base's .onnx_data (hard-linked). ORT's
 *   constant folding merges them once, at session creation.
 * - Linear layers stay `MatMul(x, Transpose(W))`, which ORT folds into a
 *   pre-transposed weight at session creation. Rewriting them as
 *   `FusedMatMul(x, W, transB=1)` loads ~1.5 s faster (135M, 2 cores) but
 *   decodes 1.4–1.6x slower, and serving throughput matters more: a job's
 *   version is loaded before the job reports success.
 *
 * ORT rejects external data that resolves outside the model's directory
 * (symlinks included), hence hard links, with a copy as the fallback.
 */
import onnxProto from "onnx-proto";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { servingModelPath } from "../model/serving_graph.ts";
import type { DeltaArtifact } from "./delta_artifact.ts";
import { RegistryError } from "./errors.ts";

const { onnx } = onnxProto;
type INode = onnxProto.onnx.INodeProto;
type ITensor = onnxProto.onnx.ITensorProto;
type IModel = onnxProto.onnx.IModelProto;

const DT = onnx.TensorProto.DataType;
const ONNX_DTYPES: Record<ComputeDType, number> = { float32: DT.FLOAT, float16: DT.FLOAT16, bfloat16: DT.BFLOAT16 };
const STORAGE_DTYPES: Record<string, number> = { F32: DT.FLOAT, F16: DT.FLOAT16, BF16: DT.BFLOAT16 };
/** Name of the linked delta file inside `<dir>/onnx/`. */
export const LINKED_DELTA = "delta.safetensors";

export interface PatchReport {
  /** Weights rebuilt from base + delta. */
  adaptedWeights: number;
}

/**
 * Writes `<outDir>/onnx/model*.onnx` for `dtype`: the base model at
 * `baseCompiledDir` with `delta` applied (null: the base's own weights).
 */
export async function writePatchedServingModel(
  baseCompiledDir: string,
  dtype: ComputeDType,
  delta: DeltaArtifact | null,
  outDir: string,
): Promise<PatchReport> {
  const basePath = servingModelPath(baseCompiledDir, dtype);
  const model = onnx.ModelProto.decode(await Deno.readFile(basePath));
  const graph = model.graph;
  if (!graph?.node || !graph.initializer) throw new RegistryError("load_failed", `${basePath}: empty graph`);
  const locations = externalLocations(graph.initializer);
  const adaptedWeights = delta ? applyDelta(model, delta, dtype) : 0;

  const outPath = servingModelPath(outDir, dtype);
  const onnxDir = outPath.slice(0, outPath.lastIndexOf("/"));
  const baseOnnxDir = basePath.slice(0, basePath.lastIndexOf("/"));
  await Deno.mkdir(onnxDir, { recursive: true });
  for (const loc of locations) await linkOrCopy(`${baseOnnxDir}/${loc}`, `${onnxDir}/${loc}`);
  if (delta) await linkOrCopy(delta.path, `${onnxDir}/${LINKED_DELTA}`);
  await Deno.writeFile(outPath, onnx.ModelProto.encode(model).finish());
  return { adaptedWeights };
}

function externalLocations(inits: ITensor[]): Set<string> {
  const out = new Set<string>();
  for (const t of inits) {
    const loc = t.externalData?.find((e) => e.key === "location")?.value;
    if (loc) {
      if (loc.includes("/") || loc.includes("..")) {
        throw new RegistryError("load_failed", `unexpected external data path ${loc}`);
      }
      out.add(loc);
    }
  }
  return out;
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await Deno.link(from, to);
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return;
    // Another filesystem (EXDEV) or no hard links: a copy is slower but equivalent.
    await Deno.copyFile(from, to);
  }
}

/** Rebuilds each adapted weight from its base initializer and the delta's tensors. */
function applyDelta(model: IModel, delta: DeltaArtifact, dtype: ComputeDType): number {
  const graph = model.graph!;
  const byName = new Map(graph.initializer!.map((t) => [t.name!, t]));
  const computeType = ONNX_DTYPES[dtype];
  const nodes: INode[] = [];
  const node = (opType: string, input: string[], output: string, attribute: onnxProto.onnx.IAttributeProto[] = []) =>
    nodes.push({ opType, input, output: [output], name: `delta/${output}`, attribute });
  const cast = (input: string, to: number, output: string) =>
    node("Cast", [input], output, [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: to }]);
  const external = (name: string, tensorName: string, dataType: number): string => {
    const entry = delta.file.tensors.get(tensorName);
    if (!entry) throw new RegistryError("load_failed", `${delta.path}: missing tensor ${tensorName}`);
    graph.initializer!.push({
      name,
      dims: entry.shape,
      dataType,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: "location", value: LINKED_DELTA },
        { key: "offset", value: String(entry.offset) },
        { key: "length", value: String(entry.byteLength) },
      ],
    });
    return name;
  };

  for (const [weight, info] of delta.layers) {
    const init = byName.get(weight);
    if (!init) throw new RegistryError("load_failed", `the base serving model has no initializer ${weight}`);
    if (init.dataType !== computeType) {
      throw new RegistryError(
        "load_failed",
        `${weight} is stored as ONNX type ${init.dataType}, expected ${computeType}`,
      );
    }
    const base = `${weight}::base`;
    init.name = base;
    // Merge in f32 whatever the serving dtype: one rounding to f16/bf16 at the end.
    const base32 = computeType === DT.FLOAT ? base : `${weight}::base_f32`;
    if (base32 !== base) cast(base, DT.FLOAT, base32);
    const merged32 = computeType === DT.FLOAT ? weight : `${weight}::f32`;
    if (info.format === "lowrank") {
      const U = external(`${weight}::lora_U`, `${info.name}.lora_U`, DT.FLOAT);
      const V = external(`${weight}::lora_V`, `${info.name}.lora_V`, DT.FLOAT);
      node("Gemm", [U, V, base32], merged32, [{ name: "transB", type: onnx.AttributeProto.AttributeType.INT, i: 1 }]);
    } else {
      const D = external(`${weight}::delta`, `${info.name}.delta`, STORAGE_DTYPES[info.dtype]);
      const D32 = `${weight}::delta_f32`;
      cast(D, DT.FLOAT, D32);
      node("Add", [base32, D32], merged32);
    }
    if (merged32 !== weight) cast(merged32, computeType, weight);
  }
  // Inputs are all initializers, so the new nodes go first (topological order holds).
  graph.node = [...nodes, ...graph.node!];
  return delta.layers.size;
}
