// Decodes and encodes WhatsApp E2E `Message`s with Baileys 7's WAProto (WhatsApp's
// schema compiled by protobufjs), as an independent check of waevent's protobufs.
//
// stdin:  {"decode": [{"name", "b64"}], "encode": [{"name", "object"}]}
// stdout: {"decoded": {name: {"object", "reencoded"}},
//          "encoded": {name: {"b64", "understood"}}}
//
// `object` uses protobufjs' JSON form: WAProto's camelCase field names, 64-bit
// integers as strings, enums by name, bytes as base64, unset fields absent.
'use strict'
const { proto } = require('baileys/WAProto')

const TO_OBJECT = { longs: String, enums: String, bytes: String, defaults: false }

function readStdin() {
	return require('fs').readFileSync(0, 'utf8')
}

function main() {
	const input = JSON.parse(readStdin())
	const out = { decoded: {}, encoded: {} }
	for (const { name, b64 } of input.decode || []) {
		const bytes = Buffer.from(b64, 'base64')
		const msg = proto.Message.decode(bytes)
		const object = proto.Message.toObject(msg, TO_OBJECT)
		const reencoded = Buffer.from(proto.Message.encode(msg).finish()).toString('base64')
		out.decoded[name] = { object, reencoded }
	}
	for (const { name, object } of input.encode || []) {
		const msg = proto.Message.fromObject(object)
		const bytes = proto.Message.encode(msg).finish()
		// fromObject ignores names it does not know: hand back what it understood so
		// the caller can check nothing was dropped.
		const understood = proto.Message.toObject(proto.Message.decode(bytes), TO_OBJECT)
		out.encoded[name] = { b64: Buffer.from(bytes).toString('base64'), understood }
	}
	process.stdout.write(JSON.stringify(out))
}

main()
