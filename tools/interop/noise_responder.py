"""A WhatsApp-style Noise XX responder built from independent parts, for
tests/interop_noise.rs:

* Noise: PyPI `noiseprotocol`'s SymmetricState / CipherState and its X25519, AES-GCM and
  SHA-256 function objects, driven step by step in WhatsApp's order (its ready-made
  HandshakeState would hash the empty first payload, which WhatsApp does not).
* Protobuf: Google's `protobuf` runtime with message descriptors declared below from
  WhatsApp's field numbers (HandshakeMessage, CertChain).
* Certificates: PyPI `python-axolotl-curve25519` (libsignal's C curve25519 signatures).

Line protocol on stdin/stdout, one JSON object per line:
  {"cmd":"setup","now":N,"server_static":hex32, and either
       "cert_chain":hex,"root_public":hex32     (chain minted by waevent; checked here)
    or "mint":{"defect":null|"wrong_root"|"expired"|"bad_leaf_signature"}}  (minted here)
    -> {"root_public":hex32,"cert_chain":hex,"chain_checked":bool}
  {"cmd":"client_bytes","hex":...}   the stream from the client (any chunking); answers
    as soon as something is complete:
    after the ClientHello -> {"server_hello":hex frame,"routing_info":hex|null}
    after the ClientFinish (+ frames) -> {"client_static":hex,"client_payload":hex,
                                          "frames":[hex plaintexts]}
  {"cmd":"send","hex":plaintext} -> {"frame":hex}  (transport frame to the client)
"""
import json
import os
import sys

import axolotl_curve25519 as curve
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from noise.backends.default import noise_backend
from noise.noise_protocol import NoiseProtocol
from noise.state import SymmetricState

PROLOGUE = b"WA\x06\x03"
ED_MAGIC = b"ED\x00\x01"

# ---------------------------------------------------------------- protobuf schema ---------
F = descriptor_pb2.FieldDescriptorProto


def _message(parent, name, fields):
    m = parent.add() if hasattr(parent, "add") else parent
    m.name = name
    for number, fname, ftype, type_name in fields:
        f = m.field.add()
        f.name, f.number, f.type = fname, number, ftype
        f.label = F.LABEL_OPTIONAL
        if type_name:
            f.type_name = type_name
    return m


