// Search: one query in the mode chosen, each hit with what every retriever scored it, its
// matching chunks highlighted inside its document, its metadata, and the stages' timings.

import { call, MODES, modeName } from "../api.js";
import { codePoints, collectionSelect, field, h, marked, number, scrolledTo, show } from "../dom.js";
import { timingBar } from "../charts.js";
import { filterOf, filterRow, metadataKeys, metadataList } from "../metadata.js";

export async function render(root, context) {
  const collection = () => context.collection;
  const select = collectionSelect(context.collections, collection(), (name) => { context.choose(name); refreshKeys(); });
  const query = h("input", { name: "query", type: "search", placeholder: "a question or keywords", required: true,
    class: "wide" });
  const mode = h("select", { name: "mode" }, h("option", { value: "" }, "collection's default"),
    Object.keys(MODES).map((m) => h("option", { value: m }, m)));
  const k = h("input", { name: "k", type: "number", min: 1, max: 100, value: 5 });
  const diversity = h("input", { name: "diversity", type: "number", min: 0, max: 1, step: 0.1, value: 0 });
  const rerank = h("input", { name: "rerank", placeholder: "collection's default; none; or a cross-encoder" });
  const filters = h("div", { class: "filters" });
  let keys = [];
  const addFilter = h("button", { type: "button", onclick: () => filters.appendChild(filterRow(collection(), keys)) },
    "+ filter");
  const refreshKeys = async () => {
    filters.replaceChildren();
    try {
      keys = await metadataKeys(collection());
    } catch {
      keys = [];
    }
    addFilter.disabled = !keys.length;
  };
  const results = h("div", { id: "results" });
  const form = h("form", { class: "query" },
    h("div", { class: "row" }, field("collection", select), field("query", query)),
    h("div", { class: "row" }, field("mode", mode), field("k", k), field("diversity", diversity),
      field("rerank", rerank), h("button", { type: "submit" }, "search")),
    h("div", { class: "row" }, addFilter, filters));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const request = { collection: collection(), text: query.value, topK: Number(k.value) || 5,
      chunksPerDocument: 3, filter: filterOf(filters) };
    if (mode.value) request.mode = MODES[mode.value];
    if (Number(diversity.value) > 0) request.diversity = Number(diversity.value);
    if (rerank.value.trim()) request.rerank = { model: rerank.value.trim() };
    show(results, () => searched(request));
  });
  root.append(h("h2", {}, "Search"), form, results);
  await refreshKeys();
}

async function searched(request) {
  const found = await call("Search", request);
  const hits = found.hits || [];
  // The whole documents, to show each matching chunk where it sits in its document.
  const documents = hits.length
    ? await call("Get", { collection: request.collection, ids: hits.map((hit) => hit.id), fields: { noMetadata: true } })
    : { documents: [] };
  const texts = Object.fromEntries((documents.documents || []).map((d) => [d.id, d.text || ""]));
  return [
    h("p", { class: "summary" }, `${hits.length} hits · mode ${modeName(found.mode)}`),
    timingBar(found.timingsMs),
    h("ol", { class: "hits" }, hits.map((hit) => hitItem(hit, texts[hit.id] || ""))),
  ];
}

function hitItem(hit, text) {
  const chunks = hit.chunks && hit.chunks.length ? hit.chunks
    : [{ start: hit.chunkStart || 0, end: hit.chunkEnd || 0, score: hit.score, chunkIndex: hit.chunkIndex || 0 }];
  const spans = chunks.map((c, i) => ({ start: c.start || 0, end: c.end || 0, cls: i === 0 ? "best" : "also",
    title: `chunk ${c.chunkIndex || 0} · score ${number(c.score)}` }));
  const doc = scrolledTo(h("div", { class: "document" }, text ? marked(text, spans) : hit.text), "mark.best");
  return h("li", { class: "hit", dataset: { id: hit.id } },
    h("div", { class: "hit-head" }, h("strong", {}, hit.title || hit.id), h("span", { class: "muted" }, hit.id),
      h("span", { class: "score", title: "the hit's score on its documented scale" }, number(hit.score))),
    h("div", { class: "retrievers" }, (hit.retrievers || []).map((r) =>
      h("span", { class: `chip ${r.retriever}`, title: `rank ${r.rank} in ${r.retriever}` },
        `${r.retriever} ${number(r.score)} #${r.rank}`))),
    doc,
    h("details", {}, h("summary", {}, "metadata"), metadataList(hit.metadata)),
    h("div", { class: "muted" }, `best chunk ${hit.chunkIndex || 0}: characters ${hit.chunkStart || 0}–${hit.chunkEnd || 0}`
      + ` of ${codePoints(text).length}`),
  );
}

