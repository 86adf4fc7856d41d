/**
 * Small dense float64 linear algebra for the host side of ScaLoRA (2r x 2r
 * systems) and for rank probes (64 x 64): Cholesky, cyclic Jacobi
 * eigendecomposition, pseudo-inverse solves, one-sided Jacobi SVD. Row-major.
 * Jacobi methods are chosen for accuracy on small matrices, not speed.
 */

/** Solves A x = b for symmetric positive definite A (n x n); null when a pivot is not above `minPivot`. */
export function choleskySolve(a: Float64Array, n: number, b: Float64Array, minPivot = 0): Float64Array | null {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
    if (!(d > minPivot)) return null;
    const ljj = Math.sqrt(d);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / ljj;
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[i * n + k] * y[k];
    y[i] = s / L[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= L[k * n + i] * x[k];
    x[i] = s / L[i * n + i];
  }
  return x;
}

export interface SymmetricEigen {
  /** Eigenvalues, descending. */
  values: Float64Array;
  /** Column j (row-major n x n) is the eigenvector of values[j]. */
  vectors: Float64Array;
}

/** Cyclic Jacobi eigendecomposition of a symmetric n x n matrix. */
export function symmetricEigen(a: Float64Array, n: number): SymmetricEigen {
  const A = a.slice(), V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0, diag = 0;
    for (let i = 0; i < n; i++) {
      diag += A[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) off += A[i * n + j] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (apq === 0) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[j * n + j] - A[i * n + i]);
  const values = Float64Array.from(order, (i) => A[i * n + i]);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = V[k * n + src];
  });
  return { values, vectors };
}

/**
 * Minimum-norm least-squares solution of A x = b for symmetric A: eigenvalues
 * at or below `rcond · max|λ|` are treated as zero (pseudo-inverse).
 */
export function pinvSolveSymmetric(a: Float64Array, n: number, b: Float64Array, rcond = 1e-12): Float64Array {
  const { values, vectors } = symmetricEigen(a, n);
  const top = Math.max(...Array.from(values, Math.abs));
  const x = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    if (!(Math.abs(values[j]) > rcond * top)) continue;
    let proj = 0;
    for (let k = 0; k < n; k++) proj += vectors[k * n + j] * b[k];
    const w = proj / values[j];
    for (let k = 0; k < n; k++) x[k] += w * vectors[k * n + j];
  }
  return x;
}

/**
 * Singular values (descending) of a rows x cols matrix by one-sided Jacobi
 * (Hestenes): accurate to float64 relative precision, unlike eigenvalues of
 * MᵀM whose small values drown in rounding.
 */
export function singularValues(m: Float64Array | Float32Array, rows: number, cols: number): Float64Array {
  // Work on columns of the taller orientation.
  const tall = rows >= cols;
  const r = tall ? rows : cols, c = tall ? cols : rows;
  const U = new Float64Array(r * c);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) U[tall ? i * c + j : j * c + i] = m[i * cols + j];
  }
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < c; p++) {
      for (let q = p + 1; q < c; q++) {
        let alpha = 0, beta = 0, gamma = 0;
        for (let k = 0; k < r; k++) {
          const up = U[k * c + p], uq = U[k * c + q];
          alpha += up * up;
          beta += uq * uq;
          gamma += up * uq;
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const cs = 1 / Math.sqrt(1 + t * t), sn = cs * t;
        for (let k = 0; k < r; k++) {
          const up = U[k * c + p], uq = U[k * c + q];
          U[k * c + p] = cs * up - sn * uq;
          U[k * c + q] = sn * up + cs * uq;
        }
      }
    }
    if (!rotated) break;
  }
  const sv = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += U[k * c + j] ** 2;
    sv[j] = Math.sqrt(s);
  }
  return sv.sort((a, b) => b - a);
}

/**
 * Stable rank Σσ²/σ_max² (‖M‖_F² / ‖M‖_2²) of singular values `sv`, largest first: how many directions carry the
 * energy, unlike a count above a threshold, which tiny singular values raise; 0 for a zero matrix.
 */
export function stableRank(sv: Float64Array): number {
  return sv[0] > 0 ? sv.reduce((a, s) => a + s * s, 0) / (sv[0] * sv[0]) : 0;
}

/** Number of singular values above `rtol · σ_max` (SCALORA.md's probe uses 1e-6). */
export function effectiveRank(m: Float64Array | Float32Array, rows: number, cols: number, rtol = 1e-6): number {
  return rankAbove(singularValues(m, rows, cols), rtol);
}

/** Number of singular values `sv` (largest first) above `rtol · σ_max`. */
export function rankAbove(sv: Float64Array, rtol = 1e-6): number {
  return sv[0] > 0 ? sv.filter((s) => s > rtol * sv[0]).length : 0;
}
