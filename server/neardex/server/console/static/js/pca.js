// Principal component analysis of a sample of vectors, in the browser: the two directions of most
// variance found by subspace (block power) iteration on X^T X without forming it, so one pass
// costs 4 x n x d multiply-adds (both components) and memory stays at the sample itself. At
// most `iterations` passes: where the two leading directions are not well apart, a map from
// nearly the best plane serves as well and the time stays bounded.

// rows: an array of n Float32Array (or arrays) of length d. Returns {mean, components: [c1, c2],
// coords: Float64Array(2n)} where coords[2i], coords[2i+1] place row i.
export function pca(rows, { iterations = 40, seed = 7 } = {}) {
  const n = rows.length;
  const d = n ? rows[0].length : 0;
  const mean = new Float64Array(d);
  for (const row of rows) for (let k = 0; k < d; k++) mean[k] += row[k];
  for (let k = 0; k < d; k++) mean[k] /= n || 1;
  const x = new Float64Array(n * d);
  rows.forEach((row, i) => { for (let k = 0; k < d; k++) x[i * d + k] = row[k] - mean[k]; });

  let random = seed;
  const next = () => ((random = (random * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  let basis = [Float64Array.from({ length: d }, next), Float64Array.from({ length: d }, next)];
  orthonormalize(basis);
  for (let it = 0; it < iterations; it++) {
    // Both components in one pass over the rows: w_c = X^T (X b_c).
    const [b0, b1] = basis;
    const w0 = new Float64Array(d);
    const w1 = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      const off = i * d;
      let p0 = 0;
      let p1 = 0;
      for (let k = 0; k < d; k++) {
        const v = x[off + k];
        p0 += v * b0[k];
        p1 += v * b1[k];
      }
      for (let k = 0; k < d; k++) {
        const v = x[off + k];
        w0[k] += v * p0;
        w1[k] += v * p1;
      }
    }
    const moved = [w0, w1];
    orthonormalize(moved);
    const change = 2 - Math.abs(dot(moved[0], b0)) - Math.abs(dot(moved[1], b1));
    basis = moved;
    if (change < 1e-7) break;
  }
  const coords = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 2; c++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += x[i * d + k] * basis[c][k];
      coords[2 * i + c] = s;
    }
  }
  return { mean, components: basis, coords };
}

// Where a vector not in the sample (a query) falls on the same two components.
export function place(model, vector) {
  return model.components.map((c) => {
    let s = 0;
    for (let k = 0; k < c.length; k++) s += (vector[k] - model.mean[k]) * c[k];
    return s;
  });
}

function dot(a, b) {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k] * b[k];
  return s;
}

function orthonormalize(vectors) {
  vectors.forEach((v, i) => {
    for (let j = 0; j < i; j++) {
      const p = dot(v, vectors[j]);
      for (let k = 0; k < v.length; k++) v[k] -= p * vectors[j][k];
    }
    const norm = Math.sqrt(dot(v, v)) || 1;
    for (let k = 0; k < v.length; k++) v[k] /= norm;
  });
}
