// Independent check of the send path's IQ and notification shapes, with Baileys 7's
// WABinary as the codec (token dictionary v3) and WAProto (protobufjs) for the
// key-index list.
//
// Direction 1 (waevent's bytes → Baileys decodes): for each request waevent encoded,
// Baileys decodes it and compares it with the node Baileys' own code builds for that
// request (written out below after Baileys' sources: `groupMetadata` in
// Socket/groups.ts, `USyncQuery` with the devices and LID protocols in WAUSync,
// `assertSessions` in Socket/messages-send.ts), ignoring the stanza id and the usync
// sid, which are random.
//
// Direction 2 (Baileys' bytes → waevent decodes): the server's answers and
// notifications, built as plain nodes here and encoded with Baileys' encoder, for
// waevent to parse.
//
// stdin: JSON { requests: {name: {hex, params}}, keys: {identity, spk_id, spk, spk_sig,
//              opk_id, opk, registration} (hex / numbers) }
// stdout: JSON { requests: {name: {decoded, expected, equal}}, answers: {name: hex} }
'use strict';

const { proto } = require('baileys/WAProto');

function norm(node) {
    // Attributes as sorted plain strings, content as hex or children.
    const attrs = {};
    for (const k of Object.keys(node.attrs || {}).sort()) {
        attrs[k] = String(node.attrs[k]);
    }
    let content = null;
    const c = node.content;
    if (Array.isArray(c)) {
        content = c.map(norm);
    } else if (Buffer.isBuffer(c) || c instanceof Uint8Array) {
        content = Buffer.from(c).toString('hex');
    } else if (typeof c === 'string') {
        content = Buffer.from(c, 'utf-8').toString('hex');
    }
    return { tag: node.tag, attrs, content };
}

function dropRandom(node) {
    // The stanza id and the usync session id are random on both sides.
    const n = JSON.parse(JSON.stringify(node));
    delete n.attrs.id;
    if (Array.isArray(n.content)) {
        for (const c of n.content) {
            if (c.tag === 'usync') {
                delete c.attrs.sid;
            }
        }
    }
    return n;
}

const S_WHATSAPP_NET = '@s.whatsapp.net';

// Socket/groups.ts groupMetadata → groupQuery(jid, 'get', [{ tag: 'query', attrs: { request: 'interactive' } }])
function baileysGroupInfo(p) {
    return {
        tag: 'iq',
        attrs: { type: 'get', xmlns: 'w:g2', to: p.group },
        content: [{ tag: 'query', attrs: { request: 'interactive' } }],
    };
}

// WAUSync USyncQuery.withContext('message').withDeviceProtocol().withLIDProtocol(),
// users by jid (Socket/messages-send.ts getUSyncDevices).
function baileysUsync(p) {
    return {
        tag: 'iq',
        attrs: { to: S_WHATSAPP_NET, type: 'get', xmlns: 'usync' },
        content: [
            {
                tag: 'usync',
                attrs: { context: 'message', mode: 'query', sid: 'x', last: 'true', index: '0' },
                content: [
                    {
                        tag: 'query',
                        attrs: {},
                        content: [
                            { tag: 'devices', attrs: { version: '2' } },
                            { tag: 'lid', attrs: {} },
                        ],
                    },
                    {
                        tag: 'list',
                        attrs: {},
                        content: p.users.map((jid) => ({ tag: 'user', attrs: { jid } })),
                    },
                ],
            },
        ],
    };
}

// Socket/messages-send.ts assertSessions (with force: reason 'identity', as whatsmeow
// always sends).
function baileysKeyFetch(p) {
    return {
        tag: 'iq',
        attrs: { xmlns: 'encrypt', type: 'get', to: S_WHATSAPP_NET },
        content: [
            {
                tag: 'key',
                attrs: {},
                content: p.devices.map((jid) => ({ tag: 'user', attrs: { jid, reason: 'identity' } })),
            },
        ],
    };
}

function b(hex) {
    return Buffer.from(hex, 'hex');
}

function be(n, len) {
    const out = Buffer.alloc(len);
    out.writeUIntBE(n, 0, len);
    return out;
}

