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
 * - `MatMul(x, Transpose(W))` (how the compiler writes a linear layer) becomes
 *   `FusedMatMul(x, W, transB=1)`: ORT otherwise folds every Transpose at
 *   session creation, a copy of the whole model that took longer than
 *   everything else in loading it (3.5 s of 5.4 s for a 135M model on 2 cores).
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
const MS_DOMAIN = "com.microsoft";
/** Name of the linked delta file inside `<dir>/onnx/`. */
export const LINKED_DELTA = "delta.safetensors";

export interface PatchReport {
  /** Linear layers turned into FusedMatMul. */
  fusedLinears: number;
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
  const fusedLinears = fuseTransposedLinears(model);
  const adaptedWeights = delta ? applyDelta(model, delta, dtype) : 0;

  const outPath = servingModelPath(outDir, dtype);
  const onnxDir = outPath.slice(0, outPath.lastIndexOf("/"));
  const baseOnnxDir = basePath.slice(0, basePath.lastIndexOf("/"));
  await Deno.mkdir(onnxDir, { recursive: true });
  for (const loc of locations) await linkOrCopy(`${baseOnnxDir}/${loc}`, `${onnxDir}/${loc}`);
  if (delta) await linkOrCopy(delta.path, `${onnxDir}/${LINKED_DELTA}`);
  await Deno.writeFile(outPath, onnx.ModelProto.encode(model).finish());
  return { fusedLinears, adaptedWeights };
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

/** MatMul(x, Transpose(W_init)) → FusedMatMul(x, W_init, transB=1); drops transposes left unused. */
function fuseTransposedLinears(model: IModel): number {
  const graph = model.graph!;
  const nodes = graph.node!;
  const inits = new Set(graph.initializer!.map((t) => t.name!));
  const producer = new Map<string, INode>();
  const uses = new Map<string, number>();
  for (const n of nodes) {
    for (const o of n.output ?? []) producer.set(o, n);
    for (const i of n.input ?? []) uses.set(i, (uses.get(i) ?? 0) + 1);
  }
  const dropped = new Set<INode>();
  let fused = 0;
  for (const n of nodes) {
    if (n.opType !== "MatMul" || (n.domain ?? "") !== "" || n.input?.length !== 2) continue;
    const t = producer.get(n.input[1]);
    if (!t || t.opType !== "Transpose" || !t.input || !inits.has(t.input[0]) || !isSwap2d(t)) continue;
    n.opType = "FusedMatMul";
    n.domain = MS_DOMAIN;
    n.input = [n.input[0], t.input[0]];
    n.attribute = [
      { name: "transA", type: onnx.AttributeProto.AttributeType.INT, i: 0 },
      { name: "transB", type: onnx.AttributeProto.AttributeType.INT, i: 1 },
      { name: "alpha", type: onnx.AttributeProto.AttributeType.FLOAT, f: 1 },
    ];
    const left = (uses.get(t.output![0]) ?? 1) - 1;
    uses.set(t.output![0], left);
    if (left === 0) dropped.add(t);
    fused++;
  }
  if (fused === 0) return 0;
  const gone = new Set([...dropped].flatMap((t) => t.output ?? []));
  graph.node = nodes.filter((n) => !dropped.has(n));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !gone.has(v.name ?? ""));
  ensureOpset(model, MS_DOMAIN, 1);
  return fused;
}

function isSwap2d(t: INode): boolean {
  const perm = t.attribute?.find((a) => a.name === "perm");
  const ints = perm?.ints?.map(Number) ?? [];
  return ints.length === 2 && ints[0] === 1 && ints[1] === 0;
}

function ensureOpset(model: IModel, domain: string, version: number): void {
  model.opsetImport ??= [];
  if (!model.opsetImport.some((o) => (o.domain ?? "") === domain)) model.opsetImport.push({ domain, version });
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
