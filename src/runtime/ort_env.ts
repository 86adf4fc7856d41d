/**
 * Side-effect module: import it before anything that loads onnxruntime
 * (directly or through @huggingface/transformers).
 *
 * Deno defines `globalThis.Float16Array`; onnxruntime-common then assumes
 * native float16 tensors and mishandles the Uint16Array-backed float16 data
 * that onnxruntime-node produces/expects. Removing the global makes it fall
 * back to its Uint16Array path.
 */
delete (globalThis as { Float16Array?: unknown }).Float16Array;
