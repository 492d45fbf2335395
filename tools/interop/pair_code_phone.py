"""Plays the primary phone of the pairing-code flow (PROTOCOL.md section 6.4) with
PyPI `cryptography` (OpenSSL's PBKDF2, AES-CTR, AES-GCM, HKDF and X25519), written
from the protocol description, to check waevent's side both ways. Used by
tests/client_interop.rs.

stdin: JSON array of requests, stdout: JSON array of results (binary fields hex):
  {"op": "hello", "code", "wrapped"}                    the companion_hello content
     -> {"companion_ephemeral", "wrapped_primary", "primary_identity",
         "state": {...}}   (the phone's private keys, passed back for "finish")
  {"op": "finish", "code", "state", "companion_ephemeral", "wrapped_bundle",
   "companion_identity"}
     -> {"companion_identity_ok", "primary_identity_ok", "adv_secret"}
"""
import json
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption


def code_key(code, salt):
    return PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=2**17).derive(
        code.encode()
    )


def ctr(key, iv, data):
    c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def raw_pub(priv):
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def raw_priv(priv):
    return priv.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def hello(req):
    code = req["code"]
    wrapped = bytes.fromhex(req["wrapped"])
    salt, iv, body = wrapped[:32], wrapped[32:48], wrapped[48:80]
    companion_ephemeral = ctr(code_key(code, salt), iv, body)
    ephemeral = X25519PrivateKey.generate()
    identity = X25519PrivateKey.generate()
    salt2, iv2 = os.urandom(32), os.urandom(16)
    wrapped_primary = salt2 + iv2 + ctr(code_key(code, salt2), iv2, raw_pub(ephemeral))
    return {
        "companion_ephemeral": companion_ephemeral.hex(),
        "wrapped_primary": wrapped_primary.hex(),
        "primary_identity": raw_pub(identity).hex(),
        "state": {"ephemeral": raw_priv(ephemeral).hex(), "identity": raw_priv(identity).hex()},
    }


def finish(req):
    ephemeral = X25519PrivateKey.from_private_bytes(bytes.fromhex(req["state"]["ephemeral"]))
    identity = X25519PrivateKey.from_private_bytes(bytes.fromhex(req["state"]["identity"]))
    companion_ephemeral = X25519PublicKey.from_public_bytes(bytes.fromhex(req["companion_ephemeral"]))
    companion_identity = bytes.fromhex(req["companion_identity"])
    shared = ephemeral.exchange(companion_ephemeral)
    bundle = bytes.fromhex(req["wrapped_bundle"])
    salt, nonce, ciphertext = bundle[:32], bundle[32:44], bundle[44:]
    key = hkdf(shared, salt, b"link_code_pairing_key_bundle_encryption_key")
    plain = AESGCM(key).decrypt(nonce, ciphertext, None)
    identity_shared = identity.exchange(X25519PublicKey.from_public_bytes(plain[:32]))
    adv_secret = hkdf(shared + identity_shared + plain[64:96], None, b"adv_secret")
    return {
        "companion_identity_ok": plain[:32] == companion_identity,
        "primary_identity_ok": plain[32:64] == raw_pub(identity),
        "bundle_len": len(plain),
        "adv_secret": adv_secret.hex(),
    }


def main():
    ops = {"hello": hello, "finish": finish}
    json.dump([ops[r["op"]](r) for r in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
