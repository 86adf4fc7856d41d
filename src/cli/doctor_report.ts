/**
 * What this machine can run on, checked for real: the execution providers
 * onnxruntime-node ships, the GPUs on the PCI bus, the drivers (Vulkan devices
 * through the system loader, the NVIDIA driver, onnxruntime's CUDA provider),
 * which device `auto` picks and why — then, on every usable device, a
 * numerics check against the CPU in fp32 (and fp16 on a GPU) on a generated
 * model, a micro-benchmark (decode tokens/s, one training step) and, on a GPU,
 * the nodes onnxruntime leaves on the CPU provider per graph (serving,
 * training, kernels). `deno task doctor` prints it (doctor.ts).
 */
import { AdamWKernel } from "../../kernels/adamw.ts";
import { MergeKernel } from "../../kernels/merge.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { servingModelPath } from "../model/serving_graph.ts";
import { generateTinyModel, type TinyPreset } from "../model/tiny_model.ts";
import { prepareModel } from "../serve/load_model.ts";
import { collate } from "../train/batching.ts";
import { initAdapterFactors, LmTrainingModel } from "../train/lm_training_graph.ts";
import { CausalLM, type KvCache } from "../runtime/causal_lm.ts";
import { chooseDevice, type Device, type DeviceChoice, probeDevices } from "../runtime/device.ts";
import { ort } from "../runtime/ort.ts";
import { cpuFallbacks, type PlacementReport, readProfile } from "../runtime/placement.ts";
import type { VulkanProbe } from "../runtime/vulkan_probe.ts";

export interface PciGpu {
  address: string;
  vendor: string;
  vendorId: number;
}

export interface NumericsCheck {
  dtype: ComputeDType;
  /** max |logit − CPU fp32 logit| / max |CPU fp32 logit| over every step. */
  maxRelDiff: number;
  /** Steps whose argmax equals the CPU's. */
  greedyAgree: number;
  steps: number;
  ok: boolean;
}

export interface Placement {
  graph: "serving" | "training" | "kernels";
  providers: Record<string, number>;
  /** Ops on the CPU provider ("Op×nodes"), most time first. */
  cpuOps: string[];
  /** Device ↔ host copies onnxruntime inserted (nodes). */
  copies: PlacementReport["copies"];
}

export interface DeviceCheck {
  device: Device;
  usable: boolean;
  /** Why it cannot be used, or what failed during the checks. */
  reason: string;
  numerics: NumericsCheck[];
  /** Batch-1 decode on the benchmark model, after warm-up. */
  decodeTokensPerSecond: number | null;
  /** One forward/backward of the training graph (rank 8, every linear), after warm-up. */
  trainStepMs: number | null;
  placement: Placement[];
}

export interface DoctorReport {
  runtime: {
    deno: string;
    onnxruntime: string;
    executionProviders: { name: string; bundled: boolean }[];
    cpuCores: number;
  };
  gpus: PciGpu[];
  drivers: { vulkan: VulkanProbe; nvidia: string | null; cudaProvider: string | null };
  auto: DeviceChoice;
  devices: DeviceCheck[];
  /** Plain statements: a GPU that is present but unusable, and why. */
  notes: string[];
  benchmarkModel: string;
}

export interface DoctorOptions {
  /** Generated model for the micro-benchmark (default "tiny"; "smollm2-135m" for realistic figures). */
  preset?: TinyPreset;
  /** Scratch directory (models, compiled graphs, profiles); default a temporary one, removed after. */
  workDir?: string;
  log?: (line: string) => void;
}

const VENDORS: Record<number, string> = { 0x10de: "NVIDIA", 0x1002: "AMD", 0x8086: "Intel" };
/** Relative logit error allowed: fp32 on any device, fp16 on a GPU. */
const TOLERANCE: Record<string, number> = { float32: 1e-4, float16: 2e-2 };
const CHECK_STEPS = 8;
const PROMPT = [84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110];

/** Display controllers on the PCI bus (class 0x03xxxx) from a GPU vendor, whatever drivers are loaded. */
export function pciGpus(root = "/sys/bus/pci/devices"): PciGpu[] {
  const out: PciGpu[] = [];
  try {
    for (const e of Deno.readDirSync(root)) {
      try {
        const cls = Deno.readTextFileSync(`${root}/${e.name}/class`).trim();
        const vendorId = parseInt(Deno.readTextFileSync(`${root}/${e.name}/vendor`).trim(), 16);
        if (cls.startsWith("0x03") && VENDORS[vendorId]) {
          out.push({ address: e.name, vendor: VENDORS[vendorId], vendorId });
        }
      } catch {
        // not a readable device entry
      }
    }
  } catch {
    // no sysfs (not Linux, or a sandbox without it)
  }
  return out;
}

