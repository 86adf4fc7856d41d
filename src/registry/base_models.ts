/**
 * The base models a server was started with (id → checkpoint source), the
 * device/dtype every engine of this process uses, and the compiled base
 * models (prepareModel: compile once, cached under DATA_DIR) that versions
 * are patched from.
 */
import { type Checkpoint, openCheckpoint } from "../model/checkpoint.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { chooseDevice, type Device, type DeviceChoice, type DeviceRequest } from "../runtime/device.ts";
import { defaultDtype, type PreparedModel, prepareModel } from "../serve/load_model.ts";

export interface BaseModelSpec {
  /** The id clients send (and versions name as their base). */
  id: string;
  /** Local directory or hub id; default: the id. */
  source?: string;
}

export interface BaseModelsOptions {
  dataDir: string;
  /** A request, or a choice already made (chooseDevice) so the probe and its log line happen once. */
  device?: DeviceRequest | DeviceChoice;
  dtype?: ComputeDType;
}

export class BaseModels {
  readonly dataDir: string;
  readonly device: Device;
  readonly dtype: ComputeDType;
  /** Unix seconds the catalog was built (the `created` of base models). */
  readonly created = Math.floor(Date.now() / 1000);
  readonly #specs: Map<string, string>;
  readonly #prepared = new Map<string, Promise<PreparedModel>>();

  constructor(specs: readonly BaseModelSpec[], opts: BaseModelsOptions) {
    this.dataDir = opts.dataDir;
    const choice = typeof opts.device === "object" ? opts.device : chooseDevice(opts.device ?? "auto");
    this.device = choice.device;
    this.dtype = opts.dtype ?? defaultDtype(choice);
    this.#specs = new Map(specs.map((s) => [s.id, s.source ?? s.id]));
  }

  ids(): string[] {
    return [...this.#specs.keys()];
  }

  has(id: string): boolean {
    return this.#specs.has(id);
  }

  /** The source of a registered base id, else null (the job service's BaseModelLookup port). */
  resolve(id: string): string | null {
    return this.#specs.get(id) ?? null;
  }

  /** Where a base id's checkpoint lives; an unregistered id is taken as a source itself. */
  source(id: string): string {
    return this.#specs.get(id) ?? id;
  }

  openCheckpoint(id: string): Promise<Checkpoint> {
    return openCheckpoint(this.source(id), { cacheDir: `${this.dataDir}/hub` });
  }

  /** The compiled base model and its tokenizer (compiled at most once per process). */
  prepare(id: string): Promise<PreparedModel> {
    let hit = this.#prepared.get(id);
    if (!hit) {
      hit = prepareModel(this.source(id), { dataDir: this.dataDir, device: this.device, dtype: this.dtype });
      // A failure is not cached: the next request retries.
      hit.catch(() => this.#prepared.delete(id));
      this.#prepared.set(id, hit);
    }
    return hit;
  }
}
