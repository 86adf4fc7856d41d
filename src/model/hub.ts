/**
 * Downloads a model repository (`owner/name`) from the Hugging Face hub into a
 * local cache directory, which `openCheckpoint` then loads like any local
 * model directory.
 *
 * Transport and URL layout come from @huggingface/transformers' hub
 * configuration (`env.remoteHost`, `env.remotePathTemplate`, `env.fetch`),
 * and files land where its FileCache would put them (`<cache>/<owner>/<name>/
 * <file>`, `<cache>/<owner>/<name>/<revision>/<file>` off `main`), so its
 * AutoTokenizer/AutoConfig find them offline with the same `cache_dir`.
 * We do not call its `getModelFile`: 4.3.2 does not export it, and it
 * buffers whole files in memory, which multi-GB shards cannot afford. Files
 * are streamed to disk instead, each written to a temp name and renamed into
 * place, with a timeout so an unreachable hub fails in seconds.
 */
import { ModelLoadError } from "./errors.ts";
import { isDiskFull } from "../disk_space.ts";
import { isFile, pathExists } from "../path_checks.ts";

export interface HubOptions {
  /** Cache root; default `$MODEL_CACHE_DIR` or `.cache/models`. */
  cacheDir?: string;
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** Hub base URL; default `$HF_ENDPOINT` or transformers' `env.remoteHost`. */
  endpoint?: string;
  /**
   * Longest wait for a response to start, and for each chunk of a body,
   * before giving up; default 10 s.
   */
  timeoutMs?: number;
}

/** Files fetched besides the weights; only config.json is required. */
const REQUIRED_FILES = ["config.json"];
const OPTIONAL_FILES = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];
const SINGLE_WEIGHTS = "model.safetensors";
const WEIGHTS_INDEX = "model.safetensors.index.json";
const DEFAULT_TIMEOUT_MS = 10_000;

/** `owner/name` as the hub (and transformers' `isValidHfModelId`) accept it. */
export function isHubId(source: string): boolean {
  const parts = source.split("/");
  return parts.length === 2 && !source.includes("..") && !source.includes("--") && !source.endsWith(".git") &&
    parts.every((p) => /^\w(?:[\w.-]{0,94}\w)?$/.test(p));
}

export function defaultCacheDir(): string {
  return envVar("MODEL_CACHE_DIR") ?? ".cache/models";
}

/** Where `downloadFromHub` puts (or finds) a repository's files. */
export function hubCachePath(id: string, opts: HubOptions = {}): string {
  const root = (opts.cacheDir ?? defaultCacheDir()).replace(/\/+$/, "");
  const revision = opts.revision ?? "main";
  return revision === "main" ? `${root}/${id}` : `${root}/${id}/${encodeURIComponent(revision)}`;
}

/** The hint every "cannot download" error ends with. */
export function localModelHint(): string {
  return "set MODEL to a local model directory, e.g. MODEL=./models/tiny (make one with: deno task tiny-model --out ./models/tiny)";
}

/**
 * Makes `id` available locally and returns the directory. A complete cached
 * copy is used without touching the network.
 */
export async function downloadFromHub(
  id: string,
  opts: HubOptions = {},
): Promise<string> {
  if (!isHubId(id)) {
    throw new ModelLoadError(
      `"${id}" is not a Hugging Face hub id (expected owner/name)`,
    );
  }
  const dir = hubCachePath(id, opts);
  if (await isCompleteCopy(dir)) return dir;

  const { env } = await import("@huggingface/transformers");
  const revision = opts.revision ?? "main";
  const endpoint = opts.endpoint ?? envVar("HF_ENDPOINT") ?? env.remoteHost;
  const base = joinUrl(
    endpoint,
    env.remotePathTemplate.replaceAll("{model}", id).replaceAll(
      "{revision}",
      encodeURIComponent(revision),
    ),
  );
  const fetcher: Fetcher = (url, init) => env.fetch(url, init);
  const get = (file: string, required: boolean) =>
    fetchToFile(id, joinUrl(base, file), `${dir}/${file}`, file, required, {
      fetcher,
      endpoint,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });

  await Deno.mkdir(dir, { recursive: true });
  await removeStaleTemps(dir);
  for (const file of REQUIRED_FILES) await get(file, true);
  for (const file of OPTIONAL_FILES) await get(file, false);

  if (await get(WEIGHTS_INDEX, false)) {
    for (const shard of await shardNames(`${dir}/${WEIGHTS_INDEX}`)) {
      if (!(await isFile(`${dir}/${shard}`))) await get(shard, true);
    }
  } else if (!(await get(SINGLE_WEIGHTS, false))) {
    throw new ModelLoadError(
      `"${id}" on the Hugging Face hub has neither ${SINGLE_WEIGHTS} nor ${WEIGHTS_INDEX} (only safetensors checkpoints are supported)`,
    );
  }
  return dir;
}

