/**
 * Command-line flags of the CLIs: node:util `parseArgs` (its tokens, so it
 * never guesses) plus the checks every CLI wants, with errors that name the
 * flag — an unknown flag, a missing or empty value, a flag given twice, a
 * stray argument — and typed readers for the values. `--help` / `-h` is
 * always accepted and reported as `help`.
 */
import { parseArgs } from "node:util";

/** A bad command line: the CLI prints the message and its usage, and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export interface FlagSpec {
  type: "string" | "boolean";
  /** May be given several times (the values are collected in order). */
  multiple?: boolean;
}

type FlagValue<F extends FlagSpec> = F["type"] extends "boolean" ? boolean
  : F["multiple"] extends true ? string[]
  : string;

/** The flags given (absent ones are undefined), and whether help was asked for. */
export type Flags<S extends Record<string, FlagSpec>> = { -readonly [K in keyof S]?: FlagValue<S[K]> } & {
  help: boolean;
};

export function parseFlags<S extends Record<string, FlagSpec>>(argv: readonly string[], spec: S): Flags<S> {
  const options = Object.fromEntries(
    Object.entries(spec).map(([name, f]) => [name, { type: f.type, multiple: f.multiple ?? false }]),
  );
  // Not strict: unknown flags and missing values come back as tokens, reported below with the flag's name.
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const known = Object.keys(spec);
  const values: Record<string, string | boolean | string[]> = {};
  let help = false;
  for (const token of tokens) {
    if (token.kind === "positional") throw new UsageError(`unexpected argument ${JSON.stringify(token.value)}`);
    if (token.kind === "option-terminator") continue;
    const { name, rawName } = token;
    if ((name === "help" || name === "h") && !(name in spec)) {
      help = true;
      continue;
    }
    const flag = spec[name];
    if (!flag || rawName !== `--${name}`) {
      throw new UsageError(`unknown flag ${rawName}; flags: ${known.map((f) => `--${f}`).join(", ")}`);
    }
    if (flag.type === "boolean") {
      if (token.value !== undefined) throw new UsageError(`--${name} takes no value`);
      if (name in values) throw new UsageError(`--${name} given twice`);
      values[name] = true;
      continue;
    }
    // Without an inline `=`, a value that looks like a flag is the next flag, not this one's value.
    const value = token.value;
    if (value === undefined || value === "" || (!token.inlineValue && value.startsWith("--"))) {
      throw new UsageError(`--${name} needs a value`);
    }
    if (flag.multiple) {
      values[name] = [...(values[name] as string[] | undefined ?? []), value];
    } else {
      if (name in values) throw new UsageError(`--${name} given twice`);
      values[name] = value;
    }
  }
  return { ...values, help } as Flags<S>;
}

/** An integer of at least `min` (when given). */
export function integerFlag(flag: string, value: string, min?: number): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isSafeInteger(n) || (min !== undefined && n < min)) {
    const bound = min === undefined ? "" : ` >= ${min}`;
    throw new UsageError(`--${flag} must be an integer${bound} (got ${JSON.stringify(value)})`);
  }
  return n;
}

export function numberFlag(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--${flag} must be a number (got ${JSON.stringify(value)})`);
  }
  return n;
}

export function oneOfFlag<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${flag} must be one of ${allowed.join(", ")} (got ${JSON.stringify(value)})`);
  }
  return value as T;
}
