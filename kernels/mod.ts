/** The ScaLoRA kernels: ONNX functions in the `ai.scalora` domain and their batched runners. */
export * from "./functions.ts";
export { type GramInput, type ScalingGrams, ScalingGramsKernel } from "./scaling_grams.ts";
export { type MergeInput, MergeKernel, type MergeKernelOptions } from "./merge.ts";
export { type AdamWHyper, AdamWKernel, type AdamWTensor } from "./adamw.ts";
export { KernelError } from "./kernel_sessions.ts";
