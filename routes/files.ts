/**
 * OpenAI `/v1/files`: upload (multipart, streamed to disk), list, retrieve,
 * delete, and `/content`. Only purpose `fine-tune` is accepted for now.
 *
 * The upload never buffers the body: a Content-Length over the limit is
 * refused before reading, and the limit is enforced again while streaming
 * (chunked bodies, lying Content-Length). Mount this router outside any
 * global body-size middleware: it enforces its own, larger limit.
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "./app_env.ts";
import { ApiError, badRequest, fromZodError } from "./errors.ts";
import { multipartBoundary, readMultipart } from "./multipart.ts";
import { authRoute, errorResponses, jsonError, jsonResponse } from "./openapi_common.ts";
import { DEFAULT_MAX_UPLOAD_BYTES } from "../src/config.ts";
import type { FilePurpose, FileRecord } from "../src/store/file_queries.ts";
import type { FileService, StagedUpload } from "../src/store/file_service.ts";
import { FILE_PURPOSES } from "../src/store/schema.ts";

/** OpenAI's own per-file cap. */
/** Room for the multipart framing and small fields on top of the file itself. */
const MULTIPART_OVERHEAD_BYTES = 1024 * 1024;
const MAX_FIELD_BYTES = 4096;
const MAX_LIST_LIMIT = 10_000;

export interface FilesDeps {
  files: FileService;
  /** Largest accepted file in bytes (413 above it). Default 512 MiB. */
  maxUploadBytes?: number;
}

// ---------- schemas ----------

export const FileObjectSchema = z.object({
  id: z.string().openapi({ example: "file-abc123" }),
  object: z.literal("file"),
  bytes: z.number().int(),
  created_at: z.number().int(),
  expires_at: z.number().int().nullable(),
  filename: z.string().openapi({ description: "As uploaded (display only; control characters removed)." }),
  purpose: z.enum(FILE_PURPOSES),
  status: z.enum(["uploaded", "processed", "error"]),
  status_details: z.string().nullable(),
}).openapi("File");

const FileListSchema = z.object({
  object: z.literal("list"),
  data: z.array(FileObjectSchema),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
}).openapi("FileList");

const FileDeletedSchema = z.object({
  id: z.string(),
  object: z.literal("file"),
  deleted: z.boolean(),
}).openapi("FileDeleted");

const UploadFormSchema = z.object({
  file: z.string().openapi({ type: "string", format: "binary", description: "The file (JSONL for fine-tune)." }),
  purpose: z.enum(FILE_PURPOSES).openapi({ description: "Only `fine-tune` is supported." }),
});

const ListQuerySchema = z.object({
  purpose: z.string().optional().openapi({ description: "Only files with this purpose." }),
  after: z.string().optional().openapi({ description: "Cursor: the id of the last file of the previous page." }),
  limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).default(MAX_LIST_LIMIT),
  order: z.enum(["asc", "desc"]).default("desc").openapi({ description: "By created_at." }),
});

const FileIdParams = z.object({ file_id: z.string().min(1).openapi({ example: "file-abc123" }) });

const err404 = jsonError("No such file");

const uploadRoute = authRoute({
  method: "post",
  path: "/v1/files",
  summary: "Upload a file",
  request: { body: { required: true, content: { "multipart/form-data": { schema: UploadFormSchema } } } },
  responses: {
    200: jsonResponse("The file", FileObjectSchema),
    400: errorResponses[400],
    413: jsonError("File or request larger than the upload limit"),
  },
});

const listRoute = authRoute({
  method: "get",
  path: "/v1/files",
  summary: "List files",
  request: { query: ListQuerySchema },
  responses: { 200: jsonResponse("A page of files", FileListSchema), 400: errorResponses[400] },
});

const getRoute = authRoute({
  method: "get",
  path: "/v1/files/{file_id}",
  summary: "Retrieve a file",
  request: { params: FileIdParams },
  responses: { 200: jsonResponse("The file", FileObjectSchema), 404: err404 },
});

const deleteRoute = authRoute({
  method: "delete",
  path: "/v1/files/{file_id}",
  summary: "Delete a file",
  request: { params: FileIdParams },
  responses: { 200: jsonResponse("Deleted", FileDeletedSchema), 404: err404 },
});

const contentRoute = authRoute({
  method: "get",
  path: "/v1/files/{file_id}/content",
  summary: "Retrieve file content",
  request: { params: FileIdParams },
  responses: {
    200: {
      description: "The file's bytes",
      content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } },
    },
    404: err404,
  },
});

// ---------- helpers ----------

