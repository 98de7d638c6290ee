// The protobuf wire format of the few messages the map reads (Scroll and Get), for the API's
// binary form (Content-Type application/proto, the same endpoints): a Scroll page of 500 documents
// with their vectors took the server 5.1 s to write as JSON and 0.13 s as packed floats
// (bench/console_map.py). Field numbers are neardex.proto's; unknown fields are skipped.

const utf8 = new TextEncoder();
const text = new TextDecoder();
// Protobuf's floats are little-endian; a copy of the bytes is then the array itself.
const LITTLE_ENDIAN = new Uint8Array(Float32Array.of(1).buffer)[3] === 0x3f;

// -- writing: ScrollRequest, GetRequest -------------------------------------------------------

function varint(out, value) {
  let v = value >>> 0;
  while (v > 127) {
    out.push((v & 127) | 128);
    v >>>= 7;
  }
  out.push(v);
}

function tag(out, field, wire) {
  varint(out, (field << 3) | wire);
}

function bytes(out, field, data) {
  tag(out, field, 2);
  varint(out, data.length);
  for (const b of data) out.push(b);
}

// Fields {no_text = 1; no_metadata = 2; metadata_keys = 3; vectors = 4}.
function fieldsMessage(fields) {
  const f = [];
  if (fields.noText) { tag(f, 1, 0); varint(f, 1); }
  if (fields.noMetadata) { tag(f, 2, 0); varint(f, 1); }
  for (const key of fields.metadataKeys || []) bytes(f, 3, utf8.encode(key));
  if (fields.vectors) { tag(f, 4, 0); varint(f, 1); }
  return f;
}

// ScrollRequest {collection = 1; limit = 3; cursor = 4; fields = 5}.
export function scrollRequest({ collection, limit, cursor, fields }) {
  const out = [];
  bytes(out, 1, utf8.encode(collection));
  if (limit) { tag(out, 3, 0); varint(out, limit); }
  if (cursor) bytes(out, 4, utf8.encode(cursor));
  bytes(out, 5, fieldsMessage(fields));
  return new Uint8Array(out);
}

// GetRequest {collection = 1; repeated ids = 2; fields = 3}.
export function getRequest({ collection, ids, fields }) {
  const out = [];
  bytes(out, 1, utf8.encode(collection));
  for (const id of ids) bytes(out, 2, utf8.encode(id));
  bytes(out, 3, fieldsMessage(fields));
  return new Uint8Array(out);
}

// -- reading: ScrollResponse, GetResponse -----------------------------------------------------

class Reader {
  constructor(buffer, start = 0, end = buffer.byteLength) {
    this.view = new DataView(buffer);
    this.buffer = buffer;
    this.at = start;
    this.end = end;
  }

  varint() {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.view.getUint8(this.at++);
      result += (b & 127) * 2 ** shift;
      if (b < 128) return result;
      shift += 7;
    }
  }

  // Each field as [number, wire type, reader of its value].
  *fields() {
    while (this.at < this.end) {
      const key = this.varint();
      const [field, wire] = [Math.floor(key / 8), key & 7];
      if (wire === 0) yield [field, wire, this.varint()];
      else if (wire === 1) { yield [field, wire, this.view.getFloat64(this.at, true)]; this.at += 8; }
      else if (wire === 5) { yield [field, wire, this.view.getFloat32(this.at, true)]; this.at += 4; }
      else if (wire === 2) {
        const length = this.varint();
        const start = this.at;
        this.at += length;
        yield [field, wire, new Reader(this.buffer, start, start + length)];
      } else {
        throw new Error(`protobuf: wire type ${wire} not supported`);
      }
    }
  }

  string() {
    return text.decode(new Uint8Array(this.buffer, this.at, this.end - this.at));
  }

  floats() {
    if (LITTLE_ENDIAN) return new Float32Array(this.buffer.slice(this.at, this.end));
    const out = new Float32Array((this.end - this.at) / 4);
    for (let i = 0; i < out.length; i++) out[i] = this.view.getFloat32(this.at + 4 * i, true);
    return out;
  }
}

// Vector {repeated float values = 1 [packed]}: a packed run, or floats one by one.
function vector(reader) {
  const parts = [];
  for (const [field, wire, value] of reader.fields()) {
    if (field === 1) parts.push(wire === 2 ? value.floats() : Float32Array.of(value));
  }
  return parts.length === 1 ? parts[0] : Float32Array.from(parts.flatMap((p) => [...p]));
}

// google.protobuf.Value and Struct, as the JSON values they stand for.
function value(reader) {
  let out = null;
  for (const [field, , v] of reader.fields()) {
    if (field === 2) out = v;
    else if (field === 3) out = v.string();
    else if (field === 4) out = Boolean(v);
    else if (field === 5) out = struct(v);
    else if (field === 6) out = [...v.fields()].filter(([f]) => f === 1).map(([, , item]) => value(item));
  }
  return out;
}

function struct(reader) {
  const out = {};
  for (const [field, , entry] of reader.fields()) {
    if (field !== 1) continue;
    let key = "";
    let item = null;
    for (const [f, , v] of entry.fields()) {
      if (f === 1) key = v.string();
      else if (f === 2) item = value(v);
    }
    out[key] = item;
  }
  return out;
}

// Document {id = 1; metadata = 4; vector = 5; chunk_vectors = 6}, with the fields the JSON
// mapping would name.
function documentOf(reader) {
  const doc = { id: "", metadata: {}, chunkVectors: [] };
  for (const [f, , d] of reader.fields()) {
    if (f === 1) doc.id = d.string();
    else if (f === 4) doc.metadata = struct(d);
    else if (f === 5) doc.vector = vector(d);
    else if (f === 6) doc.chunkVectors.push(vector(d));
  }
  return doc;
}

// ScrollResponse {documents = 1; next_cursor = 2}.
export function scrollResponse(buffer) {
  const documents = [];
  let nextCursor = "";
  for (const [field, , v] of new Reader(buffer).fields()) {
    if (field === 1) documents.push(documentOf(v));
    else if (field === 2) nextCursor = v.string();
  }
  return { documents, nextCursor };
}

// GetResponse {documents = 1; missing = 2}.
export function getResponse(buffer) {
  const documents = [];
  const missing = [];
  for (const [field, , v] of new Reader(buffer).fields()) {
    if (field === 1) documents.push(documentOf(v));
    else if (field === 2) missing.push(v.string());
  }
  return { documents, missing };
}
