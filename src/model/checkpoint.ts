/**
 * Opens a HF model directory (or hub id, via the download cache): parses
 * config.json, indexes the safetensors weights (single file or sharded via
 * model.safetensors.index.json) and validates them against the expected
 * layout before anything is read, so a bad checkpoint fails at startup with
 * one line naming the file or tensor.
 */
import { type ModelConfig, parseModelConfig } from "./config.ts";
import { describeError, ModelLoadError } from "./errors.ts";
import { downloadFromHub, type HubOptions, isHubId, parseWeightMap } from "./hub.ts";
import { weightLayout } from "./layout.ts";
import { FLOAT_DTYPES, type FloatDtype, isFloatDtype, SafetensorsFile } from "./safetensors.ts";
import { isFile } from "../path_checks.ts";

export interface CheckpointTensor {
  dtype: FloatDtype;
  shape: number[];
  /** Absolute path of the safetensors file holding it. */
  file: string;
  /** Absolute byte offset of its data in `file`. */
  offset: number;
  byteLength: number;
}

export interface Checkpoint {
  /** Local directory holding the files (the cache dir for hub ids). */
  dir: string;
  config: ModelConfig;
  rawConfig: Record<string, unknown>;
  generationConfig: Record<string, unknown> | null;
  /**
   * Every float tensor in the weight files, expected or not (extras such as
   * `rotary_emb.inv_freq` are listed but never required).
   */
  tensors: Map<string, CheckpointTensor>;
  /** One tensor decoded to f32, read from disk on demand. */
  read(name: string): Promise<Float32Array>;
  close(): void;
}

export interface OpenCheckpointOptions {
  /** Download cache for hub ids (see `HubOptions.cacheDir`). */
  cacheDir?: string;
  /** Hub revision for hub ids; default "main". */
  revision?: string;
  /** Hub base URL override (default `$HF_ENDPOINT` or huggingface.co). */
  hubEndpoint?: string;
  /** Hub response timeout in ms (default 10 s). */
  hubTimeoutMs?: number;
}

const SINGLE_WEIGHTS = "model.safetensors";
const WEIGHTS_INDEX = "model.safetensors.index.json";

/**
 * `source` is a local model directory, or a hub id (`owner/name`) when no
 * such directory exists.
 */
export async function openCheckpoint(
  source: string,
  opts: OpenCheckpointOptions = {},
): Promise<Checkpoint> {
  const dir = await resolveSource(source, opts);
  const rawConfig = await readJsonObject(dir, "config.json", true);
  if (rawConfig === null) throw new Error("unreachable: config.json is required");
  let config: ModelConfig;
  try {
    config = parseModelConfig(rawConfig);
  } catch (e) {
    // parseModelConfig names "config.json"; make it the full path.
    if (e instanceof ModelLoadError) {
      throw new ModelLoadError(
        e.message.replace(/^config\.json:/, `${dir}/config.json:`),
        { field: e.field, file: `${dir}/config.json`, cause: e },
      );
    }
    throw e;
  }
  const generationConfig = await readJsonObject(
    dir,
    "generation_config.json",
    false,
  );

  const files = await openWeightFiles(dir);
  try {
    const indexed = indexTensors(files.values());
    validateLayout(config, indexed, dir);
    const tensors = indexed.tensors;
    return {
      dir,
      config,
      rawConfig,
      generationConfig,
      tensors,
      async read(name: string): Promise<Float32Array> {
        const t = tensors.get(name);
        const file = t === undefined ? undefined : files.get(t.file);
        if (file === undefined) {
          throw new ModelLoadError(`${dir}: checkpoint has no tensor "${name}"`, { field: name });
        }
        return await file.read(name);
      },
      close(): void {
        for (const f of files.values()) f.close();
      },
    };
  } catch (e) {
    for (const f of files.values()) f.close();
    throw e;
  }
}

async function resolveSource(
  source: string,
  opts: OpenCheckpointOptions,
): Promise<string> {
  const stat = await Deno.stat(source).catch(() => null);
  if (stat?.isDirectory) return Deno.realPath(source);
  if (stat !== null) {
    throw new ModelLoadError(
      `${source}: is a file; MODEL must be a model directory or a hub id (owner/name)`,
      { file: source },
    );
  }
  if (!isHubId(source)) {
    throw new ModelLoadError(
      `${source}: no such directory (and not a Hugging Face hub id of the form owner/name)`,
      { file: source },
    );
  }
  const hub: HubOptions = {
    cacheDir: opts.cacheDir,
    revision: opts.revision,
    endpoint: opts.hubEndpoint,
    timeoutMs: opts.hubTimeoutMs,
  };
  return Deno.realPath(await downloadFromHub(source, hub));
}

