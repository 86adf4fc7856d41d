/**
 * deno task doctor [--json] [--preset tiny|smollm2-135m|llama3.2-1b] [--work-dir DIR]
 *
 * Lists the execution providers, GPUs and drivers found, which device
 * DEVICE=auto picks and why, and checks every usable device against the CPU
 * (numerics, decode tokens/s, one training step, CPU fallbacks per graph).
 * Exits 1 when a usable device gives wrong results.
 */
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { TINY_PRESETS, type TinyPreset } from "../model/tiny_model.ts";
import { formatDoctor, runDoctor } from "./doctor_report.ts";
import { oneOfFlag, parseFlags, UsageError } from "./flags.ts";

const USAGE = "usage: deno task doctor [--json] [--preset tiny|smollm2-135m|llama3.2-1b] [--work-dir DIR]";

const FLAGS = {
  json: { type: "boolean" },
  preset: { type: "string" },
  "work-dir": { type: "string" },
} as const;

async function main(argv: string[]): Promise<number> {
  let values, preset: TinyPreset;
  try {
    values = parseFlags(argv, FLAGS);
    preset = oneOfFlag("preset", values.preset ?? "tiny", TINY_PRESETS);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const report = await runDoctor({
    preset,
    workDir: values["work-dir"],
    log: values.json ? undefined : (line) => console.error(line),
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
  const wrong = report.devices.some((d) => d.usable && d.numerics.some((n) => !n.ok));
  return wrong ? 1 : 0;
}

Deno.exit(await main(Deno.args));
