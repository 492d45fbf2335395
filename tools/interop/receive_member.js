// An independent group member for waevent's receive tests: npm `libsignal@6.0.0`
// (pairwise sessions), Baileys 7's lib/Signal/Group (sender keys), Baileys' WAProto
// (the Message schema) and lib/WABinary (the stanza encoding). One JSON request on
// stdin, one JSON reply on stdout; binary fields base64, stanzas as hex frame payloads.
//
// {"op": "send", "local": bundle, "group", "sender", "senderPn", "id", "t", "text",
//  "secret"}
//   Starts a session from waevent's bundle, makes a sender key for the group and
//   returns the <message> the server would deliver: <enc type="pkmsg"> with the SKDM,
//   <enc type="skmsg"> with {conversation: text, messageContextInfo.messageSecret}.
//   Reply: {stanza, identity: {pub, priv}, registrationId}.
// {"op": "resend", "receipt": hex, "identity", "registrationId", "group", "sender",
//  "id", "t", "text", "secret"}
//   Decodes waevent's retry receipt, starts a new session from its <keys> (as a sender
//   answering a retry does) and re-sends the content pairwise with a fresh SKDM inside.
//   Reply: {receipt: decoded node, stanza}.
//
// A bundle is {identity, registrationId, signed: {id, pub, sig}, preKey: {id, pub}} with
// keys as 32 raw bytes, as WhatsApp's XML nodes carry them.
'use strict';

const libsignal = require('libsignal');

const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');
// libsignal wants 33-byte keys (0x05 || key), as Baileys builds them from XML nodes.
const djb = (raw) => Buffer.concat([Buffer.from([5]), Buffer.from(raw)]);

class Store {
    constructor(identity, registrationId) {
        this.identity = identity || libsignal.keyhelper.generateIdentityKeyPair();
        this.registrationId = registrationId || libsignal.keyhelper.generateRegistrationId();
        this.sessions = {};
        this.senderKeys = {};
    }
    async getOurIdentity() { return this.identity; }
    async getOurRegistrationId() { return this.registrationId; }
    async isTrustedIdentity() { return true; }
    async loadSession(addr) { return this.sessions[addr]; }
    async storeSession(addr, record) { this.sessions[addr] = record; }
}

function pad(bytes) {
    const n = 1 + Math.floor(Math.random() * 16);
    return Buffer.concat([Buffer.from(bytes), Buffer.alloc(n, n)]);
}

function child(node, tag) {
    const c = Array.isArray(node.content) ? node.content.find((n) => n.tag === tag) : undefined;
    if (!c) throw new Error(`no <${tag}> in <${node.tag}>`);
    return c;
}

function plainNode(node) {
    const content = Array.isArray(node.content)
        ? node.content.map(plainNode)
        : node.content === undefined || node.content === null
            ? null
            : Buffer.from(node.content).toString('hex');
    return { tag: node.tag, attrs: { ...node.attrs }, content };
}

