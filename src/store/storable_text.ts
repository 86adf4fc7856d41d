/**
 * Strings PostgreSQL (and PGlite) cannot store: `text` refuses U+0000
 * ("invalid byte sequence for encoding UTF8: 0x00"), `jsonb` refuses the
 * `\u0000` escape and unpaired surrogate escapes, and an unpaired surrogate
 * in `text` is silently replaced by U+FFFD on the way to UTF-8 (so the value
 * read back is not the one written). The HTTP edge refuses such strings in
 * every path, query and body (routes/request_text.ts); the store refuses
 * them again before any query reaches the database (database.ts), so no
 * caller can turn one into a database error.
 */

/** Why `s` cannot be stored, or null when it can. */
export function unstorableText(s: string): string | null {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) return "contains a NUL character (U+0000)";
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return "contains an unpaired UTF-16 surrogate (not valid Unicode)";
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return "contains an unpaired UTF-16 surrogate (not valid Unicode)";
    }
  }
  return null;
}

export interface UnstorableAt {
  /** JSON path of the offending key or value (`metadata.key`, `messages[0].content`); "" for the root. */
  path: string;
  reason: string;
}

/** The first string (object key or value) in a JSON-like value that cannot be stored. Iterative: any depth. */
export function findUnstorable(value: unknown): UnstorableAt | null {
  const stack: [unknown, string][] = [[value, ""]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === "string") {
      const reason = unstorableText(v);
      if (reason) return { path, reason };
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, child] = entries[i];
        const at = path ? `${path}.${k}` : k;
        const reason = unstorableText(k);
        if (reason) return { path: at, reason: `key ${reason}` };
        stack.push([child, at]);
      }
    }
  }
  return null;
}

/**
 * Why a query parameter cannot be sent, or null. A string is checked as it
 * is and, when it is a serialized JSON object or array (how drizzle sends
 * `jsonb`), as the JSON it holds: `"\u0000"` is harmless text but fatal jsonb.
 */
export function unstorableParam(param: unknown): string | null {
  if (typeof param !== "string") {
    if (Array.isArray(param)) {
      for (const p of param) {
        const reason = unstorableParam(p);
        if (reason) return reason;
      }
    }
    return null;
  }
  const reason = unstorableText(param);
  if (reason) return reason;
  const first = param.charCodeAt(0);
  if ((first === 0x7b || first === 0x5b) && param.includes("\\u")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(param);
    } catch {
      return null; // plain text that happens to start with a bracket
    }
    const bad = findUnstorable(parsed);
    if (bad) return bad.path ? `${bad.path} ${bad.reason}` : bad.reason;
  }
  return null;
}