function answers(k) {
    const keyIndex = proto.ADVSignedKeyIndexList.encode({
        details: proto.ADVKeyIndexList.encode({
            rawId: 7,
            timestamp: 1700000000,
            currentIndex: 5,
            validIndexes: [3, 5],
        }).finish(),
        accountSignature: Buffer.alloc(64, 1),
    }).finish();
    const bundleKeys = [
        { tag: 'type', attrs: {}, content: Buffer.from([5]) },
        { tag: 'identity', attrs: {}, content: b(k.identity) },
        {
            tag: 'skey',
            attrs: {},
            content: [
                { tag: 'id', attrs: {}, content: be(k.spk_id, 3) },
                { tag: 'value', attrs: {}, content: b(k.spk) },
                { tag: 'signature', attrs: {}, content: b(k.spk_sig) },
            ],
        },
        {
            tag: 'key',
            attrs: {},
            content: [
                { tag: 'id', attrs: {}, content: be(k.opk_id, 3) },
                { tag: 'value', attrs: {}, content: b(k.opk) },
            ],
        },
    ];
    return {
        group_info: {
            tag: 'iq',
            attrs: { from: '120363012345678901@g.us', id: '1', type: 'result' },
            content: [
                {
                    tag: 'group',
                    attrs: {
                        id: '120363012345678901',
                        subject: 'Team',
                        creation: '1700000000',
                        creator: '111111111111111@lid',
                        addressing_mode: 'lid',
                        size: '2',
                    },
                    content: [
                        {
                            tag: 'participant',
                            attrs: { jid: '111111111111111@lid', type: 'superadmin', phone_number: '5511999990001@s.whatsapp.net' },
                        },
                        {
                            tag: 'participant',
                            attrs: { jid: '222222222222222@lid', phone_number: '5511999990002@s.whatsapp.net' },
                        },
                    ],
                },
            ],
        },
        usync: {
            tag: 'iq',
            attrs: { from: S_WHATSAPP_NET, id: '2', type: 'result' },
            content: [
                {
                    tag: 'usync',
                    attrs: { sid: 'x', mode: 'query', last: 'true', index: '0', context: 'message' },
                    content: [
                        {
                            tag: 'list',
                            attrs: {},
                            content: [
                                {
                                    tag: 'user',
                                    attrs: { jid: '5511999990002@s.whatsapp.net' },
                                    content: [
                                        {
                                            tag: 'devices',
                                            attrs: {},
                                            content: [
                                                {
                                                    tag: 'device-list',
                                                    attrs: { hash: '2:AbCdEfGh' },
                                                    content: [
                                                        { tag: 'device', attrs: { id: '0' } },
                                                        { tag: 'device', attrs: { id: '3', 'key-index': '3' } },
                                                        { tag: 'device', attrs: { id: '4', 'key-index': '4' } },
                                                        { tag: 'device', attrs: { id: '6', 'key-index': '6' } },
                                                        { tag: 'device', attrs: { id: '99', 'key-index': '5', is_hosted: 'true' } },
                                                    ],
                                                },
                                                { tag: 'key-index-list', attrs: { ts: '1700000000' }, content: keyIndex },
                                            ],
                                        },
                                        { tag: 'lid', attrs: { val: '222222222222222@lid' } },
                                    ],
                                },
                            ],
                        },
                    ],
                },
            ],
        },
        bundles: {
            tag: 'iq',
            attrs: { from: S_WHATSAPP_NET, id: '3', type: 'result' },
            content: [
                {
                    tag: 'list',
                    attrs: {},
                    content: [
                        {
                            tag: 'user',
                            attrs: { jid: '222222222222222:3@lid' },
                            content: [{ tag: 'registration', attrs: {}, content: be(k.registration, 4) }, ...bundleKeys],
                        },
                        {
                            tag: 'user',
                            attrs: { jid: '222222222222222:4@lid' },
                            content: [{ tag: 'error', attrs: { code: '406', text: 'not-acceptable' } }],
                        },
                    ],
                },
            ],
        },
        devices_notification: {
            tag: 'notification',
            attrs: { from: '5511999990002@s.whatsapp.net', lid: '222222222222222@lid', type: 'devices', id: '4', t: '1700000000' },
            content: [
                {
                    tag: 'remove',
                    attrs: { device_hash: '2:AAAAAAAA' },
                    content: [{ tag: 'device', attrs: { jid: '5511999990002:4@s.whatsapp.net', lid: '222222222222222:4@lid' } }],
                },
            ],
        },
        group_notification: {
            tag: 'notification',
            attrs: { from: '120363012345678901@g.us', participant: '111111111111111:2@lid', type: 'w:gp2', id: '5', t: '1700000000' },
            content: [
                {
                    tag: 'remove',
                    attrs: {},
                    content: [{ tag: 'participant', attrs: { jid: '222222222222222@lid', phone_number: '5511999990002@s.whatsapp.net' } }],
                },
            ],
        },
        retry_receipt: {
            tag: 'receipt',
            attrs: { from: '120363012345678901@g.us', participant: '222222222222222:3@lid', id: '3EB0ABCDEF', type: 'retry', t: '1700000001' },
            content: [
                { tag: 'retry', attrs: { v: '1', id: '3EB0ABCDEF', t: '1700000000', count: '2', error: '0' } },
                { tag: 'registration', attrs: {}, content: be(k.registration, 4) },
                { tag: 'keys', attrs: {}, content: bundleKeys },
            ],
        },
    };
}

async function main() {
    const wab = await import('baileys/lib/WABinary/index.js');
    const chunks = [];
    for await (const chunk of process.stdin) {
        chunks.push(chunk);
    }
    const input = JSON.parse(Buffer.concat(chunks).toString('utf-8'));
    const builders = { group_info: baileysGroupInfo, usync: baileysUsync, key_fetch: baileysKeyFetch };
    const out = { requests: {}, answers: {} };
    for (const [name, req] of Object.entries(input.requests)) {
        const decoded = dropRandom(norm(await wab.decodeBinaryNode(b(req.hex))));
        // Baileys' own node, through its own encoder and decoder (so JIDs are in the
        // form its decoder gives).
        const own = await wab.decodeBinaryNode(wab.encodeBinaryNode(builders[name](req.params)));
        const expected = dropRandom(norm(own));
        out.requests[name] = {
            decoded,
            expected,
            equal: JSON.stringify(decoded) === JSON.stringify(expected),
        };
    }
    for (const [name, node] of Object.entries(answers(input.keys))) {
        out.answers[name] = wab.encodeBinaryNode(node).toString('hex');
    }
    process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
    process.stderr.write(String((e && e.stack) || e) + '\n');
    process.exit(1);
});
