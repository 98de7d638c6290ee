// What the console knows of a collection's metadata: its keys, read from a page of its documents
// (collections have no schema), the values of one key (Facet), and filters built from the rows a
// person fills in.

import { call } from "./api.js";
import { clear, h } from "./dom.js";

const SAMPLE = 50;

// Dotted paths of the scalar (or list) values in the metadata of the collection's first documents.
export async function metadataKeys(collection) {
  const page = await call("Scroll", { collection, limit: SAMPLE, fields: { noText: true } });
  const keys = new Set();
  const walk = (value, path) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k);
    } else if (path) {
      keys.add(path);
    }
  };
  for (const doc of page.documents || []) walk(doc.metadata || {}, "");
  return [...keys].sort();
}

// The value at a dotted path of a metadata object.
export function valueAt(metadata, path) {
  return path.split(".").reduce((v, k) => (v && typeof v === "object" ? v[k] : undefined), metadata);
}

// "true", "12.5", "\"12\"" (a string), "river" -> the JSON value a filter compares with.
export function parseValue(text) {
  const t = text.trim();
  if (/^(true|false|null|-?\d+(\.\d+)?([eE][-+]?\d+)?|".*")$/.test(t)) return JSON.parse(t);
  return t;
}

const OPERATORS = { "=": "eq", "≠": "ne", "≥": "gte", "≤": "lte" };

// A row of the filter editor: key, operator, value (suggested by Facet once the key is chosen).
export function filterRow(collection, keys, onremove) {
  const list = h("datalist", { id: `values-${Math.random().toString(36).slice(2)}` });
  const key = h("select", { name: "filter-key" }, keys.map((k) => h("option", { value: k }, k)));
  const op = h("select", { name: "filter-op" }, Object.keys(OPERATORS).map((o) => h("option", { value: o }, o)));
  const value = h("input", { name: "filter-value", list: list.id, placeholder: "value" });
  let asked = 0;
  const suggest = async () => {
    const mine = ++asked;
    let values = [];
    try {
      values = (await call("Facet", { collection, key: key.value, limit: 50 })).values || [];
    } catch {
      // Suggestions only: a refused Facet leaves the value to be typed.
    }
    if (mine !== asked) return; // the key changed meanwhile: a later answer fills the list
    clear(list, values.map((v) => h("option", { value: typeof v.value === "string" ? v.value : JSON.stringify(v.value) },
      `${v.count} documents`)));
  };
  key.addEventListener("change", suggest);
  suggest();
  const row = h("div", { class: "filter-row" }, key, op, value, list,
    h("button", { type: "button", onclick: () => { row.remove(); onremove && onremove(); } }, "×"));
  row.condition = () => {
    if (!value.value.trim()) return null;
    const v = parseValue(value.value);
    const name = OPERATORS[op.value];
    if (name === "eq" || name === "ne") return { conditions: { [key.value]: { [name]: v } } };
    const bound = typeof v === "number" ? name : `${name}Text`;
    return { conditions: { [key.value]: { range: { [bound]: typeof v === "number" ? v : String(v) } } } };
  };
  return row;
}

// The filter of every filled row (all must hold), or undefined.
export function filterOf(container) {
  const parts = [...container.querySelectorAll(".filter-row")].map((r) => r.condition()).filter(Boolean);
  if (!parts.length) return undefined;
  return parts.length === 1 ? parts[0] : { all: parts };
}

export function metadataList(metadata) {
  const entries = Object.entries(metadata || {});
  return h("dl", { class: "metadata" }, entries.map(([k, v]) => [h("dt", {}, k),
    h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]));
}
