/**
 * A streaming multipart/form-data reader: parts come out one at a time and a
 * part's body is read chunk by chunk, so an upload goes to disk without the
 * request ever being held in memory (Hono's `parseBody` buffers it all).
 *
 * Limits are enforced while reading: total body bytes, header block size and
 * number of parts. A part's body must be consumed (or it is skipped) before
 * the next part is returned.
 */
import { Buffer } from "node:buffer";
import { ApiError } from "../src/errors.ts";

export type MultipartErrorKind = "malformed" | "too_large";

/** 413 `request_too_large`, or 400 `invalid_multipart` for a body that is not well-formed multipart. */
export class MultipartError extends ApiError {
  override name = "MultipartError";
  constructor(readonly kind: MultipartErrorKind, message: string) {
    super(
      kind === "too_large" ? 413 : 400,
      kind === "too_large" ? message : `Malformed multipart body: ${message}`,
      "invalid_request_error",
      null,
      kind === "too_large" ? "request_too_large" : "invalid_multipart",
    );
  }
}

export interface MultipartLimits {
  /** Whole request body (preamble, headers, all parts). */
  maxTotalBytes: number;
  /** One part's header block. */
  maxHeaderBytes?: number;
  maxParts?: number;
}

export interface MultipartPart {
  /** `name` of the part's Content-Disposition. */
  name: string;
  /** `filename` (or RFC 5987 `filename*`) when the part is a file; null for plain fields. */
  filename: string | null;
  contentType: string | null;
  /** The part's bytes; read it before asking for the next part. */
  body: AsyncIterable<Uint8Array>;
}

/** The `boundary` parameter of a multipart/form-data Content-Type, or null. */
export function multipartBoundary(contentType: string | null | undefined): string | null {
  if (!contentType || !/^\s*multipart\/form-data\s*(;|$)/i.test(contentType)) return null;
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : null;
}

const CRLF = new Uint8Array([13, 10]);
const HEADER_END = Buffer.from("\r\n\r\n");
const decoder = new TextDecoder();

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).indexOf(needle, from);
}

/** Reads the body while counting it against the total limit. */
class CountingReader {
  buf: Uint8Array = CRLF; // a virtual CRLF lets the first boundary match the same delimiter as the rest
  private total = 0;
  private eof = false;

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>, private readonly max: number) {}

  /** Appends the next chunk to `buf`; false at end of body. */
  async fill(): Promise<boolean> {
    if (this.eof) return false;
    const { done, value } = await this.reader.read();
    if (done) {
      this.eof = true;
      return false;
    }
    this.total += value.byteLength;
    if (this.total > this.max) throw new MultipartError("too_large", `Request body is larger than ${this.max} bytes`);
    this.buf = concat(this.buf, value);
    return true;
  }

  consume(n: number): Uint8Array {
    const head = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return head;
  }
}

interface Disposition {
  name: string | null;
  filename: string | null;
}

/** Unquotes an RFC 7230 quoted-string (backslash escapes). */
function unquote(s: string): string {
  return s.startsWith('"') && s.endsWith('"') && s.length >= 2 ? s.slice(1, -1).replace(/\\(.)/g, "$1") : s;
}

function parseDisposition(value: string): Disposition {
  const out: Disposition = { name: null, filename: null };
  let extended: string | null = null;
  // Parameters: `key=token` or `key="quoted \" string"`.
  const re = /;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;
  for (let m = re.exec(value); m; m = re.exec(value)) {
    const key = m[1].toLowerCase();
    const raw = m[2].trim();
    if (key === "name") out.name = unquote(raw);
    else if (key === "filename") out.filename = unquote(raw);
    else if (key === "filename*") {
      const ext = /^utf-8'[^']*'(.*)$/i.exec(unquote(raw));
      if (ext) {
        try {
          extended = decodeURIComponent(ext[1]);
        } catch { /* malformed: keep the plain filename */ }
      }
    }
  }
  if (extended !== null) out.filename = extended;
  return out;
}

function parseHeaders(block: Uint8Array): { disposition: Disposition; contentType: string | null } {
  let disposition: Disposition | null = null;
  let contentType: string | null = null;
  for (const line of decoder.decode(block).split("\r\n")) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new MultipartError("malformed", "Malformed multipart part header");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-disposition") {
      if (!/^form-data\s*(;|$)/i.test(value)) throw new MultipartError("malformed", "Part is not form-data");
      disposition = parseDisposition(value);
    } else if (name === "content-type") contentType = value;
  }
  if (!disposition?.name) throw new MultipartError("malformed", "Multipart part without a Content-Disposition name");
  return { disposition, contentType };
}

