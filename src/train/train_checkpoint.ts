/**
 * Checkpoint/resume of the full training state: adapter factors, AdamW
 * moments, the weight state's exact tensors (merged weights, or baked
 * weights + pending low-rank merges; with a merge log, merged weights it can
 * rebuild from the base weights are left out), the step, the data position and ScaLoRA's lr boost. The
 * RNG needs no state of its own: adapter init and every epoch's order derive
 * from (seed, label). Float32 tensors are stored bit-exactly (safetensors F32),
 * so a resumed run reproduces the uninterrupted loss curve exactly.
 *
 * Layout: <dir>/state.safetensors + <dir>/trainer.json, written to a
 * temporary sibling directory and renamed into place.
 */
import { openSafetensors, writeSafetensors } from "../model/safetensors.ts";
import { type BoostState, initialBoost, storedBoost } from "./lr_boost.ts";
import type { Trainer } from "./trainer.ts";
import type { DataPosition, WeightSnapshot } from "./types.ts";

const FORMAT = "scalora-train-state";
/**
 * 2: the weight state's tensors may leave out merged weights that the merge log rebuilds (merge_log.ts).
 * 3: also the weights of folded layers, rebuilt from the base + D (+ fixups) and the merges since.
 */
const VERSION = 3;
const READABLE = [1, 2, 3];
const WEIGHTS_PREFIX = "weights:";

interface TrainerJson {
  format: typeof FORMAT;
  version: number;
  step: number;
  data: DataPosition;
  /**
   * ScaLoRA's learning-rate boost (lr_boost.ts); absent in checkpoints written before it (resumed from ω = 1), with
   * `previous` instead of `history` in those written before its lag (storedBoost converts them).
   */
  boost?: BoostState;
  weightsKind: string;
  adapters: { name: string; m: number; n: number; rank: number; scale: number }[];
  /** For reference (a resumed run may change e.g. the total steps). */
  config: unknown;
}

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

export async function saveTrainingCheckpoint<B>(trainer: Trainer<B>, dir: string): Promise<void> {
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const a of trainer.model.adapters) {
    const f = trainer.factors.get(a.name)!, mo = trainer.optimizer.moments.get(a.name)!;
    tensors.push(
      { name: `lora.${a.name}.A`, shape: [a.m, a.rank], data: f.A },
      { name: `lora.${a.name}.B`, shape: [a.n, a.rank], data: f.B },
      { name: `adam.${a.name}.mA`, shape: [a.m, a.rank], data: mo.mA },
      { name: `adam.${a.name}.vA`, shape: [a.m, a.rank], data: mo.vA },
      { name: `adam.${a.name}.mB`, shape: [a.n, a.rank], data: mo.mB },
      { name: `adam.${a.name}.vB`, shape: [a.n, a.rank], data: mo.vB },
    );
  }
  const snap = await trainer.model.weights.snapshot();
  for (const [name, t] of snap.tensors) tensors.push({ name: WEIGHTS_PREFIX + name, shape: t.shape, data: t.data });
  const meta: TrainerJson = {
    format: FORMAT,
    version: VERSION,
    step: trainer.step,
    data: trainer.source.position(),
    boost: trainer.boost,
    weightsKind: snap.kind,
    adapters: trainer.model.adapters.map(({ name, m, n, rank, scale }) => ({ name, m, n, rank, scale })),
    config: trainer.config,
  };
  const tmp = `${dir.replace(/\/+$/, "")}.partial-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  await writeSafetensors(`${tmp}/state.safetensors`, tensors, { dtype: "F32", metadata: { format: FORMAT } });
  await Deno.writeTextFile(`${tmp}/trainer.json`, JSON.stringify(meta, null, 2) + "\n");
  await Deno.remove(dir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.rename(tmp, dir);
}

/** Restores a checkpoint into a trainer built over the same adapters (fresh or mid-run). */
export async function loadTrainingCheckpoint<B>(trainer: Trainer<B>, dir: string): Promise<void> {
  let meta: TrainerJson;
  try {
    meta = JSON.parse(await Deno.readTextFile(`${dir}/trainer.json`));
  } catch (e) {
    throw new CheckpointError(`${dir}: cannot read trainer.json (${e instanceof Error ? e.message : e})`);
  }
  if (meta.format !== FORMAT || !READABLE.includes(meta.version)) {
    throw new CheckpointError(`${dir}: not a ${FORMAT} v${READABLE.join("/")} checkpoint`);
  }
  const want = trainer.model.adapters.map(({ name, m, n, rank, scale }) => ({ name, m, n, rank, scale }));
  if (JSON.stringify(want) !== JSON.stringify(meta.adapters)) {
    throw new CheckpointError(`${dir}: adapters differ from the model's (${JSON.stringify(meta.adapters)})`);
  }
  const file = await openSafetensors(`${dir}/state.safetensors`);
  try {
    const read = async (name: string, size: number) => {
      const data = await file.read(name);
      if (data.length !== size) {
        throw new CheckpointError(`${dir}: "${name}" has ${data.length} values, expected ${size}`);
      }
      return data;
    };
    for (const a of trainer.model.adapters) {
      const f = trainer.factors.get(a.name)!, mo = trainer.optimizer.moments.get(a.name)!;
      const mr = a.m * a.rank, nr = a.n * a.rank;
      f.A.set(await read(`lora.${a.name}.A`, mr));
      f.B.set(await read(`lora.${a.name}.B`, nr));
      mo.mA.set(await read(`adam.${a.name}.mA`, mr));
      mo.vA.set(await read(`adam.${a.name}.vA`, mr));
      mo.mB.set(await read(`adam.${a.name}.mB`, nr));
      mo.vB.set(await read(`adam.${a.name}.vB`, nr));
    }
    const snap: WeightSnapshot = { kind: meta.weightsKind, tensors: new Map() };
    for (const [name, entry] of file.tensors) {
      if (!name.startsWith(WEIGHTS_PREFIX)) continue;
      snap.tensors.set(name.slice(WEIGHTS_PREFIX.length), { shape: entry.shape, data: await file.read(name) });
    }
    await trainer.model.weights.restore(snap);
  } finally {
    file.close();
  }
  const boost = meta.boost === undefined ? initialBoost() : storedBoost(meta.boost);
  if (!boost) throw new CheckpointError(`${dir}: invalid lr boost state ${JSON.stringify(meta.boost)}`);
  trainer.setBoost(boost);
  trainer.setStep(meta.step);
  trainer.source.seek(meta.data);
}
