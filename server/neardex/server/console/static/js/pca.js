// Principal component analysis of a sample of vectors, in the browser: the two directions of most
// variance found by subspace (block power) iteration on X^T X without forming it, so one pass
// costs 2 x n x d multiply-adds for each component and memory stays at the sample itself.

// rows: an array of n Float32Array (or arrays) of length d. Returns {mean, components: [c1, c2],
// coords: Float64Array(2n), seconds} where coords[2i], coords[2i+1] place row i.
export function pca(rows, { iterations = 60, seed = 7 } = {}) {
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
  const projected = new Float64Array(n);
  for (let it = 0; it < iterations; it++) {
    const moved = basis.map((v) => {
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += x[i * d + k] * v[k];
        projected[i] = s;
      }
      const w = new Float64Array(d);
      for (let i = 0; i < n; i++) {
        const p = projected[i];
        for (let k = 0; k < d; k++) w[k] += x[i * d + k] * p;
      }
      return w;
    });
    orthonormalize(moved);
    const change = 1 - Math.abs(dot(moved[0], basis[0]));
    basis = moved;
    if (it > 5 && change < 1e-9) break;
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
