/**
 * Which execution provider ran each node of a session, read from
 * onnxruntime's profile (a Chrome-trace JSON whose per-node events carry
 * `op_name` and `provider`). On a GPU session, nodes on the CPU provider are
 * fallbacks: each one that consumes a device tensor costs a device → host
 * copy and a synchronisation. onnxruntime places small int64 shape
 * computations on the CPU on purpose; those read host inputs only.
 */

export interface OpPlacement {
  op: string;
  provider: string;
  /** Distinct nodes of this op on this provider. */
  nodes: number;
  /** Summed kernel time over every run in the profile, microseconds. */
  micros: number;
}

export interface PlacementReport {
  /** Nodes per provider (distinct node names). */
  providers: Record<string, number>;
  /** Per op and provider, most time first. */
  ops: OpPlacement[];
  /** Memcpy nodes onnxruntime inserted between providers, per direction, with their summed time. */
  copies: { toHost: { nodes: number; micros: number }; fromHost: { nodes: number; micros: number } };
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: { op_name?: string; provider?: string };
}

/** Summarises a profile's per-node kernel events. */
export function placementOf(events: readonly ProfileEvent[]): PlacementReport {
  const nodesSeen = new Map<string, Set<string>>();
  const byOp = new Map<string, OpPlacement>();
  const copies = { toHost: { nodes: 0, micros: 0 }, fromHost: { nodes: 0, micros: 0 } };
  const copyNodes = { toHost: new Set<string>(), fromHost: new Set<string>() };
  for (const e of events) {
    const op = e.args?.op_name, provider = e.args?.provider;
    if (e.cat !== "Node" || !op || !provider || !e.name) continue;
    const node = e.name.replace(/_kernel_time$/, "");
    if (op === "MemcpyToHost" || op === "MemcpyFromHost") {
      const side = op === "MemcpyToHost" ? "toHost" : "fromHost";
      copyNodes[side].add(node);
      copies[side].micros += e.dur ?? 0;
      continue;
    }
    const key = `${provider}\u0000${op}`;
    const entry = byOp.get(key) ?? { op, provider, nodes: 0, micros: 0 };
    entry.micros += e.dur ?? 0;
    byOp.set(key, entry);
    const seen = nodesSeen.get(key) ?? new Set<string>();
    seen.add(node);
    nodesSeen.set(key, seen);
  }
  const providers: Record<string, number> = {};
  for (const [key, entry] of byOp) {
    entry.nodes = nodesSeen.get(key)!.size;
    providers[entry.provider] = (providers[entry.provider] ?? 0) + entry.nodes;
  }
  copies.toHost.nodes = copyNodes.toHost.size;
  copies.fromHost.nodes = copyNodes.fromHost.size;
  return { providers, ops: [...byOp.values()].sort((a, b) => b.micros - a.micros), copies };
}

/** The ops a GPU session left on the CPU provider, "Op×nodes" most time first. */
export function cpuFallbacks(report: PlacementReport): string[] {
  return report.ops.filter((o) => o.provider === "CPUExecutionProvider").map((o) => `${o.op}×${o.nodes}`);
}

/** Reads and removes the profile file a session wrote (`session.endProfiling()` returns nothing in Node). */
export async function readProfile(prefix: string): Promise<PlacementReport> {
  const slash = prefix.lastIndexOf("/");
  const dir = slash >= 0 ? prefix.slice(0, slash) : ".";
  const base = prefix.slice(slash + 1);
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    // onnxruntime names the file <prefix>_<date>_<time>.json.
    if (e.isFile && e.name.startsWith(`${base}_`) && e.name.endsWith(".json")) files.push(`${dir}/${e.name}`);
  }
  if (files.length === 0) throw new Error(`no onnxruntime profile found for prefix ${prefix}`);
  const events: ProfileEvent[] = [];
  for (const f of files) {
    events.push(...JSON.parse(await Deno.readTextFile(f)) as ProfileEvent[]);
    await Deno.remove(f);
  }
  return placementOf(events);
}