export async function* readMultipart(
  body: ReadableStream<Uint8Array>,
  boundary: string,
  limits: MultipartLimits,
): AsyncGenerator<MultipartPart> {
  const maxHeaderBytes = limits.maxHeaderBytes ?? 16 * 1024;
  const maxParts = limits.maxParts ?? 32;
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const reader = body.getReader();
  const input = new CountingReader(reader, limits.maxTotalBytes);

  /** Advances past the next delimiter; false if the body ends first. */
  async function skipToDelimiter(): Promise<boolean> {
    for (;;) {
      const at = indexOf(input.buf, delimiter);
      if (at >= 0) {
        input.consume(at + delimiter.length);
        return true;
      }
      input.consume(Math.max(0, input.buf.length - (delimiter.length - 1)));
      if (!(await input.fill())) return false;
    }
  }

  async function need(n: number): Promise<void> {
    while (input.buf.length < n) {
      if (!(await input.fill())) throw new MultipartError("malformed", "Unexpected end of multipart body");
    }
  }

  let partOpen = false;
  /** Next chunk of the current part's body; null once its closing delimiter is reached. */
  async function nextBodyChunk(): Promise<Uint8Array | null> {
    while (partOpen) {
      const at = indexOf(input.buf, delimiter);
      if (at >= 0) {
        const chunk = input.consume(at);
        input.consume(delimiter.length);
        partOpen = false;
        if (chunk.length > 0) return chunk;
        return null;
      }
      // Everything but a possible delimiter prefix at the end is body.
      const safe = input.buf.length - (delimiter.length - 1);
      if (safe > 0) return input.consume(safe);
      if (!(await input.fill())) throw new MultipartError("malformed", "Unexpected end of multipart body");
    }
    return null;
  }

  try {
    if (!(await skipToDelimiter())) throw new MultipartError("malformed", "Multipart boundary not found");
    for (let parts = 0;; parts++) {
      // After a delimiter: `--` ends the body; otherwise optional padding, then CRLF.
      await need(2);
      if (input.buf[0] === 45 && input.buf[1] === 45) return;
      let lineEnd = indexOf(input.buf, CRLF);
      while (lineEnd < 0 && input.buf.length < 256) {
        if (!(await input.fill())) throw new MultipartError("malformed", "Unexpected end of multipart body");
        lineEnd = indexOf(input.buf, CRLF);
      }
      if (lineEnd < 0 || !/^[ \t]*$/.test(decoder.decode(input.buf.subarray(0, lineEnd)))) {
        throw new MultipartError("malformed", "Malformed multipart boundary line");
      }
      if (parts >= maxParts) throw new MultipartError("too_large", `More than ${maxParts} multipart parts`);
      // Header block: from that CRLF to the blank line (CRLF CRLF), so an empty block is just CRLF CRLF.
      input.consume(lineEnd);
      let end = indexOf(input.buf, HEADER_END);
      while (end < 0) {
        if (input.buf.length > maxHeaderBytes) {
          throw new MultipartError("too_large", `Multipart part headers exceed ${maxHeaderBytes} bytes`);
        }
        if (!(await input.fill())) throw new MultipartError("malformed", "Unexpected end of multipart headers");
        end = indexOf(input.buf, HEADER_END);
      }
      if (end > maxHeaderBytes) {
        throw new MultipartError("too_large", `Multipart part headers exceed ${maxHeaderBytes} bytes`);
      }
      const { disposition, contentType } = parseHeaders(input.consume(end + HEADER_END.length).subarray(2, end));
      partOpen = true;
      yield {
        name: disposition.name!,
        filename: disposition.filename,
        contentType,
        body: {
          async *[Symbol.asyncIterator]() {
            for (let chunk = await nextBodyChunk(); chunk !== null; chunk = await nextBodyChunk()) yield chunk;
          },
        },
      };
      // Skip whatever of the part the consumer did not read.
      while ((await nextBodyChunk()) !== null) { /* drain */ }
    }
  } finally {
    // The epilogue (or the rest of a rejected body) is not needed.
    await reader.cancel().catch(() => {});
  }
}
