/**
 * IR → ONNX protobuf. Large initializers go to an external data file written
 * tensor by tensor (each produced, written, released), so a multi-GB model
 * never sits in one JS buffer; the .onnx itself stays small.
 */
import onnxProto from "onnx-proto";
import {
  type Attribute,
  type FunctionDef,
  type Graph,
  GraphError,
  type Initializer,
  type Node,
  shapeSize,
  type TensorArray,
  type Value,
} from "./ir.ts";
import { dtypeToOnnx } from "./builder.ts";
import { elementBytes } from "./ir.ts";

const { onnx } = onnxProto;
type ITensorProto = onnxProto.onnx.ITensorProto;

const IR_VERSION = 10;

function attributeProto(name: string, a: Attribute): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.kind) {
    case "int":
      return { name, type: T.INT, i: a.value };
    case "float":
      return { name, type: T.FLOAT, f: a.value };
    case "string":
      return { name, type: T.STRING, s: new TextEncoder().encode(a.value) };
    case "ints":
      return { name, type: T.INTS, ints: a.value };
    case "floats":
      return { name, type: T.FLOATS, floats: a.value };
    case "strings":
      return { name, type: T.STRINGS, strings: a.value.map((s) => new TextEncoder().encode(s)) };
    case "tensor":
      return {
        name,
        type: T.TENSOR,
        t: { dims: a.value.shape, dataType: dtypeToOnnx(a.value.dtype), rawData: rawBytes(a.value.data) },
      };
    case "ref": {
      const types = { int: T.INT, float: T.FLOAT, ints: T.INTS, floats: T.FLOATS, string: T.STRING };
      return { name, type: types[a.type], refAttrName: a.value };
    }
  }
}

function nodeProto(n: Node): onnxProto.onnx.INodeProto {
  return {
    opType: n.op,
    domain: n.domain,
    name: n.name,
    input: n.inputs,
    output: n.outputs,
    attribute: Object.entries(n.attributes).map(([k, a]) => attributeProto(k, a)),
  };
}

function valueInfo(v: Value): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: dtypeToOnnx(v.dtype),
        shape: v.shape
          ? { dim: v.shape.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }) }
          : undefined,
      },
    },
  };
}

function functionProto(f: FunctionDef): onnxProto.onnx.IFunctionProto {
  return {
    name: f.name,
    domain: f.domain,
    input: f.inputs,
    output: f.outputs,
    attribute: f.attributes,
    node: f.nodes.map(nodeProto),
    opsetImport: Object.entries(f.opsets).map(([domain, version]) => ({ domain, version })),
  };
}

/** Little-endian bytes of a typed array (a view, no copy, on LE hosts). */
export function rawBytes(data: TensorArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

async function materialize(init: Initializer): Promise<TensorArray> {
  const data = typeof init.data === "function" ? await init.data() : init.data;
  const expected = shapeSize(init.shape) * elementBytes[init.dtype];
  if (data.byteLength !== expected) {
    throw new GraphError(
      `initializer "${init.name}": ${data.byteLength} bytes for ${init.dtype}[${init.shape}] (expected ${expected})`,
    );
  }
  return data;
}

export interface WriteOptions {
  /** External data file name, next to the model (default `<model>.onnx_data` / `model.onnx_data`). */
  externalDataName?: string;
  /** Initializers at least this many bytes go to external data (default 1024). */
  externalThreshold?: number;
  producer?: string;
}

function modelProto(graph: Graph, initializers: ITensorProto[]): onnxProto.onnx.IModelProto {
  const valueInfos = [...graph.values.values()].filter((v) =>
    !graph.inputs.includes(v) && !graph.outputs.includes(v) &&
    !graph.initializers.some((i) => i.name === v.name)
  );
  return {
    irVersion: IR_VERSION,
    producerName: "scalora-server",
    opsetImport: Object.entries(graph.opsets).map(([domain, version]) => ({ domain, version })),
    graph: {
      name: graph.name,
      node: graph.nodes.map(nodeProto),
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
      initializer: initializers,
      valueInfo: valueInfos.map(valueInfo),
    },
    functions: graph.functions.map(functionProto),
  };
}

/** Serializes with every initializer inline (small graphs, tests, in-memory sessions). */
export async function serializeModel(graph: Graph): Promise<Uint8Array> {
  const inits: ITensorProto[] = [];
  for (const init of graph.initializers) {
    inits.push({
      name: init.name,
      dims: init.shape,
      dataType: dtypeToOnnx(init.dtype),
      rawData: rawBytes(await materialize(init)),
    });
  }
  return onnx.ModelProto.encode(modelProto(graph, inits)).finish();
}

/**
 * Writes `path` (the .onnx) and its external data file beside it. Returns the
 * byte size of the external data.
 */
export async function writeModel(graph: Graph, path: string, opts: WriteOptions = {}): Promise<number> {
  const base = path.split("/").pop() ?? "model.onnx";
  const dataName = opts.externalDataName ?? `${base}_data`;
  const dataPath = path.slice(0, path.length - base.length) + dataName;
  const threshold = opts.externalThreshold ?? 1024;
  const inits: ITensorProto[] = [];
  const file = await Deno.open(dataPath, { write: true, create: true, truncate: true });
  let offset = 0;
  try {
    for (const init of graph.initializers) {
      const data = await materialize(init);
      const proto: ITensorProto = { name: init.name, dims: init.shape, dataType: dtypeToOnnx(init.dtype) };
      if (data.byteLength >= threshold) {
        // ORT maps external data with page-aligned offsets more cheaply; align to 4 KiB.
        const pad = (4096 - (offset % 4096)) % 4096;
        if (pad) await writeAll(file, new Uint8Array(pad));
        offset += pad;
        await writeAll(file, rawBytes(data));
        proto.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        proto.externalData = [
          { key: "location", value: dataName },
          { key: "offset", value: String(offset) },
          { key: "length", value: String(data.byteLength) },
        ];
        offset += data.byteLength;
      } else {
        proto.rawData = rawBytes(data).slice();
      }
      inits.push(proto);
    }
  } finally {
    file.close();
  }
  await Deno.writeFile(path, onnx.ModelProto.encode(modelProto(graph, inits)).finish());
  return offset;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) written += await file.write(bytes.subarray(written));
}
