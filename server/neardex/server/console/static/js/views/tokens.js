// Tokens: a text (typed, or a stored document) as the model sees it, its subword tokens as
// coloured runs with their ids, where the collection's chunker cuts it and how full each chunk is
// against the model's window, and beside them the lexical analyzer's terms.

import { call } from "../api.js";
import { codePoints, cut, field, h, show } from "../dom.js";

export async function render(root, context) {
  const select = h("select", { name: "collection" }, h("option", { value: "" }, "server's default model"),
    context.collections.map((c) => h("option", { value: c.name, selected: c.name === context.collection }, c.name)));
  select.addEventListener("change", () => select.value && context.choose(select.value));
  const text = h("textarea", { name: "text", rows: 6, class: "wide" },
    "Unbelievably, the Nile's delta floods every summer; farmers have relied on it for 5,000 years.");
  const docId = h("input", { name: "document", placeholder: "a stored document's id" });
  const language = h("input", { name: "language", placeholder: "the collection's analyzer" });
  const results = h("div", { id: "results" });
  const load = h("button", { type: "button" }, "load document");
  load.addEventListener("click", () => show(results, async () => {
    const got = await call("Get", { collection: select.value, ids: [docId.value.trim()], fields: { noMetadata: true } });
    if (!(got.documents || []).length) return h("div", { class: "error" }, `no document ${docId.value} in ${select.value}`);
    text.value = got.documents[0].text || "";
    return h("p", { class: "muted" }, `loaded ${docId.value} (${codePoints(text.value).length} characters)`);
  }));
  const form = h("form", { class: "query" },
    h("div", { class: "row" }, field("collection", select), field("document", docId), load,
      field("analyzer language", language)),
    field("text", text), h("button", { type: "submit" }, "tokenize"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    show(results, async () => {
      const request = { text: text.value, collection: select.value };
      if (language.value.trim()) request.language = language.value.trim();
      return tokenized(text.value, await call("Tokenize", request));
    });
  });
  root.append(h("h2", {}, "Tokens"), form, results);
}

function tokenized(text, r) {
  const points = codePoints(text);
  const tokens = r.tokens || [];
  const count = r.count || 0;
  const window = r.window || 0;
  const chunks = r.chunks || [];
  const cuts = new Set(chunks.slice(1).map((c) => c.start || 0));
  const run = h("div", { class: "tokens" });
  let at = 0;
  tokens.forEach((t, i) => {
    const [start, end] = [t.start || 0, t.end || 0];
    if (start > at) run.append(cut(points, at, start));
    if (cuts.has(start)) {
      run.append(h("span", { class: "cut", title: "a chunk starts here" }, "¦"));
      cuts.delete(start);
    }
    run.append(h("span", { class: `token t${i % 4}`, title: `${t.token} · id ${t.id} · characters ${start}–${end}`,
      dataset: { id: t.id } }, cut(points, start, end)));
    at = Math.max(at, end);
  });
  if (at < points.length) run.append(cut(points, at, points.length));
  return [
    h("p", { class: "summary" }, h("strong", { id: "token-count", dataset: { count } }, `${count} tokens`),
      ` of a ${window}-token window: ${r.fits ? "fits one model call" : "longer than one model call"} · model ${r.model}`),
    run,
    h("h3", {}, `Chunks (${chunks.length})`),
    h("table", { class: "chunks" }, chunks.map((c) => {
      const meter = h("meter", { min: 0, max: window || 1, value: c.tokens || 0 });
      return h("tr", {}, h("td", {}, `chunk ${c.index || 0}`), h("td", {}, `characters ${c.start || 0}–${c.end || 0}`),
        h("td", {}, meter), h("td", { class: "num" }, `${c.tokens || 0} / ${window} tokens`));
    })),
    h("h3", {}, `Lexical terms · analyzer ${r.analyzer || "?"}${r.language ? ` · language ${r.language}` : ""}`),
    (r.terms || []).length
      ? h("div", { class: "terms" }, (r.terms || []).map((t) => h("span", { class: t.stop ? "term stop" : "term",
        title: t.stop ? "a stop word: indexed, left out of queries" : `characters ${t.start || 0}–${t.end || 0}` },
      h("span", { class: "word" }, t.text), "→", h("code", {}, t.term))))
      : h("p", { class: "muted" }, "no terms"),
  ];
}
