// The console's frame: the views named in the address' hash, the key form, and the list of
// collections every view chooses from (read again when the key changes).

import { call, getKey, setKey } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import * as ask from "./views/ask.js";
import * as collections from "./views/collections.js";
import * as map from "./views/map.js";
import * as search from "./views/search.js";
import * as similarity from "./views/similarity.js";
import * as tokens from "./views/tokens.js";

const VIEWS = { collections, search, ask, tokens, similarity, map };
const TITLES = { collections: "Collections", search: "Search", ask: "Ask", tokens: "Tokens",
  similarity: "Similarity", map: "Map" };

// What the views share: the collections this key sees and the one last chosen.
const context = {
  collections: [],
  collection: sessionStorage.getItem("neardex.collection") || "",
  choose(name) {
    context.collection = name;
    sessionStorage.setItem("neardex.collection", name);
  },
  info(name) {
    return context.collections.find((c) => c.name === name);
  },
  async refresh() {
    const listed = await call("ListCollections", {});
    context.collections = listed.collections || [];
    if (!context.info(context.collection) && context.collections.length) {
      context.choose(context.collections[0].name);
    }
  },
};

function current() {
  const name = location.hash.replace(/^#/, "").split("?")[0];
  return VIEWS[name] ? name : "collections";
}

// Renders are numbered: one started later (a new key, another view) supersedes any still waiting
// for the server, whose answer is then dropped rather than drawn over the newer view.
let renders = 0;

async function render() {
  const mine = ++renders;
  const name = current();
  for (const link of document.querySelectorAll("#nav a")) {
    link.setAttribute("aria-current", link.dataset.view === name ? "page" : "false");
  }
  const root = document.getElementById("view");
  clear(root, h("div", { class: "muted" }, "loading…"));
  root.dataset.view = name;
  delete root.dataset.ready;
  try {
    await context.refresh();
  } catch (err) {
    if (mine !== renders) return;
    // Without the list no view can work; the refusal says why (most often: a key is needed).
    clear(root, h("h2", {}, TITLES[name]), errorBox(err));
    root.dataset.ready = "error";
    return;
  }
  if (mine !== renders) return;
  clear(root);
  await VIEWS[name].render(root, context);
  if (mine === renders) root.dataset.ready = name;
}

function start() {
  const nav = document.getElementById("nav");
  for (const [name, title] of Object.entries(TITLES)) {
    nav.appendChild(h("a", { href: `#${name}`, dataset: { view: name } }, title));
  }
  const input = document.getElementById("key-input");
  input.value = getKey();
  document.getElementById("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    render();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    input.value = "";
    setKey("");
    render();
  });
  window.addEventListener("hashchange", render);
  render();
}

start();
