// Plays the primary phone of WhatsApp's pairing (ADV, PROTOCOL.md §6.3) with independent
// parts: Baileys 7's WAProto (WhatsApp's schema compiled by protobufjs) for the ADV
// messages, npm libsignal@6.0.0's curve module (curve25519-js XEdDSA) for signatures,
// and Node's crypto for the HMAC. Used by tests/client_interop.rs.
//
// stdin: JSON array of requests, stdout: JSON array of results (binary fields base64):
//   {"op":"container", "advSecret", "companionIdentity" (32 raw bytes), "keyIndex",
//    ["hmacKey"]: sign the HMAC with this key instead of advSecret,
//    ["signedFor"]: sign the account signature over this identity instead}
//     -> {"container", "accountKey" (32 raw), "details"}
//   {"op":"check_reply", "reply", "companionIdentity", "accountKey", "details"}
//     -> {"hasAccountSignatureKey", "detailsEqual", "deviceSignatureValid",
//         "tamperedSignatureValid", "keyIndex", "accountSignatureValid"}
'use strict';

const crypto = require('crypto');
const curve = require('libsignal/src/curve');
const { proto } = require('baileys/WAProto');

const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');
const withType = (raw) => Buffer.concat([Buffer.from([5]), raw]);

function container(req) {
    const account = curve.generateKeyPair(); // pubKey has the 0x05 prefix
    const accountRaw = account.pubKey.slice(1);
    const details = Buffer.from(proto.ADVDeviceIdentity.encode({
        rawId: 12345,
        timestamp: 1700000000,
        keyIndex: req.keyIndex,
        accountType: proto.ADVEncryptionType.E2EE,
        deviceType: proto.ADVEncryptionType.E2EE,
    }).finish());
    const signedFor = unb64(req.signedFor || req.companionIdentity);
    const accountSignature = curve.calculateSignature(
        account.privKey,
        Buffer.concat([Buffer.from([6, 0]), details, signedFor]),
    );
    const signed = Buffer.from(proto.ADVSignedDeviceIdentity.encode({
        details,
        accountSignatureKey: accountRaw,
        accountSignature,
    }).finish());
    const hmac = crypto.createHmac('sha256', unb64(req.hmacKey || req.advSecret)).update(signed).digest();
    const wrapped = Buffer.from(proto.ADVSignedDeviceIdentityHMAC.encode({
        details: signed,
        hmac,
        accountType: proto.ADVEncryptionType.E2EE,
    }).finish());
    return { container: b64(wrapped), accountKey: b64(accountRaw), details: b64(details) };
}

function checkReply(req) {
    const reply = proto.ADVSignedDeviceIdentity.decode(unb64(req.reply));
    const companion = unb64(req.companionIdentity);
    const accountKey = unb64(req.accountKey);
    const details = Buffer.from(reply.details || []);
    const message = Buffer.concat([Buffer.from([6, 1]), details, companion, accountKey]);
    const sig = Buffer.from(reply.deviceSignature || []);
    // libsignal's verifySignature returns a boolean (it does not throw on a bad one).
    const valid = sig.length === 64 && curve.verifySignature(withType(companion), message, sig) === true;
    const tampered = Buffer.from(sig);
    if (tampered.length === 64) tampered[10] ^= 1;
    const tamperedValid = tampered.length === 64
        && curve.verifySignature(withType(companion), message, tampered) === true;
    const accountSigValid = curve.verifySignature(
        withType(accountKey),
        Buffer.concat([Buffer.from([6, 0]), details, companion]),
        Buffer.from(reply.accountSignature || []),
    ) === true;
    const identity = proto.ADVDeviceIdentity.decode(details);
    return {
        hasAccountSignatureKey: !!(reply.accountSignatureKey && reply.accountSignatureKey.length),
        detailsEqual: details.equals(unb64(req.details)),
        deviceSignatureValid: valid,
        tamperedSignatureValid: tamperedValid,
        accountSignatureValid: accountSigValid,
        keyIndex: identity.keyIndex,
    };
}

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
    const out = JSON.parse(input).map((req) => {
        switch (req.op) {
        case 'container': return container(req);
        case 'check_reply': return checkReply(req);
        default: throw new Error('unknown op ' + req.op);
        }
    });
    process.stdout.write(JSON.stringify(out));
});