type Fetcher = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Streams `url` into `dest`. Returns false when the file does not exist on
 * the hub and is optional; throws ModelLoadError otherwise.
 */
async function fetchToFile(
  id: string,
  url: string,
  dest: string,
  file: string,
  required: boolean,
  { fetcher, endpoint, timeoutMs }: { fetcher: Fetcher; endpoint: string; timeoutMs: number },
): Promise<boolean> {
  const controller = new AbortController();
  let timer = setTimeout(() => controller.abort(), timeoutMs);
  const rearm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(), timeoutMs);
  };
  const headers = new Headers();
  const token = envVar("HF_TOKEN") ?? envVar("HF_ACCESS_TOKEN");
  if (token) headers.set("Authorization", `Bearer ${token}`);

  const tmp = `${dest}.tmp-${Deno.pid}`;
  try {
    let response: Response;
    try {
      response = await fetcher(url, { headers, signal: controller.signal });
    } catch (e) {
      throw unreachable(
        id,
        controller.signal.aborted ? `no response within ${timeoutMs / 1000} s` : "network unreachable",
        e,
      );
    }
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      const refusal = hubRefusal(id, file, response, endpoint);
      if (refusal === "optional_missing") {
        if (!required) return false;
        throw new ModelLoadError(`"${id}" on the Hugging Face hub has no ${file} (HTTP 404)`, { file });
      }
      throw refusal;
    }
    // A body shorter than announced is an error, whatever the transport makes of it (a
    // content-encoded body's length is the encoded one, so only plain bodies are counted).
    const encoded = (response.headers.get("content-encoding") ?? "identity") !== "identity";
    const announced = encoded ? NaN : Number(response.headers.get("content-length") ?? NaN);

    const out = await Deno.open(tmp, { write: true, create: true, truncate: true });
    let received = 0;
    try {
      const reader = response.body.getReader();
      for (;;) {
        rearm();
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          throw unreachable(
            id,
            controller.signal.aborted
              ? `download of ${file} stalled for ${timeoutMs / 1000} s`
              : `download of ${file} failed`,
            e,
          );
        }
        if (chunk.done) break;
        received += chunk.value.length;
        let written = 0;
        try {
          while (written < chunk.value.length) {
            written += await out.write(chunk.value.subarray(written));
          }
        } catch (e) {
          if (!isDiskFull(e)) throw e;
          throw new ModelLoadError(
            `cannot download ${file} of "${id}": the disk holding ${dest} is full (${received} bytes in); free space ` +
              "there and start again",
            { file, cause: e },
          );
        }
      }
    } finally {
      out.close();
    }
    if (Number.isFinite(announced) && received !== announced) {
      throw unreachable(id, `download of ${file} ended after ${received} of ${announced} bytes`, null);
    }
    await Deno.rename(tmp, dest);
    return true;
  } finally {
    clearTimeout(timer);
    await Deno.remove(tmp).catch(() => {});
  }
}

/**
 * What a refused request means, from the status and the hub's `X-Error-Code`
 * header: "optional_missing" for a file that is not there (`EntryNotFound`,
 * or a plain 404), else the error to throw.
 */
