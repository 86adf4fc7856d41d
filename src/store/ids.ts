/** Random public ids with OpenAI-style prefixes (`file-…`, `ftjob-…`). */
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LENGTH = 24;

export type IdPrefix = "file" | "ftjob" | "ftevent" | "ftckpt" | "ftver";

export function newId(prefix: IdPrefix): string {
  // Rejection sampling keeps every character uniform (62 does not divide 256).
  let out = "";
  while (out.length < LENGTH) {
    for (const b of crypto.getRandomValues(new Uint8Array(LENGTH * 2))) {
      if (b < 248 && out.length < LENGTH) out += ALPHABET[b % 62];
    }
  }
  return `${prefix}-${out}`;
}
