/**
 * deno run -A bench/gpu/pack.ts [--out DIR] [--limit-mib N]
 *
 * Packs what a GPU machine without network (and without Deno) needs to run
 * bench/gpu/run.sh over this checkout, into one folder (default .gpu-pack/,
 * git-ignored) of at most --limit-mib (default 60) MiB:
 * - deno.xz: this Deno binary, xz-compressed;
 * - node_modules.tar.xz: the npm packages the benchmark's module graph loads
 *   (its roots and their dependencies, followed through node_modules), with
 *   onnxruntime-node cut to its linux-x64 binaries, onnxruntime-web to its
 *   JavaScript (its wasm is never loaded in Deno), sharp's musl variants and
 *   type declarations dropped;
 * - debs/: the Vulkan loader (libvulkan1) and the GL dispatch libraries the
 *   NVIDIA Vulkan driver links against (libglvnd0, libglx0, libegl1, libgl1,
 *   libopengl0, libgles2), from Debian, for machine images with an NVIDIA
 *   driver but no loader;
 * - manifest.json: versions, sizes, the package list.
 * Fails (exit 1) above the limit. The folder travels with `carry` (device tool).
 */
import { parseArgs } from "node:util";
import { dirname, join, relative } from "node:path";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: ".gpu-pack" },
    "limit-mib": { type: "string", default: "60" },
  },
});
const OUT = values.out;
const LIMIT = Number(values["limit-mib"]) * 2 ** 20;
const NM = "node_modules/.deno";
/** What bench/gpu.ts and the model worker import from npm (checked against `deno info` below). */
const ROOTS = ["@huggingface/transformers", "hono", "onnx-proto", "onnxruntime-node", "zod"];
const ORT_BINARIES = "bin/napi-v6/linux/x64/";
/** Paths (relative to a package's own directory; directories end in "/") not needed on linux-x64 under Deno. */
const PRUNE: Record<string, (path: string) => boolean> = {
  "onnxruntime-node": (p) => p.startsWith("bin/") && !p.startsWith(ORT_BINARIES) && !ORT_BINARIES.startsWith(p),
  "onnxruntime-web": (p) => p.endsWith(".wasm") || p.endsWith(".map"),
  "@types/node": () => true,
};
const DROP_PACKAGES = [/^@img\+sharp-libvips-linuxmusl/, /^@img\+sharp-linuxmusl/];
const LOADER_DEBS = ["libvulkan1", "libglvnd0", "libglx0", "libegl1", "libgl1", "libopengl0", "libgles2"];

async function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd: opts.cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

/** npm packages a module graph loads directly, from `deno info --json`. */
async function graphPackages(entry: string): Promise<Set<string>> {
  const info = JSON.parse(await run(Deno.execPath(), ["info", "--json", entry]));
  const names = new Set<string>();
  for (const m of info.modules as { kind?: string; npmPackage?: string }[]) {
    if (m.kind === "npm" && m.npmPackage) names.add(m.npmPackage.replace(/@[^@]+$/, ""));
  }
  return names;
}

/** The .deno directory names a package directory's node_modules links to. */
async function linkedDirs(dir: string): Promise<string[]> {
  const out: string[] = [];
  const nm = join(NM, dir, "node_modules");
  const visit = async (path: string) => {
    for await (const e of Deno.readDir(path)) {
      const p = join(path, e.name);
      if (e.isSymlink) out.push(relative(NM, await Deno.realPath(p)).split("/")[0]);
      else if (e.isDirectory && e.name.startsWith("@")) await visit(p);
    }
  };
  await visit(nm);
  return out;
}

async function rootDir(name: string): Promise<string> {
  return relative(NM, await Deno.realPath(join("node_modules", name))).split("/")[0];
}

async function sizeOf(path: string): Promise<number> {
  return (await Deno.stat(path)).size;
}

// The module graph's packages must be the ROOTS (a new npm import needs adding here).
const used = new Set([
  ...await graphPackages("bench/gpu.ts"),
  ...await graphPackages("src/runtime/model_worker.ts"),
]);
const missing = [...used].filter((n) => !ROOTS.includes(n));
if (missing.length) throw new Error(`the benchmark imports npm packages the packer does not know: ${missing}`);

const dirs = new Set<string>();
const stack = await Promise.all(ROOTS.map(rootDir));
while (stack.length) {
  const d = stack.pop()!;
  if (dirs.has(d) || DROP_PACKAGES.some((re) => re.test(d))) continue;
  dirs.add(d);
  stack.push(...await linkedDirs(d));
}