export function fileObject(f: FileRecord): z.infer<typeof FileObjectSchema> {
  return {
    id: f.id,
    object: "file",
    bytes: f.bytes,
    created_at: Math.floor(f.createdAt.getTime() / 1000),
    expires_at: null,
    filename: f.filename,
    purpose: f.purpose,
    status: f.status,
    status_details: f.statusDetails,
  };
}

function parsePurpose(raw: string): FilePurpose {
  const parsed = z.enum(FILE_PURPOSES).safeParse(raw);
  if (!parsed.success) {
    throw badRequest(
      `Invalid value for 'purpose': '${raw.slice(0, 64)}' is not supported; supported: ${FILE_PURPOSES.join(", ")}`,
      "purpose",
    );
  }
  return parsed.data;
}

async function readField(body: AsyncIterable<Uint8Array>, name: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > MAX_FIELD_BYTES) throw badRequest(`'${name}' is longer than ${MAX_FIELD_BYTES} bytes`, name);
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.byteLength;
  }
  return new TextDecoder().decode(all).trim();
}

/** `attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 5987). */
function contentDisposition(filename: string): string {
  const base = filename.split(/[\\/]/).pop() || "file";
  const ascii = base.replace(/[^\x20-\x7e]|["\\%;]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(base)}`;
}

/** Streams the multipart body: `purpose` is read as a field, `file` straight into the blob store. */
async function upload(c: Context<AppEnv>, files: FileService, maxUpload: number): Promise<Response> {
  const maxBody = maxUpload + MULTIPART_OVERHEAD_BYTES;
  const boundary = multipartBoundary(c.req.header("content-type"));
  if (!boundary) {
    throw badRequest(
      "Expected a multipart/form-data body with 'file' and 'purpose' fields",
      null,
      "invalid_content_type",
    );
  }
  const declared = Number(c.req.header("content-length"));
  if (Number.isFinite(declared) && declared > maxBody) {
    throw new ApiError(
      413,
      `Request body is larger than the ${maxUpload}-byte upload limit`,
      "invalid_request_error",
      "file",
      "file_too_large",
    );
  }
  const body = c.req.raw.body;
  if (!body) throw badRequest("Missing required parameter: 'file'", "file");

  let purpose: FilePurpose | null = null;
  let staged: StagedUpload | null = null;
  let filename: string | null = null;
  try {
    for await (const part of readMultipart(body, boundary, { maxTotalBytes: maxBody })) {
      if (part.name === "purpose") {
        purpose = parsePurpose(await readField(part.body, "purpose"));
      } else if (part.name === "file") {
        if (staged) throw badRequest("Only one 'file' may be uploaded per request", "file");
        if (part.filename === null) throw badRequest("'file' must be a file (a part with a filename)", "file");
        filename = part.filename;
        staged = await files.stage(part.body, maxUpload);
      }
      // Other fields (e.g. OpenAI's expires_after) are read past and ignored.
    }
    if (!staged) throw badRequest("Missing required parameter: 'file'", "file");
    if (!purpose) throw badRequest("Missing required parameter: 'purpose'", "purpose");
    const created = await files.create(staged, { filename, purpose });
    staged = null;
    return c.json(fileObject(created), 200);
  } finally {
    if (staged) await files.discard(staged);
  }
}

// ---------- router ----------

export function filesRoutes(deps: FilesDeps): OpenAPIHono<AppEnv> {
  const { files } = deps;
  const maxUpload = deps.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw fromZodError(result.error);
    },
  });

  // Documented from the schema, served by hand: the generated validator would buffer the form.
  app.openAPIRegistry.registerPath(uploadRoute);
  app.post("/v1/files", (c) => upload(c, files, maxUpload));

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid("query");
    const purposes: readonly string[] = FILE_PURPOSES;
    const page = q.purpose !== undefined && !purposes.includes(q.purpose)
      ? { data: [], hasMore: false }
      : await files.list({
        purpose: q.purpose as FilePurpose | undefined,
        after: q.after,
        limit: q.limit,
        order: q.order,
      });
    const data = page.data.map(fileObject);
    return c.json({
      object: "list" as const,
      data,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: page.hasMore,
    }, 200);
  });

  app.openapi(getRoute, async (c) => c.json(fileObject(await files.get(c.req.valid("param").file_id)), 200));

  app.openapi(deleteRoute, async (c) => {
    const { id } = await files.delete(c.req.valid("param").file_id);
    return c.json({ id, object: "file" as const, deleted: true }, 200);
  });

  app.openapi(contentRoute, async (c) => {
    const { file, stream, size } = await files.content(c.req.valid("param").file_id);
    return c.body(stream, 200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(size),
      "Content-Disposition": contentDisposition(file.filename),
      "X-Content-Type-Options": "nosniff",
    });
  });

  return app;
}