/** What to tell a user whose GPU exists but cannot be used. */
export function gpuNotes(gpus: readonly PciGpu[], probe: ReturnType<typeof probeDevices>): string[] {
  const notes: string[] = [];
  const vk = probe.webgpu.vulkan;
  for (const gpu of gpus) {
    const seen = vk.ok && vk.devices.some((d) => d.vendorId === gpu.vendorId && !d.software);
    if (!seen) {
      const why = !vk.ok
        ? vk.reason
        : gpu.vendor === "NVIDIA"
        ? "the Vulkan loader lists no NVIDIA device: the NVIDIA driver's Vulkan ICD (nvidia_icd.json) is missing " +
          "or not visible (set VK_DRIVER_FILES to it)"
        : `the Vulkan loader lists no ${gpu.vendor} device: install Mesa's Vulkan drivers (mesa-vulkan-drivers ≥ 23)`;
      notes.push(`${gpu.vendor} GPU at ${gpu.address} is present but WebGPU cannot use it: ${why}`);
    }
    if (gpu.vendor === "NVIDIA" && !probe.cuda.usable) {
      notes.push(`${gpu.vendor} GPU at ${gpu.address}: CUDA unusable: ${probe.cuda.reason}`);
    }
  }
  if (gpus.length === 0 && vk.ok && vk.devices.every((d) => d.software)) {
    notes.push("no GPU on the PCI bus; WebGPU runs only on a software adapter here (DEVICE=webgpu for testing)");
  }
  return notes;
}