// The compressed Deno binary takes minutes (xz -9): reused when the last pack made it from this Deno.
const lastDeno = await Deno.readTextFile(`${OUT}/manifest.json`).then((t) => JSON.parse(t).deno).catch(() => null);
const keepDeno = lastDeno === Deno.version.deno && (await Deno.stat(`${OUT}/deno.xz`).catch(() => null)) !== null;
await Deno.mkdir(OUT, { recursive: true });
for await (const e of Deno.readDir(OUT)) {
  if (!(keepDeno && e.name === "deno.xz")) await Deno.remove(`${OUT}/${e.name}`, { recursive: true });
}
const stage = `${OUT}/stage`;
await Deno.mkdir(`${stage}/node_modules/.deno`, { recursive: true });
for (const d of dirs) {
  // Copy the package dir (and its links), then prune inside the package itself.
  await run("cp", ["-a", join(NM, d), join(stage, "node_modules/.deno", d)]);
  const pkgRoot = join(stage, "node_modules/.deno", d, "node_modules");
  for (const [name, drop] of Object.entries(PRUNE)) {
    const own = join(pkgRoot, name);
    if (!(await Deno.stat(own).catch(() => null))?.isDirectory) continue;
    const walk = async (path: string) => {
      for await (const e of Deno.readDir(path)) {
        const p = join(path, e.name);
        const rel = relative(own, p);
        if (e.isDirectory) {
          if (drop(`${rel}/`)) await Deno.remove(p, { recursive: true });
          else await walk(p);
        } else if (drop(rel)) await Deno.remove(p);
      }
    };
    await walk(own);
  }
}
// Deno's hoisted links (node_modules/.deno/node_modules): packages import some undeclared dependencies
// (transformers.js imports onnxruntime-common) and resolve them there.
const hoisted = join(NM, "node_modules");
const hoist = async (path: string) => {
  for await (const e of Deno.readDir(path)) {
    const p = join(path, e.name);
    if (e.isDirectory && e.name.startsWith("@")) await hoist(p);
    else if (e.isSymlink && dirs.has(relative(NM, await Deno.realPath(p)).split("/")[0])) {
      const to = join(stage, "node_modules/.deno/node_modules", relative(hoisted, p));
      await Deno.mkdir(dirname(to), { recursive: true });
      await Deno.symlink(await Deno.readLink(p), to);
    }
  }
};
await hoist(hoisted);
// Top-level links the project resolves its imports through.
for (const name of ROOTS) {
  const link = join(stage, "node_modules", name);
  await Deno.mkdir(dirname(link), { recursive: true });
  await Deno.symlink(
    relative(dirname(link), join(stage, "node_modules/.deno", await rootDir(name), "node_modules", name)),
    link,
  );
}
await run("tar", ["-cJf", "../node_modules.tar.xz", "node_modules"], { cwd: stage });
await Deno.remove(stage, { recursive: true });

if (!keepDeno) await run("sh", ["-c", `xz -9 -T0 -c "${Deno.execPath()}" > "${OUT}/deno.xz"`]);

await Deno.mkdir(`${OUT}/debs`, { recursive: true });
let debs = "";
try {
  await run("apt-get", ["download", ...LOADER_DEBS], { cwd: `${OUT}/debs` });
  debs = (await run("sh", ["-c", "ls debs"], { cwd: OUT })).trim();
} catch (e) {
  console.error(`warning: could not download ${LOADER_DEBS} (${e instanceof Error ? e.message.split("\n")[0] : e})`);
}

const files = ["deno.xz", "node_modules.tar.xz", ...debs.split("\n").filter(Boolean).map((f) => `debs/${f}`)];
const sizes: Record<string, number> = Object.fromEntries(
  await Promise.all(files.map(async (f) => [f, await sizeOf(`${OUT}/${f}`)] as const)),
);
const total = Object.values(sizes).reduce((a, b) => a + b, 0);
const manifest = {
  deno: Deno.version.deno,
  packages: [...dirs].sort(),
  sizes,
  total_bytes: total,
  limit_bytes: LIMIT,
};
await Deno.writeTextFile(`${OUT}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
const mib = (n: number) => (n / 2 ** 20).toFixed(1);
console.log(`packed ${OUT}: ${files.map((f) => `${f} ${mib(sizes[f])} MiB`).join(", ")}; total ${mib(total)} MiB`);
if (total > LIMIT) {
  console.error(`error: the pack is ${mib(total)} MiB, over the ${mib(LIMIT)} MiB limit`);
  Deno.exit(1);
}
