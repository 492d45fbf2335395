// An independent companion for the simulator's pairing checks (tests/sim_interop.rs).
// One JSON request on stdin, one JSON reply on stdout; binary fields are base64.
//
// Schema: Baileys 7's WAProto (WhatsApp's .proto compiled by protobufjs).
// Curve25519 / XEdDSA: npm `libsignal@6.0.0`'s curve module (curve25519-js for
// signatures, node's X25519 for agreement). Its verifySignature returns false instead of
// throwing, so every "ok" below is paired with a tampered input that must say false.
// PBKDF2, AES-CTR, AES-GCM, HKDF, HMAC: node's crypto module.
//
// ops:
//   companion_reply       {device_identity, adv_secret, identity_priv, identity_pub}
//                          → checks pair-success as a companion does and builds the
//                            pair-device-sign identity (accountSignatureKey removed)
//   code_hello            {code} → companion ephemeral wrapped with the code
//   code_finish           {code, eph_priv, identity_priv, identity_pub,
//                           wrapped_primary, primary_identity}
//                          → key bundle for companion_finish and the ADV secret
'use strict';

const crypto = require('crypto');
const curve = require('libsignal/src/curve');

const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');
const djb = (raw) => Buffer.concat([Buffer.from([5]), raw]);
const flip = (buf, i) => { const c = Buffer.from(buf); c[i] ^= 1; return c; };

async function waproto() {
    return (await import('baileys/WAProto/index.js')).proto;
}

function codeKey(code, salt) {
    return crypto.pbkdf2Sync(Buffer.from(code, 'utf8'), salt, 2 << 16, 32, 'sha256');
}

function ctr(key, iv, data) {
    const c = crypto.createCipheriv('aes-256-ctr', key, iv);
    return Buffer.concat([c.update(data), c.final()]);
}

async function companionReply(req) {
    const proto = await waproto();
    const adv = unb64(req.adv_secret);
    const container = proto.ADVSignedDeviceIdentityHMAC.decode(unb64(req.device_identity));
    const details = Buffer.from(container.details);
    const hmac = crypto.createHmac('sha256', adv).update(details).digest();
    const hmacOk = crypto.timingSafeEqual(hmac, Buffer.from(container.hmac));
    const signed = proto.ADVSignedDeviceIdentity.decode(details);
    const accountKey = Buffer.from(signed.accountSignatureKey);
    const inner = Buffer.from(signed.details);
    const identityPub = unb64(req.identity_pub);
    const accountMsg = Buffer.concat([Buffer.from([6, 0]), inner, identityPub]);
    const accountSig = Buffer.from(signed.accountSignature);
    const accountSigOk = curve.verifySignature(djb(accountKey), accountMsg, accountSig);
    const accountSigTampered = curve.verifySignature(djb(accountKey), flip(accountMsg, 3), accountSig);
    const identity = proto.ADVDeviceIdentity.decode(inner);
    const deviceMsg = Buffer.concat([Buffer.from([6, 1]), inner, identityPub, accountKey]);
    const deviceSig = curve.calculateSignature(unb64(req.identity_priv), deviceMsg);
    const reply = proto.ADVSignedDeviceIdentity.encode({
        details: inner,
        accountSignature: accountSig,
        deviceSignature: deviceSig,
    }).finish();
    return {
        hmac_ok: hmacOk,
        account_sig_ok: accountSigOk,
        account_sig_tampered_ok: accountSigTampered,
        raw_id: identity.rawId,
        key_index: identity.keyIndex,
        timestamp: Number(identity.timestamp),
        account_type: identity.accountType || 0,
        account_key: b64(accountKey),
        reply: b64(reply),
    };
}

function codeHello(req) {
    const pair = curve.generateKeyPair();
    const pub = pair.pubKey.subarray(1);
    const salt = crypto.randomBytes(32);
    const iv = crypto.randomBytes(16);
    const wrapped = Buffer.concat([salt, iv, ctr(codeKey(req.code, salt), iv, pub)]);
    return { wrapped: b64(wrapped), eph_priv: b64(pair.privKey), eph_pub: b64(pub) };
}

function codeFinish(req) {
    const wrapped = unb64(req.wrapped_primary);
    const salt = wrapped.subarray(0, 32);
    const iv = wrapped.subarray(32, 48);
    const primaryEph = ctr(codeKey(req.code, salt), iv, wrapped.subarray(48, 80));
    const shared = curve.calculateAgreement(djb(primaryEph), unb64(req.eph_priv));
    const primaryIdentity = unb64(req.primary_identity);
    const random = crypto.randomBytes(32);
    const bundleSalt = crypto.randomBytes(32);
    const key = Buffer.from(crypto.hkdfSync('sha256', shared, bundleSalt,
        'link_code_pairing_key_bundle_encryption_key', 32));
    const nonce = crypto.randomBytes(12);
    const gcm = crypto.createCipheriv('aes-256-gcm', key, nonce);
    const plain = Buffer.concat([unb64(req.identity_pub), primaryIdentity, random]);
    const sealed = Buffer.concat([gcm.update(plain), gcm.final(), gcm.getAuthTag()]);
    const identityShared = curve.calculateAgreement(djb(primaryIdentity), unb64(req.identity_priv));
    const adv = Buffer.from(crypto.hkdfSync('sha256', Buffer.concat([shared, identityShared, random]),
        Buffer.alloc(0), 'adv_secret', 32));
    return {
        bundle: b64(Buffer.concat([bundleSalt, nonce, sealed])),
        adv_secret: b64(adv),
        primary_ephemeral: b64(primaryEph),
    };
}

async function main() {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    let out;
    switch (req.op) {
        case 'companion_reply': out = await companionReply(req); break;
        case 'code_hello': out = codeHello(req); break;
        case 'code_finish': out = codeFinish(req); break;
        default: throw new Error(`unknown op ${req.op}`);
    }
    process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
