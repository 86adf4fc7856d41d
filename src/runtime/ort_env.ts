/**
 * Side-effect module: every entry point (src/main.ts, the CLIs, workers,
 * benches, tests) imports it first, before anything that loads onnxruntime
 * (directly or through @huggingface/transformers, which reads the global when
 * it loads); tests/import_rules.test.ts checks that none misses it. ort.ts
 * imports it too, for graphs that reach onnxruntime only through it.
 *
 * Deno defines `globalThis.Float16Array`; onnxruntime-common then assumes
 * native float16 tensors and mishandles the Uint16Array-backed float16 data
 * that onnxruntime-node produces/expects. Removing the global makes it fall
 * back to its Uint16Array path.
 */
delete (globalThis as { Float16Array?: unknown }).Float16Array;
