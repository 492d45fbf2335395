// WhatsApp's message-secret cryptography for event RSVPs and edits, written with
// node's own crypto (HKDF-SHA256, AES-256-GCM) and Baileys 7's WAProto for the
// plaintext protobufs, as an independent check of waevent's implementation.
//
//   key = HKDF-SHA256(ikm = secret, salt = none, info = id || creator || sender || use case, 32)
//   aad = id || 0x00 || sender  ("Event Response"),  empty  ("Event Edit")
//   encPayload = ciphertext || 16-byte tag, encIV = 12 random bytes
//
// stdin: {"decrypt": [{"name", "use_case", "secret", "message_id", "creator",
//                      "sender", "iv", "payload"}],          (base64 for bytes)
//         "encrypt": [{"name", "use_case", "secret", "message_id", "creator",
//                      "sender", "object"}]}   (object: EventResponseMessage or Message)
// stdout: {"decrypted": {name: object}, "encrypted": {name: {"iv", "payload"}}}
'use strict'
const crypto = require('crypto')
const { proto } = require('baileys/WAProto')

const TO_OBJECT = { longs: String, enums: String, bytes: String, defaults: false }

function useCaseKey(v) {
	const info = Buffer.concat([
		Buffer.from(v.message_id),
		Buffer.from(v.creator),
		Buffer.from(v.sender),
		Buffer.from(v.use_case),
	])
	const secret = Buffer.from(v.secret, 'base64')
	return Buffer.from(crypto.hkdfSync('sha256', secret, Buffer.alloc(0), info, 32))
}

function aad(v) {
	if (v.use_case === 'Event Response') {
		return Buffer.concat([Buffer.from(v.message_id), Buffer.from([0]), Buffer.from(v.sender)])
	}
	if (v.use_case === 'Event Edit') {
		return Buffer.alloc(0)
	}
	throw new Error(`unknown use case ${v.use_case}`)
}

function plaintextType(v) {
	return v.use_case === 'Event Response' ? proto.Message.EventResponseMessage : proto.Message
}

function main() {
	const input = JSON.parse(require('fs').readFileSync(0, 'utf8'))
	const out = { decrypted: {}, encrypted: {} }
	for (const v of input.decrypt || []) {
		const payload = Buffer.from(v.payload, 'base64')
		const iv = Buffer.from(v.iv, 'base64')
		const decipher = crypto.createDecipheriv('aes-256-gcm', useCaseKey(v), iv)
		decipher.setAAD(aad(v))
		decipher.setAuthTag(payload.subarray(payload.length - 16))
		const plain = Buffer.concat([decipher.update(payload.subarray(0, payload.length - 16)), decipher.final()])
		const T = plaintextType(v)
		out.decrypted[v.name] = T.toObject(T.decode(plain), TO_OBJECT)
	}
	for (const v of input.encrypt || []) {
		const T = plaintextType(v)
		const plain = Buffer.from(T.encode(T.fromObject(v.object)).finish())
		const iv = crypto.randomBytes(12)
		const cipher = crypto.createCipheriv('aes-256-gcm', useCaseKey(v), iv)
		cipher.setAAD(aad(v))
		const ct = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()])
		out.encrypted[v.name] = { iv: iv.toString('base64'), payload: ct.toString('base64') }
	}
	process.stdout.write(JSON.stringify(out))
}

main()
