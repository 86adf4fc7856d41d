/** Loss building blocks made of differentiable ops (see grad_rules.ts). */
import type { GraphBuilder } from "./builder.ts";
import type { Value } from "./ir.ts";
import { tiedAfter } from "./grad_rules.ts";

/**
 * Token-weighted mean cross-entropy: Σ wᵢ·(−log softmax(logitsᵢ)[labelsᵢ]) / Σ wᵢ.
 * logits [N, V] float, labels [N] int64, weights [N] (same dtype as logits; 0
 * masks a token). Negative labels (HF's -100) are read as 0, so they must
 * carry weight 0. All-zero weights give a loss of 0, not NaN.
 */
export function softmaxCrossEntropy(g: GraphBuilder, logits: Value, labels: Value, weights: Value): Value {
  return g.scoped("cross_entropy", () => {
    const logProbs = g.logSoftmax(logits, -1);
    const safeLabels = g.max(labels, g.constant(0, labels.dtype, []));
    const picked = g.op1("GatherElements", [logProbs, g.unsqueeze(safeLabels, [-1])], { axis: -1 }); // [N, 1]
    const nll = g.neg(g.squeeze(picked, [-1]));
    const total = g.reduceSum(g.mul(nll, weights), [0], false);
    // A tiny floor turns 0/0 (every token masked) into 0 without touching real weight sums.
    const denom = g.max(g.reduceSum(weights, [0], false), g.scalar(1e-30, weights.dtype));
    return g.div(total, denom);
  });
}

export interface LinearCrossEntropy {
  /** Σ wᵢ·nllᵢ / Σ wᵢ (0 when every weight is 0), float32 scalar (float64 for float64 inputs). */
  loss: Value;
  /** Σ wᵢ, float32 scalar. */
  count: Value;
  /** Σ wᵢ over rows whose label's logit is the row's largest (ties count as hits), float32 scalar. */
  correct: Value;
  /** d loss / d hidden [N, D] in hidden's dtype (null when not asked for). */
  dHidden: Value | null;
}

/**
 * The vocabulary projection and token-weighted mean cross-entropy in one
 * piece, with its gradient written out rather than derived by autodiff:
 * logits = hidden·Wᵀ, loss as softmaxCrossEntropy, and
 * d loss / d hidden = ((softmax(logits) − onehot(label))·wᵢ/Σw)·W.
 *
 * Only what the loss needs is computed over the logits: their max, exp of
 * the shifted logits and its sum, per row; the gradient reuses that exp (one
 * scale per row, one scatter of −wᵢ/Σw at the labels). Autodiff of the same
 * loss held the logits, their log-softmax, a zeros tensor it scattered into
 * and a chain of temporaries, all [N, V], and read the logits again for the
 * accuracy (ArgMax).
 *
 * The rows go in `chunks` slices (the rows padded with masked zeros to a
 * multiple of it), so the [rows, V] buffers exist for one slice at a time.
 * Each slice is computed transposed, logitsᵀ = W·hᵀ and d hᵀ = Wᵀ·d logitsᵀ:
 * W and Wᵀ (a folded constant when W is one) are then left operands, which
 * the matrix multiply reads in place, where as right operands they would be
 * packed again on every call, or packed once per slice and kept (a copy of
 * the vocabulary matrix per slice). Seed the backward pass with `dHidden` at
 * `hidden` (addBackward's `seed`).
 *
 * hidden [N, D] and weight [V, D] (float, same dtype), labels [N] int64,
 * weights [N] float (0 masks a row; negative labels are read as 0 and must
 * carry weight 0). Loss and statistics are float32 (float64 for float64
 * hidden states).
 */