function hubRefusal(
  id: string,
  file: string,
  response: Response,
  endpoint: string,
): ModelLoadError | "optional_missing" {
  const code = response.headers.get("x-error-code");
  const status = response.status;
  if (code === "RepoNotFound") {
    // The hub answers 401 for a repository that does not exist, and for a private one without a token.
    return new ModelLoadError(
      `"${id}" does not exist on the Hugging Face hub (HTTP ${status}, RepoNotFound), or it is private and HF_TOKEN ` +
        `is not set or has no access; check the id, or ${localModelHint()}`,
      { file },
    );
  }
  if (code === "GatedRepo") {
    return new ModelLoadError(
      `"${id}" is a gated repository on the Hugging Face hub (HTTP ${status}): accept its terms at ` +
        `${joinUrl(endpoint, id)} and set HF_TOKEN to a token of that account`,
      { file },
    );
  }
  if (code === "RevisionNotFound") {
    return new ModelLoadError(`"${id}" on the Hugging Face hub has no such revision (HTTP ${status})`, { file });
  }
  if (status === 404 && (code === null || code === "EntryNotFound")) return "optional_missing";
  if (status === 401 || status === 403) {
    return new ModelLoadError(
      `cannot access "${id}" on the Hugging Face hub (HTTP ${status} for ${file}): the repository does not exist ` +
        "or is gated/private; check the id or set HF_TOKEN",
      { file },
    );
  }
  return new ModelLoadError(
    `cannot download ${file} of "${id}" from the Hugging Face hub (HTTP ${status}); ${localModelHint()}`,
    { file },
  );
}

/**
 * Temp files of downloads a killed process left behind (`<file>.tmp-<pid>`,
 * the pid no longer running; where /proc cannot tell, they are left alone).
 */
async function removeStaleTemps(dir: string): Promise<void> {
  if (!(await pathExists(`/proc/${Deno.pid}`))) return;
  for await (const e of Deno.readDir(dir)) {
    const pid = /\.tmp-(\d+)$/.exec(e.name)?.[1];
    if (!e.isFile || pid === undefined || await pathExists(`/proc/${pid}`)) continue;
    await Deno.remove(`${dir}/${e.name}`).catch(() => {});
  }
}

function unreachable(id: string, why: string, cause: unknown): ModelLoadError {
  return new ModelLoadError(
    `cannot download "${id}" from the Hugging Face hub (${why}); ${localModelHint()}`,
    { cause },
  );
}

/** A cached copy is complete when config.json and every weight file exist. */
async function isCompleteCopy(dir: string): Promise<boolean> {
  if (!(await isFile(`${dir}/config.json`))) return false;
  if (await isFile(`${dir}/${WEIGHTS_INDEX}`)) {
    try {
      for (const shard of await shardNames(`${dir}/${WEIGHTS_INDEX}`)) {
        if (!(await isFile(`${dir}/${shard}`))) return false;
      }
      return true;
    } catch {
      return false; // unreadable index: fetch it again
    }
  }
  return await isFile(`${dir}/${SINGLE_WEIGHTS}`);
}

/** Shard file names of an index, refusing anything that is not a plain name. */
export async function shardNames(indexPath: string): Promise<string[]> {
  let index: unknown;
  try {
    index = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (e) {
    throw new ModelLoadError(`${indexPath}: cannot read index (${e instanceof Error ? e.message : e})`, {
      file: indexPath,
      cause: e,
    });
  }
  return [...new Set(parseWeightMap(index, indexPath).values())];
}

/** The `weight_map` (tensor → shard file) of a parsed safetensors index, validated. */
export function parseWeightMap(index: unknown, indexPath: string): Map<string, string> {
  const map = typeof index === "object" && index !== null ? (index as Record<string, unknown>).weight_map : undefined;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new ModelLoadError(`${indexPath}: missing or invalid "weight_map"`, {
      file: indexPath,
      field: "weight_map",
    });
  }
  const out = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || !isPlainFileName(shard)) {
      throw new ModelLoadError(
        `${indexPath}: weight_map entry for "${tensor}" is not a file name in the model directory (${
          JSON.stringify(shard)
        })`,
        { file: indexPath, field: tensor },
      );
    }
    out.set(tensor, shard);
  }
  return out;
}

export function isPlainFileName(name: string): boolean {
  return /^[\w.-]+$/.test(name) && name !== "." && name !== "..";
}

function joinUrl(base: string, part: string): string {
  return `${base.replace(/\/+$/, "")}/${part.replace(/^\/+/, "")}`;
}

/** Reads an environment variable; absent when unset or not permitted. */
function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}
