/**
 * The ScaLoRA device work as ONNX functions in the `ai.scalora` domain. ORT
 * inlines them at session creation (no custom-op libraries can be loaded from
 * JS), so they run on whichever execution provider the session uses, with
 * standard opset-21 ops only. Notation as ../shared/SCALORA.md.
 */
import type { Attribute, FunctionDef, Node } from "../src/onnx/ir.ts";

export const SCALORA_DOMAIN = "ai.scalora";
const OPSETS = { "": 21 };
const DOUBLE = 11;

/** The standard ops the function bodies use (a misspelt op name is a type error, not a session failure). */
type BodyOp = "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Sqrt" | "Gemm" | "Cast" | "Constant";

function node(op: BodyOp, inputs: string[], outputs: string[], attributes: Record<string, Attribute> = {}): Node {
  return { op, domain: "", name: outputs[0], inputs, outputs, attributes };
}
const int = (value: number): Attribute => ({ kind: "int", value });

function fn(name: string, inputs: string[], outputs: string[], nodes: Node[]): FunctionDef {
  return { name, domain: SCALORA_DOMAIN, inputs, outputs, attributes: [], nodes, opsets: OPSETS };
}

/**
 * ScalingGrams(A, B, gA, gB) → AᵀA, BᵀB, PᵀP, QᵀQ, AᵀP (float64, r x r).
 * P, Q are the raw gradients gA, gB: the solve is invariant to gradient
 * scaling, so neither s nor a clipping factor needs dividing out. Computed in
 * float64 because H squares these entries and the host solve is float64.
 */
export const scalingGramsFn = fn("ScalingGrams", ["A", "B", "gA", "gB"], ["AtA", "BtB", "PtP", "QtQ", "AtP"], [
  node("Cast", ["A"], ["Ad"], { to: int(DOUBLE) }),
  node("Cast", ["B"], ["Bd"], { to: int(DOUBLE) }),
  node("Cast", ["gA"], ["Pd"], { to: int(DOUBLE) }),
  node("Cast", ["gB"], ["Qd"], { to: int(DOUBLE) }),
  node("Gemm", ["Ad", "Ad"], ["AtA"], { transA: int(1) }),
  node("Gemm", ["Bd", "Bd"], ["BtB"], { transA: int(1) }),
  node("Gemm", ["Pd", "Pd"], ["PtP"], { transA: int(1) }),
  node("Gemm", ["Qd", "Qd"], ["QtQ"], { transA: int(1) }),
  node("Gemm", ["Ad", "Pd"], ["AtP"], { transA: int(1) }),
]);

/** Merge(W, A, B, c, s) → W + s · A diag(c) Bᵀ (c [r], s scalar). One Gemm with W as its C input. */
export const mergeFn = fn("Merge", ["W", "A", "B", "c", "s"], ["Wout"], [
  node("Mul", ["c", "s"], ["cs"]),
  node("Mul", ["A", "cs"], ["Acs"]),
  node("Gemm", ["Acs", "B", "W"], ["Wout"], { transB: int(1) }),
]);

/** ColumnScale(p, d) → p diag(d): A ← A diag(α), B ← B diag(β). */
export const columnScaleFn = fn("ColumnScale", ["p", "d"], ["out"], [node("Mul", ["p", "d"], ["out"])]);

/**
 * MomentTransform(g, m, v, d) → g diag(d), m diag(d), v diag(d²): the crossed
 * transform keeps Adam's m/sqrt(v) direction after a rescale (d = β for A's
 * state, α for B's).
 */
export const momentTransformFn = fn("MomentTransform", ["g", "m", "v", "d"], ["gOut", "mOut", "vOut"], [
  node("Mul", ["g", "d"], ["gOut"]),
  node("Mul", ["m", "d"], ["mOut"]),
  node("Mul", ["d", "d"], ["d2"]),
  node("Mul", ["v", "d2"], ["vOut"]),
]);

/**
 * AdamWStep(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step) → p', m', v'
 * with bias correction and decoupled weight decay, in PyTorch's order:
 * p ← p·(1 − lr·wd); m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²;
 * p ← p − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps), bcᵢ = 1 − βᵢ^step.
 * Hyper-parameters are scalar inputs so a schedule never rebuilds the session.
 */
export const adamwStepFn = fn(
  "AdamWStep",
  ["p", "g", "m", "v", "lr", "beta1", "beta2", "eps", "weight_decay", "step"],
  ["pOut", "mOut", "vOut"],
  [
    node("Constant", [], ["one"], { value_float: { kind: "float", value: 1 } }),
    node("Mul", ["lr", "weight_decay"], ["lrwd"]),
    node("Sub", ["one", "lrwd"], ["decay"]),
    node("Mul", ["p", "decay"], ["pd"]),
    node("Sub", ["one", "beta1"], ["omb1"]),
    node("Mul", ["beta1", "m"], ["m_old"]),
    node("Mul", ["omb1", "g"], ["m_new"]),
    node("Add", ["m_old", "m_new"], ["mOut"]),
    node("Sub", ["one", "beta2"], ["omb2"]),
    node("Mul", ["g", "g"], ["g2"]),
    node("Mul", ["beta2", "v"], ["v_old"]),
    node("Mul", ["omb2", "g2"], ["v_new"]),
    node("Add", ["v_old", "v_new"], ["vOut"]),
    node("Pow", ["beta1", "step"], ["b1t"]),
    node("Sub", ["one", "b1t"], ["bc1"]),
    node("Pow", ["beta2", "step"], ["b2t"]),
    node("Sub", ["one", "b2t"], ["bc2"]),
    node("Sqrt", ["bc2"], ["sbc2"]),
    node("Sqrt", ["vOut"], ["sv"]),
    node("Div", ["sv", "sbc2"], ["svc"]),
    node("Add", ["svc", "eps"], ["denom"]),
    node("Div", ["lr", "bc1"], ["stepSize"]),
    node("Div", ["mOut", "denom"], ["dir"]),
    node("Mul", ["stepSize", "dir"], ["upd"]),
    node("Sub", ["pd", "upd"], ["pOut"]),
  ],
);
