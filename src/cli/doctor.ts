/**
 * deno task doctor [--json] [--preset tiny|smollm2-135m|llama3.2-1b] [--work-dir DIR]
 *
 * Lists the execution providers, GPUs and drivers found, which device
 * DEVICE=auto picks and why, and checks every usable device against the CPU
 * (numerics, decode tokens/s, one training step, CPU fallbacks per graph).
 * Exits 1 when a usable device gives wrong results.
 */
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { TINY_PRESETS, type TinyPreset } from "../model/tiny_model.ts";
import { formatDoctor, runDoctor } from "./doctor_report.ts";

const USAGE = "usage: deno task doctor [--json] [--preset tiny|smollm2-135m|llama3.2-1b] [--work-dir DIR]";

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: "boolean", default: false },
        preset: { type: "string", default: "tiny" },
        "work-dir": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!(TINY_PRESETS as readonly string[]).includes(values.preset)) {
    console.error(`error: --preset must be one of ${TINY_PRESETS.join(", ")}\n${USAGE}`);
    return 2;
  }
  const report = await runDoctor({
    preset: values.preset as TinyPreset,
    workDir: values["work-dir"],
    log: values.json ? undefined : (line) => console.error(line),
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
  const wrong = report.devices.some((d) => d.usable && d.numerics.some((n) => !n.ok));
  return wrong ? 1 : 0;
}

Deno.exit(await main(Deno.args));
