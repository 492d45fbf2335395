"""XEdDSA ("curve25519 sign") cross-check with python-axolotl-curve25519, which wraps
libsignal's own C implementation (curve_sigs.c).

stdin:  {"sign": [{"priv": hex32, "msg": hex, "random": hex64}, ...],
         "verify": [{"pub": hex32, "msg": hex, "sig": hex64}, ...],
         "public": [hex32 private keys]}
stdout: {"sign": [hex64, ...], "verify": [bool, ...], "public": [hex32, ...]}
"""
import json
import sys

import axolotl_curve25519 as curve


def main():
    req = json.load(sys.stdin)
    out = {
        "sign": [
            curve.calculateSignature(
                bytes.fromhex(c["random"]), bytes.fromhex(c["priv"]), bytes.fromhex(c["msg"])
            ).hex()
            for c in req.get("sign", [])
        ],
        # verifySignature returns 0 when the signature is valid.
        "verify": [
            curve.verifySignature(
                bytes.fromhex(c["pub"]), bytes.fromhex(c["msg"]), bytes.fromhex(c["sig"])
            )
            == 0
            for c in req.get("verify", [])
        ],
        "public": [curve.generatePublicKey(bytes.fromhex(k)).hex() for k in req.get("public", [])],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
