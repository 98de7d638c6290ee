// Map: a sample of the collection's chunk vectors projected to two dimensions by PCA in the
// browser, coloured by a metadata key, with a query's position and its hits marked. The sample is
// the first MAX_POINTS chunks in id order (read with Scroll's vectors), so the map's cost has a
// bound whatever the collection's size.

import { call, callBinary } from "../api.js";
import { clear, collectionSelect, errorBox, field, h, show } from "../dom.js";
import { OTHER, PALETTE, scatter } from "../charts.js";
import { metadataKeys, valueAt } from "../metadata.js";
import { pca, place } from "../pca.js";
import { scrollRequest, scrollResponse } from "../proto.js";

export const MAX_POINTS = 2000;
const PAGE = 500;

export async function render(root, context) {
  const select = collectionSelect(context.collections, context.collection, (name) => { context.choose(name); fillKeys(); });
  const colour = h("select", { name: "colour" });
  const query = h("input", { name: "query", type: "search", placeholder: "optional: a query to place", class: "wide" });
  const k = h("input", { name: "k", type: "number", min: 1, max: 50, value: 5 });
  const results = h("div", { id: "results" });
  const fillKeys = async () => {
    let keys = [];
    try {
      keys = await metadataKeys(context.collection);
    } catch {
      keys = [];
    }
    clear(colour, h("option", { value: "" }, "(none)"), keys.map((key) => h("option", { value: key,
      selected: key === "extension" }, key)));
  };
  const form = h("form", { class: "query" },
    h("div", { class: "row" }, field("collection", select), field("colour by", colour)),
    h("div", { class: "row" }, field("query", query), field("hits", k), h("button", { type: "submit" }, "draw")),
    h("p", { class: "muted" }, `A sample of at most ${MAX_POINTS} chunks (the first in id order) is read and`
      + " projected on its two principal components in this page."));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    show(results, () => drawn(context.collection, colour.value, query.value.trim(), Number(k.value) || 5));
  });
  root.append(h("h2", {}, "Map"), form, results);
  await fillKeys();
}

// The sample: chunk vectors with their document's id, chunk index and colour value, read with
// Scroll in the API's binary form (vectors as JSON numbers cost the server 60 times more).
export async function sample(collection, key, limit = MAX_POINTS) {
  const points = [];
  let cursor = "";
  do {
    const fields = { vectors: true, noText: true };
    if (key) fields.metadataKeys = [key]; else fields.noMetadata = true;
    const page = scrollResponse(await callBinary("Scroll",
      scrollRequest({ collection, limit: PAGE, cursor, fields })));
    for (const doc of page.documents) {
      doc.chunkVectors.forEach((v, i) => {
        if (points.length < limit) points.push({ id: doc.id, chunk: i, vector: v,
          value: key ? valueAt(doc.metadata || {}, key) : undefined });
      });
    }
    cursor = page.nextCursor;
  } while (cursor && points.length < limit);
  return points;
}

async function drawn(collection, key, query, k) {
  const info = await call("GetCollection", { name: collection });
  const t0 = performance.now();
  const points = await sample(collection, key);
  const t1 = performance.now();
  if (points.length < 2) return h("p", { class: "muted" }, "fewer than two chunks: nothing to project");
  const model = pca(points.map((p) => p.vector));
  const t2 = performance.now();

  const marks = [];
  const notes = [];
  const hitIds = new Map();
  if (query) {
    try {
      const [embedded, found] = await Promise.all([call("Embed", { texts: [query], collection }),
        call("Search", { collection, text: query, topK: k })]);
      const [x, y] = place(model, embedded.vectors[0].values);
      marks.push({ x, y, kind: "query", label: `query: ${query}` });
      (found.hits || []).forEach((hit, i) => hitIds.set(`${hit.id}#${hit.chunkIndex || 0}`, { hit, rank: i + 1 }));
    } catch (err) {
      notes.push(errorBox(err));
    }
  }
  const values = new Map();
  for (const p of points) {
    const v = p.value === undefined ? "(none)" : typeof p.value === "string" ? p.value : JSON.stringify(p.value);
    p.shown = v;
    values.set(v, (values.get(v) || 0) + 1);
  }
  const ranked = [...values.entries()].sort((a, b) => b[1] - a[1]);
  const colours = new Map(ranked.slice(0, PALETTE.length).map(([v], i) => [v, PALETTE[i]]));
  const shown = points.map((p, i) => ({ x: model.coords[2 * i], y: model.coords[2 * i + 1],
    colour: colours.get(p.shown) || OTHER, label: `${p.id} · chunk ${p.chunk}${key ? ` · ${key}: ${p.shown}` : ""}` }));
  points.forEach((p, i) => {
    const found = hitIds.get(`${p.id}#${p.chunk}`);
    if (found) {
      marks.push({ x: shown[i].x, y: shown[i].y, kind: "hit", label: `hit ${found.rank}: ${p.id} · chunk ${p.chunk}` });
      hitIds.delete(`${p.id}#${p.chunk}`);
    }
  });
  const canvas = scatter(shown, marks);
  const t3 = performance.now();
  const timing = { read: t1 - t0, pca: t2 - t1, draw: t3 - t2 };
  const legend = h("div", { class: "legend" }, ranked.slice(0, PALETTE.length).map(([v, n]) => {
    const swatch = h("span", { class: "swatch" });
    swatch.style.background = colours.get(v);
    return h("span", {}, swatch, `${v} (${n})`);
  }), ranked.length > PALETTE.length ? h("span", {}, `other values: grey (${ranked.length - PALETTE.length})`) : null,
  query ? h("span", {}, "✕ query, ○ hits") : null);
  const missing = [...hitIds.values()].map(({ hit, rank }) => `${rank}: ${hit.id}`);
  return h("div", { class: "map-result", dataset: { points: points.length, readMs: timing.read.toFixed(1),
    pcaMs: timing.pca.toFixed(1), drawMs: timing.draw.toFixed(1), marks: marks.length } },
  h("p", { class: "summary" }, `${points.length} of ${info.chunks || 0} chunks`
    + `${points.length < Number(info.chunks || 0) ? ` (sample: the first ${MAX_POINTS} in id order)` : ""}`
    + ` · read ${timing.read.toFixed(0)} ms · PCA ${timing.pca.toFixed(0)} ms · draw ${timing.draw.toFixed(0)} ms`),
  notes, canvas, legend,
  missing.length ? h("p", { class: "muted" }, `hits outside the sample: ${missing.join(", ")}`) : null);
}
