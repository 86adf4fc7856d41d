/** The one place onnxruntime-node is imported (after the Float16Array fix). */
import "./ort_env.ts";
import * as ort from "onnxruntime-node";

export { ort };
export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;