/** Opens every weight file, keyed by absolute path. */
async function openWeightFiles(
  dir: string,
): Promise<Map<string, SafetensorsFile>> {
  const files = new Map<string, SafetensorsFile>();
  try {
    const index = await readJsonObject(dir, WEIGHTS_INDEX, false);
    if (index === null) {
      const path = `${dir}/${SINGLE_WEIGHTS}`;
      if (!(await isFile(path))) {
        const hasBin = await isFile(`${dir}/pytorch_model.bin`);
        throw new ModelLoadError(
          `${dir}: no ${SINGLE_WEIGHTS} or ${WEIGHTS_INDEX}${
            hasBin ? " (pytorch_model.bin is not supported; convert to safetensors)" : ""
          }`,
          { file: path },
        );
      }
      files.set(path, await SafetensorsFile.open(path));
      return files;
    }

    const indexPath = `${dir}/${WEIGHTS_INDEX}`;
    for (const [tensor, shard] of parseWeightMap(index, indexPath)) {
      const path = `${dir}/${shard}`;
      if (!files.has(path)) {
        if (!(await isFile(path))) {
          throw new ModelLoadError(
            `${path}: shard listed in ${WEIGHTS_INDEX} is missing`,
            { file: path },
          );
        }
        files.set(path, await SafetensorsFile.open(path));
      }
      if (!files.get(path)?.has(tensor)) {
        throw new ModelLoadError(
          `${path}: ${WEIGHTS_INDEX} maps tensor "${tensor}" to this shard but it is not in it`,
          { file: path, field: tensor },
        );
      }
    }
    return files;
  } catch (e) {
    for (const f of files.values()) f.close();
    throw e;
  }
}

/**
 * All tensors across the files (a name in two files is an error). Float
 * tensors go in `tensors`; others (e.g. int64 `position_ids` buffers) are only
 * noted, so validateLayout can report an expected tensor stored that way.
 */
function indexTensors(files: Iterable<SafetensorsFile>): {
  tensors: Map<string, CheckpointTensor>;
  nonFloat: Map<string, { file: string; dtype: string }>;
} {
  const tensors = new Map<string, CheckpointTensor>();
  const nonFloat = new Map<string, { file: string; dtype: string }>();
  const owner = new Map<string, string>();
  for (const f of files) {
    for (const e of f.tensors.values()) {
      const other = owner.get(e.name);
      if (other !== undefined) {
        throw new ModelLoadError(
          `${f.path}: tensor "${e.name}" is also in ${other}`,
          { file: f.path, field: e.name },
        );
      }
      owner.set(e.name, f.path);
      if (!isFloatDtype(e.dtype)) {
        nonFloat.set(e.name, { file: f.path, dtype: e.dtype });
        continue;
      }
      tensors.set(e.name, {
        dtype: e.dtype,
        shape: e.shape,
        file: f.path,
        offset: e.offset,
        byteLength: e.byteLength,
      });
    }
  }
  return { tensors, nonFloat };
}

/** Every expected tensor present, float, and of the expected shape. */
function validateLayout(
  config: ModelConfig,
  { tensors, nonFloat }: ReturnType<typeof indexTensors>,
  dir: string,
): void {
  for (const spec of weightLayout(config)) {
    const t = tensors.get(spec.name);
    if (t === undefined) {
      const odd = nonFloat.get(spec.name);
      if (odd !== undefined) {
        throw new ModelLoadError(
          `${odd.file}: tensor "${spec.name}" has unsupported dtype ${JSON.stringify(odd.dtype)}; supported: ${
            FLOAT_DTYPES.join(", ")
          }`,
          { file: odd.file, field: spec.name },
        );
      }
      throw new ModelLoadError(
        `${dir}: checkpoint is missing tensor "${spec.name}" (expected shape ${JSON.stringify(spec.shape)})`,
        { field: spec.name },
      );
    }
    if (!sameShape(t.shape, spec.shape)) {
      throw new ModelLoadError(
        `${t.file}: tensor "${spec.name}" has shape ${JSON.stringify(t.shape)}, expected ${
          JSON.stringify(spec.shape)
        } from config.json`,
        { file: t.file, field: spec.name },
      );
    }
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Reads `dir/name` as a JSON object; null when absent and not required.
 * Unreadable or non-object JSON is an error either way.
 */
async function readJsonObject(
  dir: string,
  name: string,
  required: boolean,
): Promise<Record<string, unknown> | null> {
  const path = `${dir}/${name}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && !required) return null;
    throw new ModelLoadError(
      e instanceof Deno.errors.NotFound
        ? `${path}: not found (is ${dir} a HF model directory?)`
        : `${path}: cannot read (${describeError(e)})`,
      { file: path, cause: e },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ModelLoadError(`${path}: invalid JSON (${describeError(e)})`, {
      file: path,
      cause: e,
    });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelLoadError(`${path}: expected a JSON object`, { file: path });
  }
  return value as Record<string, unknown>;
}
