/**
 * Side-effect module: import it first in a registry Worker that loads
 * transformers.js (eval_worker.ts). In a Deno Worker `location` exists with
 * origin "null" for file: URLs, and transformers.js throws resolving its
 * bundled paths against it at import time (as src/jobs/worker_globals.ts
 * explains; the layers keep each worker's side effects in its own layer).
 */
delete (globalThis as { location?: unknown }).location;