async function main() {
    const wab = await import('baileys/lib/WABinary/index.js');
    const group = await import('baileys/lib/Signal/Group/index.js');
    const proto = (await import('baileys/WAProto/index.js')).proto;
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    const req = JSON.parse(Buffer.concat(chunks).toString('utf-8'));

    const identity = req.identity
        ? { pubKey: unb64(req.identity.pub), privKey: unb64(req.identity.priv) }
        : undefined;
    const store = new Store(identity, req.registrationId);
    const remote = new libsignal.ProtocolAddress('waevent', 3);
    const senderKeys = {
        async loadSenderKey(name) { return store.senderKeys[name.toString()] || new group.SenderKeyRecord(); },
        async storeSenderKey(name, record) { store.senderKeys[name.toString()] = record; },
    };
    const [senderUser, senderDevice] = req.sender.split('@')[0].split(':');
    const skName = new group.SenderKeyName(req.group, new libsignal.ProtocolAddress(senderUser, parseInt(senderDevice || '0', 10)));
    const content = {
        conversation: req.text,
        messageContextInfo: { messageSecret: unb64(req.secret) },
    };
    const skdmMessage = async () => {
        const skdm = await new group.GroupSessionBuilder(senderKeys).create(skName);
        return { groupId: req.group, axolotlSenderKeyDistributionMessage: skdm.serialize() };
    };
    const pairwise = async (message) => {
        const bytes = proto.Message.encode(proto.Message.fromObject(message)).finish();
        const out = await new libsignal.SessionCipher(store, remote).encrypt(pad(bytes));
        return { type: out.type === 3 ? 'pkmsg' : 'msg', body: Buffer.from(out.body, 'binary') };
    };
    const stanza = (attrs, encs) => wab.encodeBinaryNode({
        tag: 'message',
        attrs,
        content: encs.map((e) => ({ tag: 'enc', attrs: { v: '2', type: e.type, ...(e.attrs || {}) }, content: e.body })),
    }).toString('hex');

    let reply;
    if (req.op === 'send') {
        const b = req.local;
        await new libsignal.SessionBuilder(store, remote).initOutgoing({
            identityKey: djb(unb64(b.identity)),
            registrationId: b.registrationId,
            signedPreKey: { keyId: b.signed.id, publicKey: djb(unb64(b.signed.pub)), signature: unb64(b.signed.sig) },
            preKey: { keyId: b.preKey.id, publicKey: djb(unb64(b.preKey.pub)) },
        });
        const first = await pairwise({ senderKeyDistributionMessage: await skdmMessage() });
        const contentBytes = proto.Message.encode(proto.Message.fromObject(content)).finish();
        const sk = await new group.GroupCipher(senderKeys, skName).encrypt(pad(contentBytes));
        reply = {
            stanza: stanza(
                { from: req.group, participant: req.sender, participant_pn: req.senderPn, id: req.id, t: req.t, type: 'text', notify: 'Baileys member', addressing_mode: 'lid' },
                [first, { type: 'skmsg', body: Buffer.from(sk) }],
            ),
            identity: { pub: b64(store.identity.pubKey), priv: b64(store.identity.privKey) },
            registrationId: store.registrationId,
        };
    } else if (req.op === 'resend') {
        const receipt = await wab.decodeBinaryNode(Buffer.from(req.receipt, 'hex'));
        if (receipt.tag !== 'receipt' || receipt.attrs.type !== 'retry') throw new Error('not a retry receipt');
        const keys = child(receipt, 'keys');
        const bytes = (n, tag) => Buffer.from(child(n, tag).content);
        const id3 = (buf) => buf.readUIntBE(0, 3);
        const key = child(keys, 'key');
        const skey = child(keys, 'skey');
        if (!bytes(keys, 'type').equals(Buffer.from([5]))) throw new Error('key type is not 5');
        await new libsignal.SessionBuilder(store, remote).initOutgoing({
            identityKey: djb(bytes(keys, 'identity')),
            registrationId: bytes(receipt, 'registration').readUInt32BE(0),
            signedPreKey: { keyId: id3(bytes(skey, 'id')), publicKey: djb(bytes(skey, 'value')), signature: bytes(skey, 'signature') },
            preKey: { keyId: id3(bytes(key, 'id')), publicKey: djb(bytes(key, 'value')) },
        });
        const retry = child(receipt, 'retry');
        const resent = await pairwise({ ...content, senderKeyDistributionMessage: await skdmMessage() });
        reply = {
            receipt: plainNode(receipt),
            stanza: stanza(
                { from: req.group, participant: req.sender, id: retry.attrs.id, t: retry.attrs.t, type: 'text' },
                [{ ...resent, attrs: { count: retry.attrs.count } }],
            ),
        };
    } else {
        throw new Error('unknown op ' + req.op);
    }
    process.stdout.write(JSON.stringify(reply));
}

// libsignal logs session changes with console.*; keep stdout for the reply only.
for (const m of ['log', 'info', 'warn', 'error', 'debug']) console[m] = (...a) => process.stderr.write(a.map(String).join(' ') + '\n');

main().catch((e) => {
    process.stderr.write(String((e && e.stack) || e) + '\n');
    process.exit(1);
});