export function linearCrossEntropy(
  g: GraphBuilder,
  hidden: Value,
  weight: Value,
  labels: Value,
  weights: Value,
  opts: { gradient: boolean; chunks?: number },
): LinearCrossEntropy {
  return g.scoped("cross_entropy", () => {
    const K = opts.chunks ?? 1;
    const D = hidden.shape?.[1] ?? g.freshSymbol(), V = weight.shape?.[0] ?? g.freshSymbol();
    // float32 statistics for half-precision hidden states (float64 ones stay float64: the checks).
    const f = hidden.dtype === "float64" ? "float64" : "float32";
    weights = g.cast(weights, f);
    const index = g.max(labels, g.constant(0, labels.dtype, [])); // [N]
    const count = g.reduceSum(weights, [0], false);
    // A tiny floor turns 0/0 (every token masked) into 0 without touching real weight sums.
    const denom = g.max(count, g.scalar(1e-30, f));
    const coef = g.div(weights, denom); // [N]: each row's share of the mean

    // Rows padded to K·R and cut into K slices of R (padding: zero rows, weight 0).
    const rows = g.gather(g.shapeOf(hidden), g.constant([0])); // [1]
    const k = g.constant([K]);
    const R = g.div(g.add(rows, g.constant([K - 1])), k); // ceil(N / K)
    const pad = g.sub(g.mul(R, k), rows);
    const padRows = (x: Value, value: number) => {
      const pads = g.concat([
        g.constant(Array(x.shape!.length).fill(0)),
        pad,
        ...Array(x.shape!.length - 1).fill(g.constant([0])),
      ], 0);
      return g.op1("Pad", [x, pads, g.constant(value, x.dtype, [])], {}, {
        types: [{ dtype: x.dtype, shape: [g.freshSymbol(), ...x.shape!.slice(1)] }],
      });
    };
    const slices = (x: Value, value: number): Value[] => {
      if (K === 1) return [x];
      const padded = padRows(x, value);
      const shape = g.concat([k, R, ...x.shape!.slice(1).map((d) => g.constant([d as number]))], 0);
      const stacked = g.reshape(padded, shape, [K, LOSS_CHUNK_ROWS, ...x.shape!.slice(1)]);
      return Array.from({ length: K }, (_, i) => g.gather(stacked, g.constant(i, "int64", []), 0));
    };
    const hs = slices(hidden, 0), idx = slices(index, 0), cs = slices(coef, 0), ws = slices(weights, 0);
    // Wᵀ for the gradient products (onnxruntime folds it once when W is a constant).
    const weightT = opts.gradient ? g.transpose(weight, [1, 0]) : null;

    const nlls: Value[] = [], hits: Value[] = [], dHs: Value[] = [];
    // Each slice starts after the previous one is done (its gradient, or its loss): onnxruntime would
    // otherwise run every slice's forward part first (the loss and hits need them all) and keep their
    // [V, R] exponentials for the gradients, all [N, V] of them again.
    let previous: Value | null = null;
    for (let i = 0; i < K; i++) {
      const h = previous ? tiedAfter(g, hs[i], previous) : hs[i], rowsOf = h.shape?.[0] ?? g.freshSymbol();
      const logits = g.cast(
        g.op1("Gemm", [weight, h], { transB: 1 }, { types: [{ dtype: h.dtype, shape: [V, rowsOf] }] }),
        f,
      ); // [V, R]
      const colMax = g.op1("ReduceMax", [logits, g.constant([0])], { keepdims: 1 }); // [1, R]
      const shifted = g.sub(logits, colMax); // ≤ 0, exactly 0 at the maximum
      const at = g.unsqueeze(idx[i], [0]); // [1, R]
      const picked = g.op1("GatherElements", [shifted, at], { axis: 0 }); // [1, R]
      const exp = g.exp(shifted);
      const sumExp = g.reduceSum(exp, [0], true); // [1, R]
      nlls.push(g.mul(g.squeeze(g.sub(g.log(sumExp), picked), [0]), ws[i]));
      // Cast before squeezing: a bool Squeeze runs on the CPU under WebGPU (a device → host copy).
      hits.push(g.mul(g.squeeze(g.cast(g.equal(picked, g.scalar(0, f)), f), [0]), ws[i]));
      previous = nlls[i];
      if (!weightT) continue;
      // After this slice's loss (the gather of the labels' logits would otherwise run at the end of the
      // step, onnxruntime ordering by a walk from the outputs, and keep the shifted logits until then).
      const c = tiedAfter(g, g.unsqueeze(cs[i], [0]), nlls[i]); // [1, R]
      const probs = g.mul(exp, g.div(c, sumExp)); // softmax · wᵢ/Σw
      const dLogits = g.op1("ScatterElements", [probs, at, g.neg(c)], { axis: 0, reduction: "add" });
      // d hᵀ = Wᵀ · d logitsᵀ, back to [R, D].
      const dhT = g.op1("Gemm", [weightT, g.cast(dLogits, h.dtype)], {}, {
        types: [{ dtype: h.dtype, shape: [D, rowsOf] }],
      });
      dHs.push(g.transpose(dhT, [1, 0]));
      previous = dhT;
    }
    const sum = (xs: Value[]) => g.reduceSum(xs.length === 1 ? xs[0] : g.concat(xs, 0), [0], false);
    const loss = g.div(sum(nlls), denom);
    const correct = sum(hits);
    if (!weightT) return { loss, count, correct, dHidden: null };
    if (K === 1) return { loss, count, correct, dHidden: dHs[0] };
    // The unpadded rows, declared with hidden's shape.
    const dHidden = g.op1("Slice", [g.concat(dHs, 0), g.constant([0]), rows, g.constant([0])], {}, {
      types: [{ dtype: hidden.dtype, shape: hidden.shape }],
    });
    return { loss, count, correct, dHidden };
  });
}

/** The symbol of linearCrossEntropy's rows per slice, ceil(rows / chunks): bind it to size the graph. */
export const LOSS_CHUNK_ROWS = "loss_chunk_rows";
