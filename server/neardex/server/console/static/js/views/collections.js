// Collections: what each holds and how it is built, with create and delete offered only where the
// key may do them (asked of the server, see api.mayAdminister); a delete asks for confirmation.

import { call, mayAdminister, modeName } from "../api.js";
import { clear, errorBox, field, h } from "../dom.js";

let status = null; // the view's message line: results and refusals of its actions
let shared = null;

export async function render(root, context) {
  shared = context;
  status = h("div", { id: "collections-status", class: "status" });
  const table = h("table", { class: "collections" },
    h("thead", {}, h("tr", {}, ["name", "documents", "chunks", "model", "index", "analyzer", "default mode",
      "aliases", "snapshots", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, context.collections.map(row)));
  const create = h("div", { id: "create" });
  root.append(h("h2", {}, "Collections"), status,
    context.collections.length ? table : h("p", { class: "muted" }, "No collections this key can see."), create);
  const creates = await mayAdminister("");
  if (creates) create.appendChild(createForm());
  create.dataset.admin = creates ? "yes" : "no";
}

function row(info) {
  const snapshots = h("td", { class: "muted" }, "…");
  const actions = h("td", { class: "actions" });
  const analyzer = info.lexicalLanguage && info.lexicalLanguage !== info.language
    ? `${info.language} (rebuilding; ${info.lexicalLanguage} answers)` : info.language || "";
  const tr = h("tr", { dataset: { collection: info.name } },
    h("td", {}, h("strong", {}, info.name),
      info.state === "COLLECTION_STATE_UNAVAILABLE" ? h("div", { class: "error" }, `unavailable: ${info.reason}`) : null),
    h("td", { class: "num" }, info.documents || "0"),
    h("td", { class: "num" }, info.chunks || "0"),
    h("td", {}, info.model || "", h("div", { class: "muted" }, [info.encoder, info.dimension && `${info.dimension}-d`]
      .filter(Boolean).join(" · "))),
    h("td", {}, info.indexKind || "", h("div", { class: "muted" },
      Object.entries(info.indexParams || {}).map(([k, v]) => `${k}=${v}`).join(" "))),
    h("td", {}, analyzer),
    h("td", {}, modeName(info.defaultMode)),
    h("td", {}, (info.aliases || []).join(", ")),
    snapshots, actions);
  call("ListSnapshots", { collection: info.name }).then(
    (r) => clear(snapshots, (r.snapshots || []).map((s) => h("div", {}, s.name,
      h("div", { class: "muted" }, `${size(Number(s.bytes))} · ${s.created}`)))
      .concat((r.snapshots || []).length ? [] : ["none"])),
    (err) => clear(snapshots, errorBox(err)));
  mayAdminister(info.name).then((allowed) => {
    tr.dataset.admin = allowed ? "yes" : "no"; // known: what the row offers is final
    if (allowed) actions.appendChild(h("button", { class: "danger", onclick: () => confirmDelete(actions, info.name) },
      "delete…"));
  });
  return tr;
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  for (; bytes >= 1024 && i < units.length - 1; i++) bytes /= 1024;
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function confirmDelete(cell, name) {
  const keep = [...cell.childNodes];
  clear(cell, h("span", {}, `Delete ${name} and all its documents?`),
    h("button", { class: "danger", dataset: { confirm: name }, onclick: () => remove(name) }, "yes, delete"),
    h("button", { onclick: () => clear(cell, keep) }, "cancel"));
}

// Deletes `name` and shows the outcome (or the refusal) on the view's message line.
export async function remove(name) {
  try {
    await call("DeleteCollection", { name });
    document.querySelector(`tr[data-collection="${CSS.escape(name)}"]`)?.remove();
    clear(status, h("div", { class: "ok" }, `deleted ${name}`));
    await shared.refresh();
  } catch (err) {
    clear(status, errorBox(err));
  }
}

function createForm() {
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_][A-Za-z0-9_-]{0,63}" });
  const model = h("input", { name: "model", placeholder: "bundled all-MiniLM-L6-v2, or none" });
  const dimension = h("input", { name: "dimension", type: "number", min: 1, placeholder: "with model none" });
  const kind = h("select", { name: "kind" }, ["flat", "hnsw", "ivfpq", "auto"].map((k) => h("option", { value: k }, k)));
  const language = h("input", { name: "language", placeholder: "auto" });
  const form = h("form", { class: "inline" }, field("name", name), field("model", model), field("dimension", dimension),
    field("index", kind), field("language", language), h("button", { type: "submit" }, "create"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const request = { name: name.value.trim(), model: model.value.trim(), index: { kind: kind.value },
      language: language.value.trim() };
    if (dimension.value) request.dimension = Number(dimension.value);
    try {
      const info = await call("CreateCollection", request);
      clear(status, h("div", { class: "ok" }, `created ${info.name}`));
      shared.choose(info.name);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (err) {
      clear(status, errorBox(err));
    }
  });
  return h("section", {}, h("h3", {}, "New collection"), form);
}
