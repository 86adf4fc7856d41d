/** Shape arithmetic over symbolic dims, used by the op helpers' type inference. */
import { type Dim, GraphError, type Shape } from "./ir.ts";

export function broadcastShapes(a: Shape, b: Shape): Shape {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    if (da === 1) out.push(db);
    else if (db === 1 || da === db) out.push(da);
    else if (typeof da === "number" && typeof db === "number") {
      throw new GraphError(`cannot broadcast [${a}] with [${b}]`);
    } // Differing symbols, or a symbol against a number: trust the number.
    else out.push(typeof da === "number" ? da : db);
  }
  return out;
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new GraphError(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

/**
 * Symbolic dims are products and sums of symbols as text: "3*batch*seq"
 * (Reshape, MatMul), "a+b" (Concat); an opaque sum inside a product is
 * parenthesised ("2*(a+b)"). Products are kept canonical — coefficient first
 * (when not 1), then the factors sorted — so equal products compare equal,
 * and a sum of equal monomials collapses ("s+s+s" is "3*s").
 */
type Expr = { sum: Expr[][] } | number | string;

function parseDim(d: string): Expr {
  let i = 0;
  const expr = (): Expr => {
    const terms: Expr[][] = [term()];
    while (d[i] === "+") {
      i++;
      terms.push(term());
    }
    return terms.length === 1 && terms[0].length === 1 ? terms[0][0] : { sum: terms };
  };
  const term = (): Expr[] => {
    const factors = [factor()];
    while (d[i] === "*") {
      i++;
      factors.push(factor());
    }
    return factors;
  };
  const factor = (): Expr => {
    if (d[i] === "(") {
      i++;
      const e = expr();
      i++; // ")"
      return e;
    }
    const start = i;
    while (i < d.length && !"+*()".includes(d[i])) i++;
    const tok = d.slice(start, i);
    return /^\d+$/.test(tok) ? Number(tok) : tok;
  };
  return expr();
}

/** A dim's value with symbols bound, or null when one is not. */
export function evalDim(d: Dim, bind: (symbol: string) => number | undefined): number | null {
  if (typeof d === "number") return d;
  const ev = (e: Expr): number | null => {
    if (typeof e === "number") return e;
    if (typeof e === "string") return bind(e) ?? null;
    let total = 0;
    for (const t of e.sum) {
      let p = 1;
      for (const f of t) {
        const v = ev(f);
        if (v === null) return null;
        p *= v;
      }
      total += p;
    }
    return total;
  };
  return ev(parseDim(d));
}

interface Monomial {
  c: number;
  /** Symbols, or opaque sums as "(a+b)", sorted. */
  syms: string[];
}

function monomial(d: Dim): Monomial {
  if (typeof d === "number") return { c: d, syms: [] };
  const e = parseDim(d);
  const fromTerm = (t: Expr[]): Monomial | null => {
    let c = 1;
    const syms: string[] = [];
    for (const f of t) {
      if (typeof f === "number") c *= f;
      else if (typeof f === "string") syms.push(f);
      else {
        const inner = fromSum(f.sum);
        c *= inner.c;
        syms.push(...inner.syms);
      }
    }
    return { c, syms: syms.sort() };
  };
  const fromSum = (terms: Expr[][]): Monomial => {
    const ms = terms.map((t) => fromTerm(t)!);
    if (ms.every((m) => m.syms.join("*") === ms[0].syms.join("*"))) {
      return { c: ms.reduce((s, m) => s + m.c, 0), syms: ms[0].syms };
    }
    return { c: 1, syms: [`(${ms.map(dimOf).join("+")})`] };
  };
  if (typeof e === "number") return { c: e, syms: [] };
  if (typeof e === "string") return { c: 1, syms: [e] };
  return e.sum.length === 1 ? fromTerm(e.sum[0])! : fromSum(e.sum);
}

function dimOf(m: Monomial): Dim {
  if (m.syms.length === 0) return m.c;
  const text = [...(m.c === 1 ? [] : [String(m.c)]), ...m.syms].join("*");
  // A lone opaque sum needs no parentheses.
  return m.c === 1 && m.syms.length === 1 && m.syms[0].startsWith("(") ? m.syms[0].slice(1, -1) : text;
}

export function mulDims(a: Dim, b: Dim): Dim {
  if (typeof a === "number" && typeof b === "number") return a * b;
  const x = monomial(a), y = monomial(b);
  return dimOf({ c: x.c * y.c, syms: [...x.syms, ...y.syms].sort() });
}

/** a / b when it divides exactly as monomials (b's factors among a's, coefficients divisible), else null. */
export function divDims(a: Dim, b: Dim): Dim | null {
  const x = monomial(a), y = monomial(b);
  if (y.c === 0 || x.c % y.c !== 0) return null;
  const rest = [...x.syms];
  for (const s of y.syms) {
    const i = rest.indexOf(s);
    if (i < 0) return null;
    rest.splice(i, 1);
  }
  return dimOf({ c: x.c / y.c, syms: rest });
}

/** a + b: numbers add, equal monomials add coefficients, else an opaque sum. */
export function addDims(a: Dim, b: Dim): Dim {
  if (typeof a === "number" && typeof b === "number") return a + b;
  const x = monomial(a), y = monomial(b);
  if (x.syms.join("*") === y.syms.join("*")) return dimOf({ c: x.c + y.c, syms: x.syms });
  return `${dimOf(x)}+${dimOf(y)}`;
}

export function sameShape(a: Shape | null, b: Shape | null): boolean {
  return a !== null && b !== null && a.length === b.length && a.every((d, i) => d === b[i]);
}