def _schema():
    fdp = descriptor_pb2.FileDescriptorProto(name="wa_interop.proto", package="wa", syntax="proto2")
    hs = _message(fdp.message_type, "HandshakeMessage", [
        (2, "clientHello", F.TYPE_MESSAGE, ".wa.HandshakeMessage.ClientHello"),
        (3, "serverHello", F.TYPE_MESSAGE, ".wa.HandshakeMessage.ServerHello"),
        (4, "clientFinish", F.TYPE_MESSAGE, ".wa.HandshakeMessage.ClientFinish"),
    ])
    for name, fields in [
        ("ClientHello", [(1, "ephemeral"), (2, "static"), (3, "payload")]),
        ("ServerHello", [(1, "ephemeral"), (2, "static"), (3, "payload")]),
        ("ClientFinish", [(1, "static"), (2, "payload")]),
    ]:
        _message(hs.nested_type, name, [(n, fn, F.TYPE_BYTES, None) for n, fn in fields])
    chain = _message(fdp.message_type, "CertChain", [
        (1, "leaf", F.TYPE_MESSAGE, ".wa.CertChain.NoiseCertificate"),
        (2, "intermediate", F.TYPE_MESSAGE, ".wa.CertChain.NoiseCertificate"),
    ])
    cert = _message(chain.nested_type, "NoiseCertificate", [
        (1, "details", F.TYPE_BYTES, None),
        (2, "signature", F.TYPE_BYTES, None),
    ])
    _message(cert.nested_type, "Details", [
        (1, "serial", F.TYPE_UINT32, None),
        (2, "issuerSerial", F.TYPE_UINT32, None),
        (3, "key", F.TYPE_BYTES, None),
        (4, "notBefore", F.TYPE_UINT64, None),
        (5, "notAfter", F.TYPE_UINT64, None),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)

    def cls(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    return (cls("wa.HandshakeMessage"), cls("wa.CertChain"),
            cls("wa.CertChain.NoiseCertificate"), cls("wa.CertChain.NoiseCertificate.Details"))


HandshakeMessage, CertChain, NoiseCertificate, Details = _schema()

# ---------------------------------------------------------------- certificates ------------


def sign(private, message):
    return curve.calculateSignature(os.urandom(64), private, message)


def verify(public, message, signature):
    return curve.verifySignature(public, message, signature) == 0


def check_chain(chain_bytes, root_public, server_static_public, now):
    """Verifies a chain the way WhatsApp clients do, with libsignal's C verifier."""
    chain = CertChain.FromString(chain_bytes)
    inter, leaf = chain.intermediate, chain.leaf
    if not verify(root_public, inter.details, inter.signature):
        return False
    idet = Details.FromString(inter.details)
    if idet.issuerSerial != 0 or not verify(idet.key, leaf.details, leaf.signature):
        return False
    ldet = Details.FromString(leaf.details)
    return (ldet.issuerSerial == idet.serial and ldet.key == server_static_public
            and idet.notBefore <= now <= idet.notAfter and ldet.notBefore <= now <= ldet.notAfter)


def mint_chain(server_static_public, now, defect):
    root = curve.generatePrivateKey(os.urandom(32))
    inter = curve.generatePrivateKey(os.urandom(32))
    signer_of_inter = curve.generatePrivateKey(os.urandom(32)) if defect == "wrong_root" else root
    day = 86400
    idet = Details(serial=10, issuerSerial=0, key=curve.generatePublicKey(inter),
                   notBefore=now - day, notAfter=now + day).SerializeToString()
    leaf_window = (now - 3 * day, now - 2 * day) if defect == "expired" else (now - day, now + day)
    ldet = Details(serial=11, issuerSerial=10, key=server_static_public,
                   notBefore=leaf_window[0], notAfter=leaf_window[1]).SerializeToString()
    leaf_sig = bytearray(sign(inter, ldet))
    if defect == "bad_leaf_signature":
        leaf_sig[7] ^= 1
    chain = CertChain(
        intermediate=NoiseCertificate(details=idet, signature=sign(signer_of_inter, idet)),
        leaf=NoiseCertificate(details=ldet, signature=bytes(leaf_sig)),
    )
    return curve.generatePublicKey(root), chain.SerializeToString()

# ---------------------------------------------------------------- noise -------------------


def raw_public(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Responder:
    def __init__(self, server_static_private, cert_chain):
        self.proto = NoiseProtocol(b"Noise_XX_25519_AESGCM_SHA256", backend=noise_backend)
        # h = the 28-byte name padded with zeros to 32 bytes (not hashed), ck = h.
        self.ss = SymmetricState.initialize_symmetric(self.proto)
        self.dh = self.proto.dh_fn
        self.static = self.proto.keypair_class.from_private_bytes(server_static_private)
        self.cert_chain = cert_chain
        self.buf = b""
        self.intro_done = False
        self.routing_info = None
        self.stage = "hello"
        self.encrypt = self.decrypt = None

    # Framing ----------------------------------------------------------------
    def _strip_intro(self):
        buf = self.buf
        if buf[:1] == b"E":
            if len(buf) < 7:
                return False
            assert buf[:4] == ED_MAGIC, "bad ED pre-intro"
            n = int.from_bytes(buf[4:7], "big")
            if len(buf) < 7 + n:
                return False
            self.routing_info, buf = buf[7:7 + n], buf[7 + n:]
        if len(buf) < 4:
            return False
        assert buf[:4] == PROLOGUE, "connection header is not WA 06 03: %r" % buf[:4]
        self.buf, self.intro_done = buf[4:], True
        return True

    def _frames(self):
        out = []
        while len(self.buf) >= 3:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 3 + n:
                break
            out.append(self.buf[3:3 + n])
            self.buf = self.buf[3 + n:]
        return out

    # Handshake --------------------------------------------------------------
    def _server_hello(self, frame):
        ss, dh = self.ss, self.dh
        e_c = HandshakeMessage.FromString(frame).clientHello.ephemeral
        assert len(e_c) == 32
        self.e_c = self.proto.keypair_class.from_public_bytes(e_c)
        ss.mix_hash(PROLOGUE)
        ss.mix_hash(e_c)  # the client's (empty) payload is NOT hashed, unlike stock XX
        self.e_s = dh.generate_keypair()
        ss.mix_hash(self.e_s.public_bytes)
        ss.mix_key(dh.dh(self.e_s.private, self.e_c.public))                 # ee
        enc_static = ss.encrypt_and_hash(self.static.public_bytes)           # nonce 0
        ss.mix_key(dh.dh(self.static.private, self.e_c.public))              # es
        enc_chain = ss.encrypt_and_hash(self.cert_chain)                     # nonce 0
        msg = HandshakeMessage()
        msg.serverHello.ephemeral = self.e_s.public_bytes
        msg.serverHello.static = enc_static
        msg.serverHello.payload = enc_chain
        body = msg.SerializeToString()
        return len(body).to_bytes(3, "big") + body

    def _client_finish(self, frame):
        ss, dh = self.ss, self.dh
        finish = HandshakeMessage.FromString(frame).clientFinish
        client_static = ss.decrypt_and_hash(finish.static)                   # nonce 1
        rs = self.proto.keypair_class.from_public_bytes(client_static)
        ss.mix_key(dh.dh(self.e_s.private, rs.public))                       # se
        payload = ss.decrypt_and_hash(finish.payload)                        # nonce 0
        # Split(): noiseprotocol hands the responder c2 for writing and c1 for reading.
        # (split() reads the role from a HandshakeState we do not use, then tidies up.)
        self.proto.handshake_state = type("Role", (), {"initiator": False})()
        self.proto.symmetric_state = ss
        c1, c2 = ss.split()
        self.encrypt, self.decrypt = c2, c1
        return client_static, payload

    def feed(self, data):
        self.buf += data
        if not self.intro_done and not self._strip_intro():
            return None
        reply = None
        plaintexts = []
        for frame in self._frames():
            if self.stage == "hello":
                reply = {"server_hello": self._server_hello(frame).hex(),
                         "routing_info": None if self.routing_info is None else self.routing_info.hex()}
                self.stage = "finish"
            elif self.stage == "finish":
                client_static, payload = self._client_finish(frame)
                reply = {"client_static": client_static.hex(), "client_payload": payload.hex()}
                self.stage = "transport"
            else:
                plaintexts.append(self.decrypt.decrypt_with_ad(b"", frame).hex())
        if self.stage == "transport" and (reply is not None or plaintexts):
            reply = dict(reply or {})
            reply["frames"] = plaintexts
        return reply

    def send(self, plaintext):
        body = self.encrypt.encrypt_with_ad(b"", plaintext)
        return len(body).to_bytes(3, "big") + body


def main():
    responder = None
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "setup":
            static_private = bytes.fromhex(req["server_static"])
            static_public = raw_public(
                x25519.X25519PrivateKey.from_private_bytes(static_private).public_key())
            if "mint" in req:
                root_public, chain = mint_chain(static_public, req["now"], req["mint"]["defect"])
            else:
                root_public, chain = bytes.fromhex(req["root_public"]), bytes.fromhex(req["cert_chain"])
            checked = check_chain(chain, root_public, static_public, req["now"])
            responder = Responder(static_private, chain)
            out = {"root_public": root_public.hex(), "cert_chain": chain.hex(), "chain_checked": checked}
        elif req["cmd"] == "client_bytes":
            out = responder.feed(bytes.fromhex(req["hex"]))
        elif req["cmd"] == "send":
            out = {"frame": responder.send(bytes.fromhex(req["hex"])).hex()}
        else:
            raise ValueError("unknown command " + req["cmd"])
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
