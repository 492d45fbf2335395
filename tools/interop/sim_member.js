// Independent checks of what the simulator's group members receive and decrypt
// (tests/sim_groups.rs). One JSON request on stdin, one JSON reply on stdout; binary
// fields are base64.
//
// Pairwise: npm `libsignal@6.0.0` (SessionCipher / SessionBuilder, in-memory store).
// Sender keys: Baileys 7's lib/Signal/Group (GroupSessionBuilder, GroupCipher).
// Schema: Baileys 7's WAProto.
//
// op "open": play a member device with the private keys the test hands over: decrypt a
//   captured pkmsg (X3DH as Bob), process the SKDM it carries, decrypt the captured
//   skmsg, and return both Message protobufs decoded with WAProto.
// op "send": play a sender: build a session from the member device's bundle, create a
//   sender key, and return a pkmsg carrying the SKDM plus an skmsg carrying the given
//   Message (given as WAProto JSON), with the sender's identity so the test can register
//   the sending device.
'use strict';

const libsignal = require('libsignal');

const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');
const withType = (raw32) => Buffer.concat([Buffer.from([5]), unb64(raw32)]);

for (const m of ['log', 'info', 'warn', 'error', 'debug']) console[m] = (...a) => process.stderr.write(a.map(String).join(' ') + '\n');

class Store {
    constructor(identity, registrationId) {
        this.identity = identity;
        this.registrationId = registrationId;
        this.sessions = {};
        this.preKeys = {};
        this.signedPreKeys = {};
        this.senderKeys = {};
    }
    async getOurIdentity() { return this.identity; }
    async getOurRegistrationId() { return this.registrationId; }
    async isTrustedIdentity() { return true; }
    async loadSession(addr) { return this.sessions[addr]; }
    async storeSession(addr, record) { this.sessions[addr] = record; }
    async loadPreKey(id) { return this.preKeys[id]; }
    async removePreKey(id) { delete this.preKeys[id]; }
    async loadSignedPreKey(id) { return this.signedPreKeys[id]; }
}

function unpad(buf) {
    const n = buf[buf.length - 1];
    if (!buf.length || n === 0 || n > buf.length) throw new Error('bad padding');
    return buf.subarray(0, buf.length - n);
}

function pad(buf) {
    const n = 1 + (require('crypto').randomBytes(1)[0] & 0x0f);
    return Buffer.concat([buf, Buffer.alloc(n, n)]);
}

function plain(obj) {
    return JSON.parse(JSON.stringify(obj, (k, v) => {
        if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('base64');
        return v;
    }));
}

async function main() {
    const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    const g = await import('baileys/lib/Signal/Group/index.js');
    const proto = (await import('baileys/WAProto/index.js')).proto;
    const toJson = (m) => plain(proto.Message.toObject(m, { longs: String, bytes: Buffer, defaults: false }));

    if (input.op === 'open') {
        const k = input.keys;
        const store = new Store({ pubKey: withType(k.identityPub), privKey: unb64(k.identityPriv) }, k.registrationId);
        store.signedPreKeys[k.signed.id] = { pubKey: withType(k.signed.pub), privKey: unb64(k.signed.priv) };
        for (const p of k.preKeys) store.preKeys[p.id] = { pubKey: withType(p.pub), privKey: unb64(p.priv) };
        const sender = new libsignal.ProtocolAddress(input.sender.name, input.sender.device);
        const cipher = new libsignal.SessionCipher(store, sender);
        const pairwise = unpad(await cipher.decryptPreKeyWhisperMessage(unb64(input.pkmsg)));
        const first = proto.Message.decode(pairwise);
        const skdm = first.senderKeyDistributionMessage;
        if (!skdm || skdm.groupId !== input.group) throw new Error('pkmsg carries no SKDM for ' + input.group);
        const senderKeyStore = {
            async loadSenderKey(name) { return store.senderKeys[name.toString()] || new g.SenderKeyRecord(); },
            async storeSenderKey(name, record) { store.senderKeys[name.toString()] = record; },
        };
        const name = new g.SenderKeyName(input.group, sender);
        const dist = new g.SenderKeyDistributionMessage(null, null, null, null, skdm.axolotlSenderKeyDistributionMessage);
        await new g.GroupSessionBuilder(senderKeyStore).process(name, dist);
        const content = unpad(await new g.GroupCipher(senderKeyStore, name).decrypt(unb64(input.skmsg)));
        const message = proto.Message.decode(content);
        process.stdout.write(JSON.stringify({ pairwise: toJson(first), content: toJson(message) }));
        return;
    }
    if (input.op === 'send') {
        const identity = libsignal.keyhelper.generateIdentityKeyPair();
        const registrationId = libsignal.keyhelper.generateRegistrationId();
        const store = new Store(identity, registrationId);
        const b = input.bundle;
        const device = {
            identityKey: withType(b.identity),
            registrationId: b.registrationId,
            signedPreKey: { keyId: b.signed.id, publicKey: withType(b.signed.pub), signature: unb64(b.signed.sig) },
        };
        if (b.preKey) device.preKey = { keyId: b.preKey.id, publicKey: withType(b.preKey.pub) };
        const target = new libsignal.ProtocolAddress(input.target.name, input.target.device);
        await new libsignal.SessionBuilder(store, target).initOutgoing(device);
        const senderKeyStore = {
            async loadSenderKey(name) { return store.senderKeys[name.toString()] || new g.SenderKeyRecord(); },
            async storeSenderKey(name, record) { store.senderKeys[name.toString()] = record; },
        };
        const name = new g.SenderKeyName(input.group, new libsignal.ProtocolAddress(input.sender.name, input.sender.device));
        const skdm = await new g.GroupSessionBuilder(senderKeyStore).create(name);
        const skdmMessage = proto.Message.encode(proto.Message.fromObject({
            senderKeyDistributionMessage: { groupId: input.group, axolotlSenderKeyDistributionMessage: skdm.serialize() },
        })).finish();
        const pk = await new libsignal.SessionCipher(store, target).encrypt(pad(Buffer.from(skdmMessage)));
        if (pk.type !== 3) throw new Error('first message is not a pkmsg');
        const obj = JSON.parse(JSON.stringify(input.message), (k, v) => (typeof v === 'string' && input.bytesFields.includes(k) ? unb64(v) : v));
        const content = proto.Message.encode(proto.Message.fromObject(obj)).finish();
        const sk = await new g.GroupCipher(senderKeyStore, name).encrypt(pad(Buffer.from(content)));
        process.stdout.write(JSON.stringify({
            identityPub: b64(identity.pubKey.subarray(1)),
            identityPriv: b64(identity.privKey),
            registrationId,
            pkmsg: b64(Buffer.from(pk.body, 'binary')),
            skmsg: b64(sk),
        }));
        return;
    }
    throw new Error('unknown op ' + input.op);
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
