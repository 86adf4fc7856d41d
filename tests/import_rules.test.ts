/**
 * Two rules of the module graph, read from the import statements:
 *
 * - Dependencies point down only (ARCHITECTURE.md): no module imports a layer
 *   above its own.
 * - Every entry point imports src/runtime/ort_env.ts before anything that
 *   loads onnxruntime or transformers.js (the Float16Array fix must run
 *   first, and only entry points know what runs first).
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

interface Import {
  /** Repository-relative path of a local module, or the bare specifier. */
  target: string;
  /** `import type` / `export type`: no runtime load. */
  typeOnly: boolean;
}

const IMPORT_RE =
  /(?:^|\n)\s*(?:import|export)\s+(type\s+)?(?:[^"';]*?\s+from\s+)?"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g;

const cache = new Map<string, Import[]>();

function importsOf(file: string): Import[] {
  let found = cache.get(file);
  if (found) return found;
  const text = Deno.readTextFileSync(join(ROOT, file));
  found = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[2] ?? m[3];
    const local = spec.startsWith(".");
    found.push({
      target: local ? relative(ROOT, resolve(ROOT, dirname(file), spec)) : spec,
      typeOnly: m[1] !== undefined,
    });
  }
  cache.set(file, found);
  return found;
}

function walk(dir: string, keep: (path: string) => boolean): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(join(ROOT, dir))) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...walk(path, keep));
    else if (keep(path)) out.push(path);
  }
  return out.sort();
}

const isTs = (p: string) => p.endsWith(".ts");

/** Modules below every layer (they import only each other): any module may import them. */
const BASE = ["src/path_checks.ts", "src/errors.ts", "src/disk_space.ts"];

/**
 * Layers, lowest first. A module may import its own layer, the base modules
 * and any layer listed in its `may` (which lists only lower ones). Top-level
 * files (main, app, services, config) and routes/ sit above them all.
 */
const LAYERS: Record<string, string[]> = {
  "src/onnx": [],
  "src/model": ["src/onnx"],
  "src/runtime": ["src/onnx", "src/model"],
  "kernels": ["src/onnx", "src/runtime"],
  "src/serve": ["src/onnx", "src/model", "src/runtime"],
  "src/store": [],
  "src/train": ["src/onnx", "src/model", "src/runtime", "kernels"],
  "src/registry": ["src/onnx", "src/model", "src/runtime", "src/serve", "src/store", "src/train", "kernels"],
  // The job service reaches the registry only through its ports (ports.ts), which name the registry's types.
  "src/jobs": ["src/model", "src/runtime", "src/store", "src/train", "src/registry/types.ts"],
};

function layerOf(path: string): string | null {
  for (const layer of Object.keys(LAYERS)) if (path === layer || path.startsWith(`${layer}/`)) return layer;
  return null;
}

Deno.test("imports point down the layers only", () => {
  const bad: string[] = [];
  for (const file of Object.keys(LAYERS).flatMap((l) => walk(l, isTs))) {
    const own = layerOf(file)!;
    for (const { target } of importsOf(file)) {
      if (!target.startsWith("src/") && !target.startsWith("kernels/") && !target.startsWith("routes/")) continue;
      const theirs = layerOf(target) ?? target;
      if (theirs === own || BASE.includes(target)) continue;
      if (LAYERS[own].some((l) => target === l || target.startsWith(`${l}/`))) continue;
      bad.push(`${file} -> ${target}`);
    }
  }
  assert.deepEqual(bad, []);
});

const LOADS_ORT = new Set(["onnxruntime-node", "@huggingface/transformers"]);
const ORT_ENV = "src/runtime/ort_env.ts";

/** Whether loading `target` (at run time) loads onnxruntime or transformers.js. */
function loadsOrt(target: string, seen = new Set<string>()): boolean {
  if (LOADS_ORT.has(target)) return true;
  if (!isTs(target) || seen.has(target)) return false;
  seen.add(target);
  return importsOf(target).some((i) => !i.typeOnly && loadsOrt(i.target, seen));
}

/**
 * The modules a process or worker starts from: src/main.ts, the CLIs and
 * benches (the files of src/cli and bench that no other module imports),
 * the test files, and the workers.
 */
function entryPoints(): string[] {
  const code = ["src", "kernels", "bench", "routes"].flatMap((d) => walk(d, isTs));
  const imported = new Set(code.flatMap((f) => importsOf(f).map((i) => i.target)));
  const workers = code
    .filter((f) => Deno.readTextFileSync(join(ROOT, f)).includes(`/// <reference lib="deno.worker" />`));
  return [
    "src/main.ts",
    ...[...walk("src/cli", isTs), ...walk("bench", isTs)].filter((f) => !imported.has(f)),
    ...walk("tests", (p) => p.endsWith(".test.ts")),
    ...workers,
  ];
}

Deno.test("entry points import ort_env.ts before onnxruntime or transformers.js", () => {
  const bad: string[] = [];
  for (const entry of entryPoints()) {
    for (const i of importsOf(entry)) {
      if (i.typeOnly) continue;
      if (i.target === ORT_ENV) break;
      if (loadsOrt(i.target)) {
        bad.push(`${entry}: ${i.target} loads onnxruntime before ${ORT_ENV} is imported`);
        break;
      }
    }
  }
  assert.deepEqual(bad, []);
});
