// Ask: the passages most likely to answer a question, each with its answering sentence marked
// and the confidence the server gives it.

import { call } from "../api.js";
import { collectionSelect, field, h, marked, number, scrolledTo, show } from "../dom.js";
import { timingBar } from "../charts.js";

export async function render(root, context) {
  const select = collectionSelect(context.collections, context.collection, (name) => context.choose(name));
  const question = h("input", { name: "question", type: "search", required: true, class: "wide",
    placeholder: "a question" });
  const k = h("input", { name: "k", type: "number", min: 1, max: 20, value: 3 });
  const results = h("div", { id: "results" });
  const form = h("form", { class: "query" }, h("div", { class: "row" }, field("collection", select),
    field("question", question), field("k", k), h("button", { type: "submit" }, "ask")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    show(results, async () => {
      const asked = await call("Ask", { collection: context.collection, question: question.value,
        topK: Number(k.value) || 3 });
      const answers = asked.answers || [];
      return [h("p", { class: "summary" }, `${answers.length} passages`), timingBar(asked.timingsMs),
        h("ol", { class: "hits" }, answers.map(answer))];
    });
  });
  root.append(h("h2", {}, "Ask"), form, results);
}

function answer(a) {
  const passage = a.passage || {};
  const span = { start: a.sentenceStart || 0, end: a.sentenceEnd || 0, cls: "answer", title: "answering sentence" };
  return h("li", { class: "hit answer", dataset: { id: passage.id } },
    h("div", { class: "hit-head" }, h("strong", {}, passage.title || passage.id),
      h("span", { class: "muted" }, passage.id),
      h("span", { class: "score", title: "confidence" }, `confidence ${number(a.confidence)}`)),
    h("blockquote", { class: "sentence" }, a.sentence),
    scrolledTo(h("div", { class: "document" }, marked(passage.text || "", [span])), "mark.answer"));
}
