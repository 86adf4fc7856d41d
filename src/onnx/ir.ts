/**
 * A typed ONNX graph IR: values carry a dtype and a (possibly symbolic) shape,
 * nodes reference values by name, initializers hold weights lazily so that a
 * writer can stream multi-GB models to external data without one JS buffer.
 */

export type DType =
  | "float32"
  | "float16"
  | "bfloat16"
  | "float64"
  | "int64"
  | "int32"
  | "int8"
  | "uint8"
  | "bool";

/** A dimension: a known size, or a symbol (`"batch"`, `"seq"`) for a dynamic one. */
export type Dim = number | string;
export type Shape = Dim[];

export interface Value {
  readonly name: string;
  readonly dtype: DType;
  /** null when the rank is unknown. */
  readonly shape: Shape | null;
}

export type TensorArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Int8Array
  | Uint16Array;

/** Tensor contents: given now, or produced on demand by the writer. */
export type TensorSource = TensorArray | (() => TensorArray | Promise<TensorArray>);

export interface Initializer {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: number[];
  readonly data: TensorSource;
}

export type Attribute =
  | { kind: "int"; value: number }
  | { kind: "float"; value: number }
  | { kind: "string"; value: string }
  | { kind: "ints"; value: number[] }
  | { kind: "floats"; value: number[] }
  | { kind: "strings"; value: string[] }
  | { kind: "tensor"; value: { dtype: DType; shape: number[]; data: TensorArray } }
  /** Inside a function body: the attribute takes the caller's attribute of that name. */
  | { kind: "ref"; value: string; type: "int" | "float" | "ints" | "floats" | "string" };

export interface Node {
  readonly op: string;
  readonly domain: string;
  readonly name: string;
  readonly inputs: string[];
  readonly outputs: string[];
  readonly attributes: Record<string, Attribute>;
}

/** A model-local function (FunctionProto); ORT inlines it at session creation. */
export interface FunctionDef {
  readonly name: string;
  readonly domain: string;
  readonly inputs: string[];
  readonly outputs: string[];
  readonly attributes: string[];
  readonly nodes: Node[];
  readonly opsets: Record<string, number>;
}

export interface Graph {
  readonly name: string;
  readonly inputs: Value[];
  readonly outputs: Value[];
  readonly nodes: Node[];
  readonly initializers: Initializer[];
  /** Intermediate values with inferred types (written as value_info). */
  readonly values: Map<string, Value>;
  readonly functions: FunctionDef[];
  readonly opsets: Record<string, number>;
}

export const elementBytes: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function isFloat(dtype: DType): boolean {
  return dtype === "float32" || dtype === "float16" || dtype === "bfloat16" ||
    dtype === "float64";
}

export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export class GraphError extends Error {
  override name = "GraphError";
}
