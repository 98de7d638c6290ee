// Map: a sample of the collection's chunk vectors projected to two dimensions by PCA in the
// browser, coloured by a metadata key, with a query's position and its hits marked. The sample is
// a uniform random sample of the collection's documents, their chunks up to MAX_POINTS points, so
// that the map shows the whole collection (ids often follow a category, so the first ones in id
// order would show one corner of it) while its cost keeps a bound: the ids alone are scanned with
// Scroll (no text, metadata or vectors: a few bytes a document), a reservoir keeps MAX_POINTS of
// them, and only those documents are read with Get, with their vectors.

import { ApiError, call, callBinary } from "../api.js";
import { clear, collectionSelect, errorBox, field, h, show } from "../dom.js";
import { OTHER, PALETTE, scatter } from "../charts.js";
import { metadataKeys, valueAt } from "../metadata.js";
import { pca, place } from "../pca.js";
import { getRequest, getResponse, scrollRequest, scrollResponse } from "../proto.js";

export const MAX_POINTS = 2000;
// Scroll page sizes for the id scan, largest first: the first is the largest page a server allows
// by default (its max_batch_documents), since a page of ids only is small and fewer pages are fewer
// round trips; a server configured lower refuses it (invalid_argument), and the next is tried.
const ID_PAGES = [10000, 1000, 100];
// Documents per Get: the first batch is this many, later ones what the chunks still missing need
// at the chunks per document seen so far, so that documents of many chunks are not read in vain.
const GET_BATCH = 500;

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
    h("p", { class: "muted" }, `A uniform random sample of the collection's documents is read, their chunks up to`
      + ` ${MAX_POINTS} points, and projected on its two principal components in this page.`));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    show(results, () => drawn(context.collection, colour.value, query.value.trim(), Number(k.value) || 5));
  });
  root.append(h("h2", {}, "Map"), form, results);
  await fillKeys();
}

// The ids of a uniform random sample of `size` of the collection's documents (all of them when
// there are no more), in random order so that any first part of them is a uniform sample too:
// reservoir sampling over a scan of the ids alone. Also returns how many documents were seen.
export async function sampledIds(collection, size, random = Math.random) {
  const kept = [];
  let seen = 0;
  let cursor = "";
  let pageSize = 0; // index in ID_PAGES
  for (;;) {
    let page;
    try {
      page = scrollResponse(await callBinary("Scroll", scrollRequest({ collection, limit: ID_PAGES[pageSize], cursor,
        fields: { noText: true, noMetadata: true } })));
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== "invalid_argument" || pageSize + 1 >= ID_PAGES.length) throw err;
      pageSize += 1;
      continue;
    }
    for (const { id } of page.documents) {
      seen += 1;
      if (kept.length < size) kept.push(id);
      else {
        const j = Math.floor(random() * seen);
        if (j < size) kept[j] = id;
      }
    }
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  for (let i = kept.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [kept[i], kept[j]] = [kept[j], kept[i]];
  }
  return { ids: kept, documents: seen };
}

// Documents read with Get in the API's binary form (vectors as JSON numbers cost the server 60
// times more), with their chunk vectors and the colour key's value.
async function documents(collection, ids, key) {
  const fields = { vectors: true, noText: true };
  if (key) fields.metadataKeys = [key]; else fields.noMetadata = true;
  return getResponse(await callBinary("Get", getRequest({ collection, ids, fields }))).documents;
}

// The sample: the chunk vectors of a uniform random sample of documents, up to `limit` points
// (the last document's chunks may be cut short), each with its document's id, chunk index and
// colour value. `documents` is how many the collection holds, `sampled` how many were read.
export async function sample(collection, key, limit = MAX_POINTS, random = Math.random) {
  const { ids, documents: total } = await sampledIds(collection, limit, random);
  const points = [];
  let read = 0;
  while (read < ids.length && points.length < limit) {
    const perDocument = read ? Math.max(points.length / read, 1) : 1;
    const batch = read ? Math.min(GET_BATCH, Math.ceil((limit - points.length) / perDocument)) : GET_BATCH;
    const chosen = ids.slice(read, read + batch);
    read += chosen.length;
    for (const doc of await documents(collection, chosen, key)) {
      doc.chunkVectors.forEach((v, i) => {
        if (points.length < limit) points.push({ id: doc.id, chunk: i, vector: v,
          value: key ? valueAt(doc.metadata || {}, key) : undefined });
      });
    }
  }
  return Object.assign(points, { documents: total, sampled: read });
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
  // A hit outside the sample is still placed, by its own chunk vector, as the query is.
  const outside = [...hitIds.values()];
  if (outside.length) {
    try {
      const read = new Map((await documents(collection, [...new Set(outside.map(({ hit }) => hit.id))], ""))
        .map((d) => [d.id, d]));
      for (const { hit, rank } of outside) {
        const v = read.get(hit.id)?.chunkVectors[hit.chunkIndex || 0];
        if (!v) continue;
        const [x, y] = place(model, v);
        marks.push({ x, y, kind: "hit",
          label: `hit ${rank} (outside the sample): ${hit.id} · chunk ${hit.chunkIndex || 0}` });
      }
    } catch (err) {
      notes.push(errorBox(err));
    }
  }
  const canvas = scatter(shown, marks);
  const t3 = performance.now();
  const timing = { read: t1 - t0, pca: t2 - t1, draw: t3 - t2 };
  const legend = h("div", { class: "legend" }, ranked.slice(0, PALETTE.length).map(([v, n]) => {
    const swatch = h("span", { class: "swatch" });
    swatch.style.background = colours.get(v);
    return h("span", {}, swatch, `${v} (${n})`);
  }), ranked.length > PALETTE.length ? h("span", {}, `other values: grey (${ranked.length - PALETTE.length})`) : null,
  query ? h("span", {}, "✕ query, ○ hits") : null);
  const missing = outside.map(({ hit, rank }) => `${rank}: ${hit.id}`);
  return h("div", { class: "map-result", dataset: { points: points.length, documents: points.sampled,
    readMs: timing.read.toFixed(1), pcaMs: timing.pca.toFixed(1), drawMs: timing.draw.toFixed(1),
    marks: marks.length } },
  h("p", { class: "summary" }, `${points.length} of ${info.chunks || 0} chunks`
    + `${points.sampled < points.documents ? ` (a uniform random sample: ${points.sampled} of ${points.documents}`
      + ` documents, their chunks up to ${MAX_POINTS})` : ""}`
    + ` · read ${timing.read.toFixed(0)} ms · PCA ${timing.pca.toFixed(0)} ms · draw ${timing.draw.toFixed(0)} ms`),
  notes, canvas, legend,
  missing.length ? h("p", { class: "muted" }, `hits outside the sample (placed by their own vectors):`
    + ` ${missing.join(", ")}`) : null);
}