async function withDir<T>(workDir: string | undefined, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = workDir ?? await Deno.makeTempDir({ prefix: "scalora-doctor-" });
  await Deno.mkdir(dir, { recursive: true });
  try {
    return await fn(dir);
  } finally {
    if (!workDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Greedy logits of `steps` steps from `prompt`, the cache kept where the device keeps it. */
async function greedyLogits(lm: CausalLM, tokens: number[][]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let past: KvCache | null = null;
  for (const ids of tokens) {
    const r = await lm.forward({ inputIds: [ids], past, numLogitsToKeep: 1 });
    lm.releaseCache(past);
    past = r.present;
    out.push(r.logits.slice());
  }
  lm.releaseCache(past);
  return out;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

async function openLm(dir: string, dataDir: string, device: Device, dtype: ComputeDType, profilePrefix?: string) {
  const prepared = await prepareModel(dir, { dataDir, device, dtype });
  return await CausalLM.open(prepared.config, servingModelPath(prepared.compiledDir, dtype), dtype, {
    device,
    profilePrefix,
  });
}

function placementOf(graph: Placement["graph"], r: PlacementReport): Placement {
  return { graph, providers: r.providers, cpuOps: cpuFallbacks(r), copies: r.copies };
}

async function checkDevice(
  device: Device,
  models: { check: string; bench: string },
  dir: string,
  reference: Float32Array[],
  steps: number[][],
): Promise<DeviceCheck> {
  const gpu = device !== "cpu";
  const report: DeviceCheck = {
    device,
    usable: true,
    reason: "",
    numerics: [],
    decodeTokensPerSecond: null,
    trainStepMs: null,
    placement: [],
  };
  const dataDir = `${dir}/data`;
  // Numerics: the CPU fp32 run is the reference; fp16 too on a GPU.
  for (const dtype of (gpu ? ["float32", "float16"] : ["float32"]) as ComputeDType[]) {
    const prefix = gpu && dtype === "float32" ? `${dir}/profile-serving-${device}` : undefined;
    const lm = await openLm(models.check, dataDir, device, dtype, prefix);
    let logits: Float32Array[];
    try {
      logits = await greedyLogits(lm, steps);
    } finally {
      await lm.release();
    }
    if (prefix) report.placement.push(placementOf("serving", await readProfile(prefix)));
    let worst = 0, agree = 0;
    logits.forEach((l, s) => {
      const ref = reference[s];
      const scale = Math.max(...Array.from(ref, Math.abs));
      for (let i = 0; i < l.length; i++) worst = Math.max(worst, Math.abs(l[i] - ref[i]) / scale);
      if (argmax(l) === argmax(ref)) agree++;
    });
    report.numerics.push({
      dtype,
      maxRelDiff: worst,
      greedyAgree: agree,
      steps: logits.length,
      ok: worst <= TOLERANCE[dtype] && (dtype !== "float32" || agree === logits.length),
    });
  }

  // Decode micro-benchmark: batch 1, the device's default precision.
  const benchDtype: ComputeDType = gpu && !probeDevices().webgpu.hardware.length && device === "webgpu"
    ? "float32"
    : gpu
    ? "float16"
    : "float32";
  const lm = await openLm(models.bench, dataDir, device, benchDtype);
  try {
    const warm = 4, timed = 32;
    const tokens = [PROMPT, ...Array.from({ length: warm + timed }, (_, i) => [(i * 7 + 3) % 200])];
    let past: KvCache | null = null, started = 0;
    for (const [i, ids] of tokens.entries()) {
      if (i === warm + 1) started = performance.now();
      const r = await lm.forward({ inputIds: [ids], past, numLogitsToKeep: 1 });
      lm.releaseCache(past);
      past = r.present;
    }
    lm.releaseCache(past);
    report.decodeTokensPerSecond = timed / ((performance.now() - started) / 1000);
  } finally {
    await lm.release();
  }

  // One training step (forward/backward), after a warm-up step.
  const ckpt = await openCheckpoint(models.bench);
  const trainPrefix = gpu ? `${dir}/profile-training-${device}` : undefined;
  try {
    const model = await LmTrainingModel.create(ckpt, { rank: 8, alpha: 16 }, {
      device,
      threads: navigator.hardwareConcurrency,
      profilePrefix: trainPrefix,
    });
    try {
      const rows = Array.from(
        { length: 2 },
        (_, b) => Array.from({ length: 64 }, (_, i) => (i * 13 + b * 5 + 1) % 200),
      );
      const batch = collate(rows.map((r) => ({ inputIds: r, labels: r })), { padTokenId: 0 });
      const factors = initAdapterFactors(model.adapters, 1);
      await model.forwardBackward(batch, factors);
      const t0 = performance.now();
      await model.forwardBackward(batch, factors);
      report.trainStepMs = performance.now() - t0;
    } finally {
      await model.release();
    }
  } finally {
    ckpt.close();
  }
  if (trainPrefix) report.placement.push(placementOf("training", await readProfile(trainPrefix)));
  if (gpu) {
    report.placement.push(placementOf("kernels", await profileKernels(device, `${dir}/profile-kernels-${device}`)));
  }
  return report;
}

/** The optimizer and merge kernels once on small tensors, profiled. */
async function profileKernels(device: Device, prefix: string): Promise<PlacementReport> {
  const m = 64, n = 48, r = 4;
  const rand = (len: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(i + 1));
  const adamw = new AdamWKernel({ device, profilePrefix: `${prefix}-adamw` });
  const merge = new MergeKernel({ device, profilePrefix: `${prefix}-merge` });
  try {
    await adamw.run([{
      rows: m,
      cols: r,
      p: rand(m * r),
      g: rand(m * r),
      m: rand(m * r),
      v: rand(m * r).map(Math.abs),
    }], {
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      step: 1,
      gradScale: 1,
    });
    await merge.run([{ m, n, k: r, W: rand(m * n), A: rand(m * r), B: rand(n * r), c: rand(r), s: 1 }]);
  } finally {
    await adamw.release();
    await merge.release();
  }
  const a = await readProfile(`${prefix}-adamw`), b = await readProfile(`${prefix}-merge`);
  const providers = { ...a.providers };
  for (const [k, v] of Object.entries(b.providers)) providers[k] = (providers[k] ?? 0) + v;
  return {
    providers,
    ops: [...a.ops, ...b.ops],
    copies: {
      toHost: { nodes: a.copies.toHost.nodes + b.copies.toHost.nodes, micros: 0 },
      fromHost: { nodes: a.copies.fromHost.nodes + b.copies.fromHost.nodes, micros: 0 },
    },
  };
}

export async function runDoctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const log = opts.log ?? (() => {});
  const probe = probeDevices();
  const gpus = pciGpus();
  // deno-lint-ignore no-explicit-any
  const backends = ((ort as any).listSupportedBackends?.() ?? []) as { name: string; bundled: boolean }[];
  const report: DoctorReport = {
    runtime: {
      deno: Deno.version.deno,
      onnxruntime: ort.env.versions.common ?? "unknown",
      executionProviders: backends.map((b) => ({ name: b.name, bundled: b.bundled })),
      cpuCores: navigator.hardwareConcurrency,
    },
    gpus,
    drivers: { vulkan: probe.webgpu.vulkan, nvidia: probe.cuda.driver, cudaProvider: probe.cuda.providerLibrary },
    auto: chooseDevice("auto", probe),
    devices: [],
    notes: gpuNotes(gpus, probe),
    benchmarkModel: opts.preset ?? "tiny",
  };
  await withDir(opts.workDir, async (dir) => {
    log(`generating the check model${opts.preset && opts.preset !== "tiny" ? ` and the ${opts.preset} model` : ""}…`);
    const check = `${dir}/check-model`;
    await generateTinyModel({ out: check, arch: "qwen3", preset: "tiny", tokenizer: "bytes", seed: 11 });
    const bench = opts.preset && opts.preset !== "tiny" ? `${dir}/bench-model` : check;
    if (bench !== check) {
      await generateTinyModel({ out: bench, arch: "llama", preset: opts.preset!, tokenizer: "bytes", seed: 11 });
    }
    // The CPU fp32 reference: greedy from the prompt; every device is fed the same tokens.
    const refLm = await openLm(check, `${dir}/data`, "cpu", "float32");
    let reference: Float32Array[], steps: number[][];
    try {
      steps = [PROMPT];
      reference = [];
      let past: KvCache | null = null;
      for (let s = 0; s < CHECK_STEPS; s++) {
        const r = await refLm.forward({ inputIds: [steps[s]], past, numLogitsToKeep: 1 });
        past = r.present;
        reference.push(r.logits.slice());
        if (s + 1 < CHECK_STEPS) steps.push([argmax(r.logits)]);
      }
    } finally {
      await refLm.release();
    }
    const candidates: { device: Device; usable: boolean; reason: string }[] = [
      { device: "cpu", usable: true, reason: "" },
      { device: "webgpu", usable: probe.webgpu.usable, reason: probe.webgpu.reason },
      { device: "cuda", usable: probe.cuda.usable, reason: probe.cuda.reason },
    ];
    for (const c of candidates) {
      if (!c.usable) {
        report.devices.push({ ...c, numerics: [], decodeTokensPerSecond: null, trainStepMs: null, placement: [] });
        continue;
      }
      log(`checking ${c.device}…`);
      try {
        report.devices.push(await checkDevice(c.device, { check, bench }, dir, reference, steps));
      } catch (e) {
        const reason = `the checks failed: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`;
        report.devices.push({
          device: c.device,
          usable: false,
          reason,
          numerics: [],
          decodeTokensPerSecond: null,
          trainStepMs: null,
          placement: [],
        });
        if (c.device !== "cpu") report.notes.push(`${c.device} is installed but unusable: ${reason}`);
      }
    }
  });
  return report;
}

/** The report as the table `deno task doctor` prints. */
export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  const eps = r.runtime.executionProviders.map((e) => `${e.name}${e.bundled ? "" : " (not bundled)"}`).join(", ");
  lines.push(`onnxruntime-node ${r.runtime.onnxruntime}, Deno ${r.runtime.deno}, ${r.runtime.cpuCores} CPU cores`);
  lines.push(`execution providers: ${eps}`);
  lines.push(
    `GPUs on the PCI bus: ${r.gpus.length ? r.gpus.map((g) => `${g.vendor} (${g.address})`).join(", ") : "none"}`,
  );
  const vk = r.drivers.vulkan;
  lines.push(
    vk.ok
      ? `Vulkan (${vk.loader}): ${
        vk.devices.map((d) =>
          `${d.name} [${d.vendor}, ${d.type}${d.software ? ", software" : ""}, API ${d.apiVersion}]`
        )
          .join("; ") || "no devices"
      }`
      : `Vulkan: ${vk.reason}`,
  );
  lines.push(`NVIDIA driver: ${r.drivers.nvidia ?? "none"}`);
  lines.push(`CUDA provider: ${r.drivers.cudaProvider ?? "not installed"}`);
  lines.push(`DEVICE=auto picks: ${r.auto.device} (${r.auto.reason})`);
  lines.push("");
  const header = ["device", "status", "numerics vs CPU fp32", "decode tok/s", "train step ms"];
  const rows = r.devices.map((d) => [
    d.device,
    d.usable ? (d.numerics.every((n) => n.ok) ? "ok" : "WRONG RESULTS") : "unusable",
    d.numerics.map((n) =>
      `${n.dtype === "float32" ? "fp32" : "fp16"} ${n.maxRelDiff.toExponential(1)}, ${n.greedyAgree}/${n.steps} greedy`
    ).join("; ") || "-",
    d.decodeTokensPerSecond === null ? "-" : d.decodeTokensPerSecond.toFixed(1),
    d.trainStepMs === null ? "-" : d.trainStepMs.toFixed(0),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) => row.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  lines.push(fmt(header), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt));
  for (const d of r.devices) if (!d.usable) lines.push(`${d.device}: ${d.reason}`);
  for (const d of r.devices) {
    for (const p of d.placement) {
      const count = (name: string) => p.providers[name] ?? 0;
      const gpuNodes = Object.entries(p.providers).filter(([k]) => k !== "CPUExecutionProvider")
        .reduce((n, [, v]) => n + v, 0);
      lines.push(
        `${d.device} ${p.graph} graph: ${gpuNodes} nodes on the GPU, ${count("CPUExecutionProvider")} on the CPU ` +
          `(${p.cpuOps.join(" ") || "none"}); copies inside the graph: ${p.copies.toHost.nodes} to the host, ` +
          `${p.copies.fromHost.nodes} from it`,
      );
    }
  }
  lines.push(`(benchmark model: ${r.benchmarkModel}; numerics on the tiny qwen3 model, ${CHECK_STEPS} greedy steps)`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join("\n");
}
