// The console's one road to the server: the HTTP API every caller uses (the Connect protocol's
// JSON shape, POST /neardex.v1.Neardex/<Method>), with the key typed into the page sent as any
// caller sends it (Authorization: Bearer KEY). The key lives in this tab's sessionStorage only.

const SERVICE = "/neardex.v1.Neardex/";
const KEY_ITEM = "neardex.key";
// HTTP statuses connectrpc answers for codes, for a refusal that came without a Connect body.
const STATUS_CODES = { 400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied",
  404: "not_found", 408: "deadline_exceeded", 409: "already_exists", 429: "resource_exhausted",
  501: "unimplemented", 503: "unavailable" };

export class ApiError extends Error {
  constructor(method, code, message, status) {
    super(message);
    this.method = method;
    this.code = code;
    this.status = status;
  }

  // One line a person can act on: what was called, what the server said, and what to do about
  // the refusals a key causes.
  get readable() {
    const hints = {
      unauthenticated: "enter a valid API key above",
      permission_denied: "this key's role or collections do not allow it",
      unavailable: "the server cannot be reached",
    };
    const hint = hints[this.code] ? ` (${hints[this.code]})` : "";
    return `${this.method}: ${this.code.replace(/_/g, " ")}: ${this.message}${hint}`;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

// Calls `method` with `request` (protobuf's JSON mapping: lowerCamelCase fields, int64 as strings)
// and resolves to the response object, or rejects with an ApiError.
export async function call(method, request = {}, options = {}) {
  const response = await post(method, "application/json", JSON.stringify(request), options);
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(method, "internal", `not JSON: ${text.slice(0, 200)}`, response.status);
  }
}

// The same call in the API's binary form (protobuf, Content-Type application/proto): `body` is
// the encoded request; resolves to the response's bytes (see proto.js).
export async function callBinary(method, body, options = {}) {
  const response = await post(method, "application/proto", body, options);
  return response.arrayBuffer();
}

async function post(method, contentType, body, { timeoutMs = 60000 } = {}) {
  const headers = { "content-type": contentType, "connect-protocol-version": "1",
    "connect-timeout-ms": String(timeoutMs) };
  const key = getKey();
  if (key) headers.authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(SERVICE + method, { method: "POST", headers, body });
  } catch (err) {
    throw new ApiError(method, "unavailable", String(err.message || err), 0);
  }
  if (response.ok) return response;
  // A Connect error is JSON whatever the call's own form.
  const text = await response.text();
  let error = {};
  try {
    error = text ? JSON.parse(text) : {};
  } catch {
    error = { message: text.slice(0, 300) };
  }
  const code = error.code || STATUS_CODES[response.status] || `http ${response.status}`;
  throw new ApiError(method, code, error.message || response.statusText, response.status);
}

// Whether an admin call would be allowed for `name` ("" for none in particular), found by asking
// it: UpdateCollection with nothing to change is refused by the gate (permission_denied) when the
// key may not administer that collection, and by the servicer (invalid_argument) when it may;
// nothing changes either way. CreateCollection with an empty name asks the same for creating.
export async function mayAdminister(name) {
  try {
    if (name) await call("UpdateCollection", { name });
    else await call("CreateCollection", { name: "" });
    return true;
  } catch (err) {
    return !(err instanceof ApiError) || !["permission_denied", "unauthenticated"].includes(err.code);
  }
}

export const MODES = { dense: "SEARCH_MODE_DENSE", lexical: "SEARCH_MODE_LEXICAL", hybrid: "SEARCH_MODE_HYBRID" };

export function modeName(mode) {
  return (mode || "").replace("SEARCH_MODE_", "").toLowerCase() || "default";
}
