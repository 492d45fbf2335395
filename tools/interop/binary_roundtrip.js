// Independent check of waevent's binary node codec against Baileys 7's WABinary (token
// dictionary v3, the encoder WhatsApp Web's own is ported from).
//
// stdin: JSON {
//   "encode": [node...],   Baileys encodes each node (bytes are returned with the 0x00
//                          flags byte Baileys puts first) and decodes its own bytes again
//   "decode": [hex...],    frame payloads (flags byte + node) for Baileys to decode
//   "compress": [hex...],  frame payloads to re-pack as zlib-compressed frames with
//                          Node's zlib (flags 0x02), for waevent to inflate
//   "tokens": true         also return Baileys' token tables
// }
// stdout: JSON { "encoded": [hex...], "reencoded_decoded": [node...],
//                "decoded": [node...], "compressed": [hex...], "tokens": {...} }
//
// A node is {"tag": s, "attrs": {k: s, ...}, "content": null | "<hex>" | [node...] |
// {"string": s}} — the last form is string content, which waevent never writes but
// Baileys does, so waevent's decoder is checked on it too. Decoding errors are returned
// as {"error": message} in place of the node.
'use strict';

const zlib = require('zlib');

function toBaileys(node) {
    // A prototype-less object, so keys like "constructor" are plain keys.
    const attrs = Object.create(null);
    for (const [k, v] of Object.entries(node.attrs || {})) {
        attrs[k] = v;
    }
    let content;
    const c = node.content;
    if (c === null || c === undefined) {
        content = undefined;
    } else if (typeof c === 'string') {
        content = Buffer.from(c, 'hex');
    } else if (Array.isArray(c)) {
        content = c.map(toBaileys);
    } else if (typeof c.string === 'string') {
        content = c.string;
    } else {
        throw new Error('bad content in input node');
    }
    return { tag: node.tag, attrs, content };
}

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

async function main() {
    const wab = await import('baileys/lib/WABinary/index.js');
    const constants = await import('baileys/lib/WABinary/constants.js');
    const chunks = [];
    for await (const chunk of process.stdin) {
        chunks.push(chunk);
    }
    const input = JSON.parse(Buffer.concat(chunks).toString('utf-8'));
    const out = { encoded: [], reencoded_decoded: [], decoded: [], compressed: [] };

    for (const node of input.encode || []) {
        const bytes = wab.encodeBinaryNode(toBaileys(node));
        out.encoded.push(bytes.toString('hex'));
        try {
            out.reencoded_decoded.push(fromBaileys(await wab.decodeBinaryNode(bytes)));
        } catch (e) {
            out.reencoded_decoded.push({ error: String(e && e.message) });
        }
    }
    for (const hex of input.decode || []) {
        try {
            out.decoded.push(fromBaileys(await wab.decodeBinaryNode(Buffer.from(hex, 'hex'))));
        } catch (e) {
            out.decoded.push({ error: String(e && e.message) });
        }
    }
    for (const hex of input.compress || []) {
        const frame = Buffer.from(hex, 'hex');
        const packed = zlib.deflateSync(frame.subarray(1));
        out.compressed.push(Buffer.concat([Buffer.from([2]), packed]).toString('hex'));
    }
    if (input.tokens) {
        out.tokens = {
            single: constants.SINGLE_BYTE_TOKENS,
            double: constants.DOUBLE_BYTE_TOKENS,
            tags: constants.TAGS,
        };
    }
    process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
    process.stderr.write(String((e && e.stack) || e) + '\n');
    process.exit(1);
});
