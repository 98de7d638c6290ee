// The console's charts, drawn on <canvas> by hand: a heatmap of a similarity matrix, a scatter
// map of projected vectors, and the bar of a response's stage timings. Labels are drawn with
// fillText or set as text, so no data becomes markup.

import { h } from "./dom.js";

// Distinct colours for categories (Okabe-Ito, readable by most colour-blind eyes), then grey.
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
  "#000000", "#7F3C8D", "#11A579", "#3969AC", "#F2B701"];
export const OTHER = "#9a9a9a";

function scaled(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

function shortened(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// A colour from white (lo) to deep blue (hi), through pale yellow.
function ramp(t) {
  const stops = [[255, 255, 240], [120, 190, 200], [20, 60, 140]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return [`rgb(${c[0]},${c[1]},${c[2]})`, f + i > 1.1];
}

// matrix[i][j] for rows `rowLabels` and columns `colLabels`; each cell shows its value, and the
// canvas' title follows the pointer.
export function heatmap(rowLabels, colLabels, matrix) {
  const cell = Math.max(28, Math.min(64, Math.floor(560 / Math.max(colLabels.length, 1))));
  const left = 170;
  const top = 110;
  const width = left + cell * colLabels.length + 100; // room for the last column's slanted label
  const height = top + cell * rowLabels.length + 10;
  const canvas = h("canvas", { class: "heatmap", role: "img",
    "aria-label": `cosine similarity of ${rowLabels.length} by ${colLabels.length} texts` });
  const ctx = scaled(canvas, width, height);
  const values = matrix.flat();
  const lo = Math.min(0, ...values);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  matrix.forEach((row, i) => row.forEach((v, j) => {
    const [colour, dark] = ramp((v - lo) / (1 - lo || 1));
    ctx.fillStyle = colour;
    ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
    ctx.fillStyle = dark ? "#fff" : "#222";
    ctx.textAlign = "center";
    ctx.fillText(v.toFixed(2), left + j * cell + cell / 2, top + i * cell + cell / 2);
  }));
  ctx.fillStyle = "#222";
  ctx.textAlign = "right";
  rowLabels.forEach((label, i) => ctx.fillText(shortened(label, 24), left - 6, top + i * cell + cell / 2));
  colLabels.forEach((label, j) => {
    ctx.save();
    ctx.translate(left + j * cell + cell / 2, top - 6);
    ctx.rotate(-Math.PI / 4);
    ctx.textAlign = "left";
    ctx.fillText(shortened(label, 18), 0, 0);
    ctx.restore();
  });
  canvas.addEventListener("mousemove", (e) => {
    const rect = canvas.getBoundingClientRect();
    const i = Math.floor((e.clientY - rect.top - top) / cell);
    const j = Math.floor((e.clientX - rect.left - left) / cell);
    canvas.title = matrix[i] && matrix[i][j] !== undefined
      ? `${rowLabels[i]}\n${colLabels[j]}\ncosine ${matrix[i][j].toFixed(4)}` : "";
  });
  return canvas;
}

// points: [{x, y, colour, label}]; marks: [{x, y, kind: "query" | "hit", label}], drawn above.
export function scatter(points, marks, { width = 760, height = 520 } = {}) {
  const canvas = h("canvas", { class: "map", role: "img", "aria-label": `${points.length} points` });
  const ctx = scaled(canvas, width, height);
  const all = points.concat(marks);
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 16;
  const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (y) => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  ctx.globalAlpha = points.length > 3000 ? 0.5 : 0.8;
  for (const p of points) {
    ctx.fillStyle = p.colour;
    ctx.fillRect(sx(p.x) - 2, sy(p.y) - 2, 4, 4);
  }
  ctx.globalAlpha = 1;
  for (const m of marks) {
    const [x, y] = [sx(m.x), sy(m.y)];
    ctx.lineWidth = 2;
    ctx.strokeStyle = m.kind === "query" ? "#d00" : "#111";
    ctx.beginPath();
    if (m.kind === "query") {
      ctx.moveTo(x - 8, y - 8); ctx.lineTo(x + 8, y + 8); ctx.moveTo(x + 8, y - 8); ctx.lineTo(x - 8, y + 8);
    } else {
      ctx.arc(x, y, 6, 0, 2 * Math.PI);
    }
    ctx.stroke();
  }
  canvas.addEventListener("mousemove", (e) => {
    const rect = canvas.getBoundingClientRect();
    const [mx, my] = [e.clientX - rect.left, e.clientY - rect.top];
    let best = null;
    let bestD = 64;
    for (const p of all) {
      const d = (sx(p.x) - mx) ** 2 + (sy(p.y) - my) ** 2;
      if (d < bestD) [best, bestD] = [p, d];
    }
    canvas.title = best ? best.label : "";
  });
  return canvas;
}

// The engine's stages in the order a request passes them (a JSON map has no order of its own);
// others follow.
const STAGES = ["vectors", "embed", "dense", "lexical", "fuse", "feedback", "fetch", "rerank", "group", "sentences"];

// The stages of one response as one bar, each stage's share of the total, named with its ms.
export function timingBar(timings) {
  const place = (name) => (STAGES.includes(name) ? STAGES.indexOf(name) : STAGES.length);
  const stages = Object.entries(timings || {}).filter(([name]) => name !== "total")
    .sort(([a], [b]) => place(a) - place(b));
  const total = Number((timings || {}).total) || stages.reduce((s, [, v]) => s + Number(v), 0) || 1;
  const bar = h("div", { class: "timing-bar", title: `total ${total.toFixed(1)} ms` });
  const legend = h("div", { class: "timing-legend" });
  stages.forEach(([name, ms], i) => {
    const part = h("span", { class: "timing-part", title: `${name} ${Number(ms).toFixed(2)} ms` });
    part.style.width = `${Math.max(0.5, (100 * Number(ms)) / total)}%`;
    part.style.background = PALETTE[i % PALETTE.length];
    bar.appendChild(part);
    const swatch = h("span", { class: "swatch" });
    swatch.style.background = PALETTE[i % PALETTE.length];
    legend.appendChild(h("span", {}, swatch, `${name} ${Number(ms).toFixed(1)} ms`));
  });
  legend.appendChild(h("span", { class: "muted" }, `total ${total.toFixed(1)} ms`));
  return h("div", { class: "timings" }, bar, legend);
}
