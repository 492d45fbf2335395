// Decodes and encodes the handshake/login protobufs with WhatsApp's schema as shipped by
// Baileys 7 (WAProto: the static protobufjs module for encode/decode, WAProto.proto loaded
// with protobufjs for field numbers). Used by tests/interop_noise.rs.
//
// stdin: JSON array of requests, stdout: JSON array of results, one per request:
//   {"op":"schema","type":"ClientPayload"}  -> every field/enum reachable from the type
//   {"op":"decode","type":T,"hex":H}        -> message tree keyed by field number
//   {"op":"encode","type":T,"tree":TREE}    -> {"hex": bytes encoded by WAProto}
// Tree values: bool/number as JSON, 64-bit integers as decimal strings, bytes as hex,
// enums as numbers, messages as nested trees, repeated fields as arrays.
'use strict'
const path = require('path')
const protobuf = require('protobufjs')
const Long = require('long')
const { proto } = require('baileys/WAProto')

const root = protobuf.loadSync(
  path.join(path.dirname(require.resolve('baileys/package.json')), 'WAProto', 'WAProto.proto')
)

const LONGS = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64'])

function staticType (name) {
  let t = proto
  for (const part of name.split('.')) {
    t = t && t[part]
    if (!t) throw new Error('no static WAProto type ' + name)
  }
  return t
}

function scalarOut (field, v) {
  if (field.resolvedType instanceof protobuf.Enum) return Number(v)
  if (field.type === 'bytes') return Buffer.from(v).toString('hex')
  if (LONGS.has(field.type)) {
    if (typeof v === 'object' && v !== null && 'low' in v) {
      return Long.fromBits(v.low, v.high, field.type.startsWith('u') || field.type === 'fixed64').toString()
    }
    return String(v)
  }
  return v
}

function toTree (type, msg) {
  const out = {}
  for (const field of type.fieldsArray) {
    if (!Object.prototype.hasOwnProperty.call(msg, field.name)) continue
    const v = msg[field.name]
    if (v === null || v === undefined) continue
    const conv = (x) => (field.resolvedType instanceof protobuf.Type ? toTree(field.resolvedType, x) : scalarOut(field, x))
    if (field.repeated) {
      if (v.length === 0) continue
      out[String(field.id)] = Array.from(v, conv)
    } else {
      out[String(field.id)] = conv(v)
    }
  }
  return out
}

function scalarIn (field, v) {
  if (field.type === 'bytes') return Buffer.from(v, 'hex')
  if (LONGS.has(field.type)) return Long.fromString(String(v), field.type.startsWith('u') || field.type === 'fixed64')
  return v
}

function fromTree (type, tree) {
  const obj = {}
  for (const [id, v] of Object.entries(tree)) {
    const field = type.fieldsById[Number(id)]
    if (!field) throw new Error(`${type.fullName} has no field ${id}`)
    const conv = (x) => (field.resolvedType instanceof protobuf.Type ? fromTree(field.resolvedType, x) : scalarIn(field, x))
    obj[field.name] = field.repeated ? v.map(conv) : conv(v)
  }
  return obj
}

function schema (type, seen = {}) {
  if (seen[type.fullName]) return seen
  const fields = {}
  seen[type.fullName] = { fields }
  for (const field of type.fieldsArray) {
    field.resolve()
    let kind = field.type
    if (field.resolvedType instanceof protobuf.Enum) {
      kind = 'enum ' + field.resolvedType.fullName
      seen[field.resolvedType.fullName] = { values: field.resolvedType.values }
    } else if (field.resolvedType instanceof protobuf.Type) {
      kind = 'message ' + field.resolvedType.fullName
      schema(field.resolvedType, seen)
    }
    fields[String(field.id)] = { name: field.name, type: kind, repeated: field.repeated }
  }
  // Enums and messages declared inside the type, even if no field uses them.
  for (const nested of type.nestedArray || []) {
    if (nested instanceof protobuf.Enum) seen[nested.fullName] = { values: nested.values }
    else if (nested instanceof protobuf.Type) schema(nested, seen)
  }
  return seen
}

function handle (req) {
  const type = root.lookupType('proto.' + req.type)
  type.resolveAll()
  switch (req.op) {
    case 'schema':
      return schema(type)
    case 'decode': {
      const msg = staticType(req.type).decode(Buffer.from(req.hex, 'hex'))
      return toTree(type, msg)
    }
    case 'encode': {
      const S = staticType(req.type)
      const msg = S.fromObject(fromTree(type, req.tree))
      return { hex: Buffer.from(S.encode(msg).finish()).toString('hex') }
    }
    default:
      throw new Error('unknown op ' + req.op)
  }
}

let input = ''
process.stdin.on('data', (d) => { input += d })
process.stdin.on('end', () => {
  const requests = JSON.parse(input)
  process.stdout.write(JSON.stringify(requests.map(handle)))
})
