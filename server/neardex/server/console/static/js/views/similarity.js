// Similarity: the cosine similarity of every pair of several texts, as a heatmap, embedded by a
// collection's model (or the server's default one).

import { call } from "../api.js";
import { field, h, number, show } from "../dom.js";
import { heatmap } from "../charts.js";

const EXAMPLE = ["The Nile flows north into the Mediterranean.", "Egypt's great river runs to the sea.",
  "Sourdough rises because wild yeast ferments the dough.", "Bread dough is leavened by fermentation.",
  "Apollo 11 landed on the Moon in July 1969."];

export async function render(root, context) {
  const select = h("select", { name: "collection" }, h("option", { value: "" }, "server's default model"),
    context.collections.map((c) => h("option", { value: c.name, selected: c.name === context.collection }, c.name)));
  const texts = h("textarea", { name: "texts", rows: 7, class: "wide" }, EXAMPLE.join("\n"));
  const results = h("div", { id: "results" });
  const form = h("form", { class: "query" }, h("div", { class: "row" }, field("model of", select)),
    field("texts, one per line", texts), h("button", { type: "submit" }, "compare"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const lines = texts.value.split("\n").map((t) => t.trim()).filter(Boolean);
    show(results, async () => {
      const answered = await call("Similarity", { texts: lines, collection: select.value });
      const matrix = (answered.rows || []).map((r) => (r.values || []).map(Number));
      return [h("p", { class: "summary" }, `${lines.length} texts · model ${answered.model}`),
        heatmap(lines, lines, matrix),
        h("details", {}, h("summary", {}, "values"), h("table", { class: "matrix" },
          matrix.map((row, i) => h("tr", {}, h("th", {}, lines[i]), row.map((v) => h("td", { class: "num" }, number(v))))))),
      ];
    });
  });
  root.append(h("h2", {}, "Similarity"), form, results);
}
