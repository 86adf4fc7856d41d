/**
 * onnxruntime profiles of a training run, split into the step's phases.
 *
 * A session opened with a profile prefix writes one Chrome-trace JSON when it
 * is released: a `model_run` event per run (cat "Session") and a
 * `<node>_kernel_time` event per node and run (cat "Node"). Training-graph
 * nodes are named by their scope (src/onnx/DESIGN.md): `/grad/…` is the
 * backward pass, `/loss/…` the vocabulary projection with the cross-entropy
 * and its gradient (src/onnx/losses.ts), everything else the forward pass.
 * What a run takes beyond its nodes' kernels (feeding, fetching, the
 * executor) is `other`.
 */

export interface ProfileEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: { op_name?: string; provider?: string };
}

/** Milliseconds of one training-graph run by phase. */
export interface GraphRunPhases {
  run: number;
  forward: number;
  backward: number;
  loss: number;
  other: number;
}

/** Reads (and removes) every profile file written under `prefix` (`<prefix>_<date>_<time>.json`). */
export async function readProfileEvents(prefix: string): Promise<ProfileEvent[]> {
  const slash = prefix.lastIndexOf("/");
  const dir = slash >= 0 ? prefix.slice(0, slash) : ".";
  const base = prefix.slice(slash + 1);
  const events: ProfileEvent[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.startsWith(`${base}_`) || !e.name.endsWith(".json")) continue;
    const path = `${dir}/${e.name}`;
    for (const ev of JSON.parse(await Deno.readTextFile(path)) as ProfileEvent[]) events.push(ev);
    await Deno.remove(path);
  }
  return events;
}

/** `model_run` events in time order. */
export function modelRuns(events: readonly ProfileEvent[]): { ts: number; dur: number }[] {
  return events.filter((e) => e.cat === "Session" && e.name === "model_run")
    .map((e) => ({ ts: e.ts ?? 0, dur: e.dur ?? 0 }))
    .sort((a, b) => a.ts - b.ts);
}

export function phaseOfNode(name: string): "forward" | "backward" | "loss" {
  if (name.startsWith("/grad/")) return "backward";
  if (name.startsWith("/loss/")) return "loss";
  return "forward";
}

/** Per run of a training graph, in time order: kernel time by phase (ms). */
export function graphRunPhases(events: readonly ProfileEvent[]): GraphRunPhases[] {
  const runs = modelRuns(events);
  const out = runs.map((r) => ({ run: r.dur / 1000, forward: 0, backward: 0, loss: 0, other: 0 }));
  const nodes = events.filter((e) => e.cat === "Node" && e.name?.endsWith("_kernel_time"))
    .sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0));
  let i = 0;
  for (const e of nodes) {
    const ts = e.ts ?? 0;
    while (i < runs.length && ts > runs[i].ts + runs[i].dur) i++;
    if (i >= runs.length) break;
    if (ts < runs[i].ts) continue;
    out[i][phaseOfNode(e.name!)] += (e.dur ?? 0) / 1000;
  }
  for (const r of out) r.other = Math.max(0, r.run - r.forward - r.backward - r.loss);
  return out;
}
