/**
 * Incremental stop-string detection on streamed text.
 *
 * Text is emitted as soon as it can no longer be the start of a stop string;
 * the longest suffix that is a prefix of some stop is held back. On a match,
 * the text before the earliest match is emitted (the stop itself is not) and
 * the matcher stays stopped.
 */
export class StopMatcher {
  readonly #stops: string[];
  #held = "";
  #stopped = false;
  #matched: string | null = null;

  /** Empty stop strings are ignored (they would match before any text). */
  constructor(stops: string[]) {
    this.#stops = [...new Set(stops.filter((s) => s.length > 0))];
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** The stop string that ended the stream, or null. */
  get matched(): string | null {
    return this.#matched;
  }

  push(textDelta: string): { emit: string; stopped: boolean } {
    if (this.#stopped) return { emit: "", stopped: true };
    // Held text is shorter than the longest stop, so each push costs
    // O(|delta| + max stop length) per stop string.
    const buf = this.#held + textDelta;
    let at = -1;
    for (const stop of this.#stops) {
      const i = buf.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        this.#matched = stop;
      }
    }
    if (at >= 0) {
      this.#stopped = true;
      this.#held = "";
      return { emit: buf.slice(0, at), stopped: true };
    }
    let keep = this.#partialStopLength(buf);
    // Never emit half of a surrogate pair: it would reach the client as U+FFFD.
    if (keep < buf.length && isHighSurrogate(buf.charCodeAt(buf.length - keep - 1))) keep++;
    this.#held = buf.slice(buf.length - keep);
    return { emit: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** End of stream: the held-back text, which turned out not to be a stop. */
  flush(): string {
    const rest = this.#held;
    this.#held = "";
    return rest;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of a stop. */
  #partialStopLength(buf: string): number {
    let best = 0;
    for (const stop of this.#stops) {
      for (let len = Math.min(stop.length - 1, buf.length); len > best; len--) {
        if (buf.endsWith(stop.slice(0, len))) {
          best = len;
          break;
        }
      }
    }
    return best;
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
