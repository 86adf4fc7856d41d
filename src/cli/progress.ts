/**
 * Training progress on stderr: a bar redrawn in place on a terminal, or a
 * plain line every `every` steps (and at the last) when stderr is a file or
 * pipe (CI logs, `2> log`), where carriage returns would pile up.
 */

export interface ProgressSink {
  /** Whether the sink is a terminal (redraw in place). */
  tty: boolean;
  write(text: string): void;
  /** Terminal width (bar sizing); default 100. */
  columns?: number;
}

export interface StepInfo {
  step: number;
  totalSteps: number;
  epoch: number;
  trainLoss: number;
  validLoss?: number;
  tokensPerSecond: number;
}

/** `3s`, `4m05s`, `2h07m`; "?" when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** `[#####.....]` of `width` cells. */
export function bar(fraction: number, width: number): string {
  const done = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${"#".repeat(done)}${".".repeat(width - done)}]`;
}

export class Progress {
  #firstStep: number | null = null;
  #firstAt = 0;
  #tokS: number | null = null;
  #validLoss: number | undefined;
  #line = "";

  constructor(readonly sink: ProgressSink, readonly every = 10, readonly now: () => number = () => performance.now()) {}

  /** The status text of a step (without the bar). */
  status(s: StepInfo): string {
    const t = this.now();
    if (this.#firstStep === null) {
      // The first step reported includes warm-up (session first run): rates start after it.
      this.#firstStep = s.step;
      this.#firstAt = t;
    }
    // Smoothed: single steps vary with batch length.
    this.#tokS = this.#tokS === null ? s.tokensPerSecond : 0.8 * this.#tokS + 0.2 * s.tokensPerSecond;
    if (s.validLoss !== undefined) this.#validLoss = s.validLoss;
    const done = s.step - this.#firstStep;
    const eta = done > 0 ? ((t - this.#firstAt) / 1000 / done) * (s.totalSteps - s.step) : NaN;
    const valid = this.#validLoss === undefined ? "" : ` valid ${this.#validLoss.toFixed(4)}`;
    return `step ${s.step}/${s.totalSteps} epoch ${s.epoch} loss ${s.trainLoss.toFixed(4)}${valid} ` +
      `${Math.round(this.#tokS)} tok/s ETA ${formatDuration(eta)}`;
  }

  update(s: StepInfo): void {
    const text = this.status(s);
    if (!this.sink.tty) {
      if (s.step % this.every === 0 || s.step === s.totalSteps) this.sink.write(text + "\n");
      return;
    }
    const width = Math.max(10, Math.min(40, (this.sink.columns ?? 100) - text.length - 8));
    this.#draw(`${bar(s.step / s.totalSteps, width)} ${text}`);
  }

  /** A message line; the bar is redrawn below it. */
  note(text: string): void {
    if (!this.sink.tty) return this.sink.write(text + "\n");
    const line = this.#line;
    this.#draw("");
    this.sink.write(text + "\n");
    if (line) this.#draw(line);
  }

  /** Ends the bar's line. */
  finish(): void {
    if (this.sink.tty && this.#line) this.sink.write("\n");
    this.#line = "";
  }

  #draw(line: string): void {
    // \r + clear to end of line: a shorter line leaves no tail of the previous one.
    this.sink.write(`\r${line}\x1b[K`);
    this.#line = line;
  }
}
