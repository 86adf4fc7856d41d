/**
 * Materialised log-softmax in float64, written out directly: the independent
 * reference the logprob tests compare the engine's log-sum-exp path against.
 */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const out = new Float64Array(logits.length);
  if (max === -Infinity) return out.fill(-Infinity);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}
