/** Loss building blocks made of differentiable ops (see grad_rules.ts). */
import type { GraphBuilder } from "./builder.ts";
import type { Value } from "./ir.ts";

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
