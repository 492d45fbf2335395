"""Checks waevent's webhook signatures with Python's own HMAC (hmac + hashlib), and
signs a body for waevent to verify.

stdin:  {"secret": str, "deliveries": [{"body_b64": str, "signature": str}], "sign_b64": str}
stdout: {"checks": [bool, ...], "signature": "sha256=<hex>"}
"""

import base64
import hashlib
import hmac
import json
import sys

req = json.load(sys.stdin)
secret = req["secret"].encode()


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


checks = [
    hmac.compare_digest(signature(base64.b64decode(d["body_b64"])), d["signature"])
    for d in req["deliveries"]
]
json.dump(
    {"checks": checks, "signature": signature(base64.b64decode(req["sign_b64"]))},
    sys.stdout,
)
