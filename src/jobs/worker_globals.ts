/**
 * Side-effect module: import it first in a Worker that loads transformers.js.
 *
 * In a Deno Worker `location` exists and its origin is "null" for file: URLs;
 * transformers.js then resolves its bundled ORT path with `new URL(href,
 * location.origin)`, which throws on that base at import time. Without a
 * `location` (as on Deno's main thread) it skips the base.
 */
delete (globalThis as { location?: unknown }).location;
