// An independent Signal peer for waevent's interop tests, driven over stdin/stdout
// with one JSON request per line and one JSON reply per line (binary fields base64).
//
// Pairwise: npm `libsignal@6.0.0` (the libsignal-node fork WhatsApp libraries use):
// SessionBuilder / SessionCipher with an in-memory store.
// Sender keys: Baileys 7's lib/Signal/Group (GroupSessionBuilder, GroupCipher), pure JS
// on top of libsignal's crypto and curve modules (no Rust bridge involved).
// Schema: Baileys 7's WAProto (WhatsApp's .proto compiled by protobufjs).
'use strict';

const readline = require('readline');
const libsignal = require('libsignal');

const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');

class Store {
    constructor() {
        this.identity = libsignal.keyhelper.generateIdentityKeyPair();
        this.registrationId = libsignal.keyhelper.generateRegistrationId();
        this.sessions = {};
        this.preKeys = {};
        this.signedPreKeys = {};
        this.senderKeys = {};
        this.removedPreKeys = [];
    }
    async getOurIdentity() { return this.identity; }
    async getOurRegistrationId() { return this.registrationId; }
    async isTrustedIdentity() { return true; }
    async loadSession(addr) { return this.sessions[addr]; }
    async storeSession(addr, record) {
        // Round-trip through libsignal's own serialization, as a persistent store would.
        this.sessions[addr] = libsignal.SessionRecord.deserialize(record.serialize());
    }
    async loadPreKey(id) { return this.preKeys[id]; }
    async removePreKey(id) { delete this.preKeys[id]; this.removedPreKeys.push(id); }
    async loadSignedPreKey(id) { return this.signedPreKeys[id]; }
}

let group; // Baileys' lib/Signal/Group, loaded on first use (ESM)
let WAProto;

async function groupModule() {
    if (!group) {
        group = await import('baileys/lib/Signal/Group/index.js');
    }
    return group;
}

async function waproto() {
    if (!WAProto) {
        WAProto = (await import('baileys/WAProto/index.js')).proto;
    }
    return WAProto;
}

const store = new Store();
const senderKeyStore = {
    async loadSenderKey(name) {
        const g = await groupModule();
        return store.senderKeys[name.toString()] || new g.SenderKeyRecord();
    },
    async storeSenderKey(name, record) { store.senderKeys[name.toString()] = record; },
};

function address(s) {
    const [id, dev] = s.split('.');
    return new libsignal.ProtocolAddress(id, parseInt(dev, 10));
}

async function senderKeyName(req) {
    const g = await groupModule();
    return new g.SenderKeyName(req.group, address(req.sender));
}

// Buffers inside protobufjs toJSON-like objects, as base64.
function plain(obj) {
    return JSON.parse(JSON.stringify(obj, (k, v) => {
        if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('base64');
        return v;
    }));
}

const handlers = {
    async identity() {
        return { identity: b64(store.identity.pubKey), registrationId: store.registrationId };
    },
    async prekeys(req) {
        const signed = libsignal.keyhelper.generateSignedPreKey(store.identity, req.signedId);
        store.signedPreKeys[req.signedId] = signed.keyPair;
        const preKeys = [];
        for (const id of req.preKeyIds) {
            const pk = libsignal.keyhelper.generatePreKey(id);
            store.preKeys[id] = pk.keyPair;
            preKeys.push({ id, pub: b64(pk.keyPair.pubKey) });
        }
        return {
            signed: { id: req.signedId, pub: b64(signed.keyPair.pubKey), sig: b64(signed.signature) },
            preKeys,
        };
    },
    async start(req) {
        const b = req.bundle;
        const device = {
            identityKey: unb64(b.identity),
            registrationId: b.registrationId,
            signedPreKey: { keyId: b.signed.id, publicKey: unb64(b.signed.pub), signature: unb64(b.signed.sig) },
        };
        if (b.preKey) device.preKey = { keyId: b.preKey.id, publicKey: unb64(b.preKey.pub) };
        await new libsignal.SessionBuilder(store, address(req.addr)).initOutgoing(device);
        return {};
    },
    async encrypt(req) {
        const out = await new libsignal.SessionCipher(store, address(req.addr)).encrypt(unb64(req.plaintext));
        return { type: out.type === 3 ? 'pkmsg' : 'msg', body: b64(Buffer.from(out.body, 'binary')) };
    },
    async decrypt(req) {
        const cipher = new libsignal.SessionCipher(store, address(req.addr));
        const body = unb64(req.body);
        const pt = req.type === 'pkmsg'
            ? await cipher.decryptPreKeyWhisperMessage(body)
            : await cipher.decryptWhisperMessage(body);
        return { plaintext: b64(pt) };
    },
    async removedPreKeys() {
        return { ids: store.removedPreKeys };
    },
    async skCreate(req) {
        const g = await groupModule();
        const skdm = await new g.GroupSessionBuilder(senderKeyStore).create(await senderKeyName(req));
        return { skdm: b64(skdm.serialize()) };
    },
    async skProcess(req) {
        const g = await groupModule();
        const msg = new g.SenderKeyDistributionMessage(null, null, null, null, unb64(req.skdm));
        await new g.GroupSessionBuilder(senderKeyStore).process(await senderKeyName(req), msg);
        return {};
    },
    async skEncrypt(req) {
        const g = await groupModule();
        const out = await new g.GroupCipher(senderKeyStore, await senderKeyName(req)).encrypt(unb64(req.plaintext));
        return { body: b64(out) };
    },
    async skDecrypt(req) {
        const g = await groupModule();
        const pt = await new g.GroupCipher(senderKeyStore, await senderKeyName(req)).decrypt(unb64(req.body));
        return { plaintext: b64(pt) };
    },
    // Decode a protobuf body with WhatsApp's schema and re-encode it.
    async protoDecode(req) {
        const proto = await waproto();
        const type = proto[req.type];
        const msg = type.decode(unb64(req.body));
        return { json: plain(type.toObject(msg, { longs: String, bytes: Buffer, defaults: false })), reencoded: b64(type.encode(msg).finish()) };
    },
    async protoEncode(req) {
        const proto = await waproto();
        const type = proto[req.type];
        const obj = JSON.parse(JSON.stringify(req.json), (k, v) => (typeof v === 'string' && k !== '' && req.bytesFields.includes(k) ? unb64(v) : v));
        return { body: b64(type.encode(type.fromObject(obj)).finish()) };
    },
    // libsignal's own curve module (curve25519-js).
    async curveVerify(req) {
        return { ok: libsignal.curve.verifySignature(unb64(req.pub), unb64(req.msg), unb64(req.sig)) };
    },
    async curveSign(req) {
        return { sig: b64(libsignal.curve.calculateSignature(unb64(req.priv), unb64(req.msg))) };
    },
};

// libsignal logs session changes with console.*; keep stdout for replies only.
for (const m of ['log', 'info', 'warn', 'error', 'debug']) console[m] = (...a) => process.stderr.write(a.map(String).join(' ') + '\n');

const rl = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
rl.on('line', (line) => {
    queue = queue.then(async () => {
        let reply;
        try {
            const req = JSON.parse(line);
            const h = handlers[req.op];
            if (!h) throw new Error('unknown op ' + req.op);
            reply = { ok: true, ...(await h(req)) };
        } catch (e) {
            reply = { ok: false, error: String(e && e.message || e) };
        }
        process.stdout.write(JSON.stringify(reply) + '\n');
    });
});
