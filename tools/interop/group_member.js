// Independent receiving side of a waevent group send: plays member devices whose keys
// the test hands in and reads the stanza as WhatsApp clients do.
//
// * Baileys 7's WABinary (token dictionary v3) decodes the whole stanza;
// * npm `libsignal@6.0.0` (SessionCipher with an in-memory store) decrypts the device's
//   pkmsg/msg from <participants>;
// * the plaintext is unpadded (last byte = padding length) and decoded with Baileys 7's
//   WAProto (WhatsApp's schema compiled by protobufjs); the SenderKeyDistributionMessage
//   inside is processed with Baileys' pure-JS lib/Signal/Group (GroupSessionBuilder) and
//   the skmsg decrypted with its GroupCipher.
//
// stdin: JSON {
//   "stanza": hex (the frame payload: flags byte 0x00 + the encoded <message> node),
//   "group": "…@g.us", "sender": "<libsignal address of the sending device: name.device>",
//   "devices": [{ "jid": "<device JID as in <to jid>>",
//                 "identity": {"pub": b64 (33 bytes), "priv": b64 (32)}, "registrationId": n,
//                 "signed": {"id": n, "pub": b64, "priv": b64},
//                 "preKey": {"id": n, "pub": b64, "priv": b64} }]
// }
// stdout: JSON { "node": <decoded stanza as {tag, attrs, content}>, "devices": [{
//   "pairwise": {"type", "plaintext": b64 (unpadded), "message": WAProto JSON} | {"error"},
//   "skmsg": {"plaintext": b64 (unpadded), "message": WAProto JSON} | {"error"} }] }
'use strict';

const libsignal = require('libsignal');

const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');

function fromBaileys(node) {
    const attrs = {};
    for (const k of Object.keys(node.attrs)) {
        attrs[k] = node.attrs[k];
    }
    let content = null;
    const c = node.content;
    if (c === undefined || c === null) {
        content = null;
    } else if (Array.isArray(c)) {
        content = c.map(fromBaileys);
    } else if (Buffer.isBuffer(c) || c instanceof Uint8Array) {
        content = Buffer.from(c).toString('hex');
    } else if (typeof c === 'string') {
        content = { string: c };
    } else {
        throw new Error('unexpected content type ' + typeof c);
    }
    return { tag: node.tag, attrs, content };
}

function unpad(buf) {
    if (buf.length === 0) throw new Error('empty plaintext');
    const n = buf[buf.length - 1];
    if (n === 0 || n > buf.length) throw new Error('bad padding length ' + n);
    for (let i = buf.length - n; i < buf.length; i++) {
        if (buf[i] !== n) throw new Error('inconsistent padding');
    }
    return buf.subarray(0, buf.length - n);
}

function plain(obj) {
    return JSON.parse(JSON.stringify(obj, (k, v) => {
        if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('base64');
        return v;
    }));
}

function keyPair(k) {
    return { pubKey: unb64(k.pub), privKey: unb64(k.priv) };
}

function address(s) {
    const dot = s.lastIndexOf('.');
    return new libsignal.ProtocolAddress(s.slice(0, dot), parseInt(s.slice(dot + 1), 10));
}

async function main() {
    const wab = await import('baileys/lib/WABinary/index.js');
    const group = await import('baileys/lib/Signal/Group/index.js');
    const proto = (await import('baileys/WAProto/index.js')).proto;
    for (const m of ['log', 'info', 'warn', 'error', 'debug']) console[m] = (...a) => process.stderr.write(a.map(String).join(' ') + '\n');

    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    const input = JSON.parse(Buffer.concat(chunks).toString('utf-8'));

    const stanza = await wab.decodeBinaryNode(Buffer.from(input.stanza, 'hex'));
    const out = { node: fromBaileys(stanza), devices: [] };
    const children = Array.isArray(stanza.content) ? stanza.content : [];
    const participants = children.find((c) => c.tag === 'participants');
    const skmsg = children.find((c) => c.tag === 'enc' && c.attrs.type === 'skmsg');
    const toMessage = (pt) => plain(proto.Message.toObject(proto.Message.decode(pt), { longs: String, bytes: Buffer, defaults: false }));

    for (const d of input.devices) {
        const store = {
            sessions: {},
            senderKeys: {},
            async getOurIdentity() { return keyPair(d.identity); },
            async getOurRegistrationId() { return d.registrationId; },
            async isTrustedIdentity() { return true; },
            async loadSession(addr) { return this.sessions[addr]; },
            async storeSession(addr, record) { this.sessions[addr] = record; },
            async loadPreKey(id) { return id === d.preKey.id ? keyPair(d.preKey) : undefined; },
            async removePreKey() {},
            async loadSignedPreKey(id) { return id === d.signed.id ? keyPair(d.signed) : undefined; },
        };
        const senderKeyStore = {
            async loadSenderKey(name) { return store.senderKeys[name.toString()] || new group.SenderKeyRecord(); },
            async storeSenderKey(name, record) { store.senderKeys[name.toString()] = record; },
        };
        const result = {};
        const to = participants && participants.content.find((t) => t.attrs.jid === d.jid);
        if (to) {
            try {
                const enc = to.content.find((c) => c.tag === 'enc');
                const cipher = new libsignal.SessionCipher(store, address(input.sender));
                const padded = enc.attrs.type === 'pkmsg'
                    ? await cipher.decryptPreKeyWhisperMessage(Buffer.from(enc.content))
                    : await cipher.decryptWhisperMessage(Buffer.from(enc.content));
                const pt = unpad(Buffer.from(padded));
                const msg = proto.Message.decode(pt);
                result.pairwise = { type: enc.attrs.type, plaintext: b64(pt), message: toMessage(pt) };
                const skdm = msg.senderKeyDistributionMessage;
                if (skdm && skdm.axolotlSenderKeyDistributionMessage) {
                    const name = new group.SenderKeyName(skdm.groupId, address(input.sender));
                    const dist = new group.SenderKeyDistributionMessage(null, null, null, null, Buffer.from(skdm.axolotlSenderKeyDistributionMessage));
                    await new group.GroupSessionBuilder(senderKeyStore).process(name, dist);
                }
            } catch (e) {
                result.pairwise = { error: String(e && e.message || e) };
            }
        }
        try {
            if (!skmsg) throw new Error('no skmsg in the stanza');
            const name = new group.SenderKeyName(input.group, address(input.sender));
            const padded = await new group.GroupCipher(senderKeyStore, name).decrypt(Buffer.from(skmsg.content));
            const pt = unpad(Buffer.from(padded));
            result.skmsg = { plaintext: b64(pt), message: toMessage(pt) };
        } catch (e) {
            result.skmsg = { error: String(e && e.message || e) };
        }
        out.devices.push(result);
    }
    process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
    process.stderr.write(String(e && e.stack || e) + '\n');
    process.exit(1);
});
