// Building the page: every piece of data goes in as a text node or an attribute value, never as
// markup, so nothing a document or an error message holds can become HTML or script.

import { ApiError } from "./api.js";

// h("div", {class: "x", onclick: f}, "text", child, [more]) -> an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "value") el.value = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A refusal or failure as a readable line in place of what was asked for.
export function errorBox(err) {
  const text = err instanceof ApiError ? err.readable : `error: ${err && err.message ? err.message : err}`;
  return h("div", { class: "error", role: "alert", dataset: { code: err && err.code ? err.code : "" } }, text);
}

// Runs `work` with `target` showing progress, then what it returns, or the error.
export async function show(target, work) {
  clear(target, h("div", { class: "muted" }, "working…"));
  try {
    clear(target, await work());
  } catch (err) {
    clear(target, errorBox(err));
    if (!(err instanceof ApiError)) console.error(err);
  }
}

// The server's offsets count characters as Python does (code points); JavaScript strings count
// UTF-16 units, so text is cut through its code points.
export function codePoints(text) {
  return Array.from(text || "");
}

export function cut(points, start, end) {
  return points.slice(start, end).join("");
}

// `text` with the spans [{start, end, cls, title}] (code-point offsets) wrapped in <mark>
// elements. Spans may overlap (a document's chunks share their overlap tokens): where they do,
// the one listed first is shown.
export function marked(text, spans) {
  const points = codePoints(text);
  const cuts = [...new Set([0, points.length, ...spans.flatMap((s) => [s.start, s.end])])]
    .filter((c) => c >= 0 && c <= points.length).sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [from, to] = [cuts[i], cuts[i + 1]];
    const span = spans.find((s) => s.start <= from && to <= s.end);
    const piece = cut(points, from, to);
    const last = out[out.length - 1];
    if (span && last instanceof Element && last.spanned === span) last.append(piece);
    else if (span) {
      const mark = h("mark", { class: span.cls || "", title: span.title }, piece);
      mark.spanned = span;
      out.push(mark);
    } else out.push(piece);
  }
  return out;
}

export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

export function number(value, digits = 3) {
  return Number(value || 0).toFixed(digits);
}

// A select of the collections, named `name`, with `selected` chosen.
export function collectionSelect(collections, selected, onchange) {
  const names = collections.map((c) => c.name);
  return h("select", { name: "collection", onchange: (e) => onchange && onchange(e.target.value) },
    names.map((n) => h("option", { value: n, selected: n === selected }, n)));
}

// A scrolling box of text brought to its first `selector` match once it is on the page.
export function scrolledTo(box, selector) {
  requestAnimationFrame(() => {
    const target = box.querySelector(selector);
    if (target) box.scrollTop = target.offsetTop - box.offsetTop - 24;
  });
  return box;
}
