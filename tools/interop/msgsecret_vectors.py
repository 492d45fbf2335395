#!/usr/bin/env python3
"""Independent test vectors for WhatsApp's message-secret cryptography (event RSVPs
and event edits), computed with PyPI `cryptography` (HKDF-SHA256, AES-256-GCM).

    key  = HKDF-SHA256(ikm = secret, salt = none, info = id || creator || sender || use case, 32)
    aad  = id || 0x00 || sender   for "Event Response", empty for "Event Edit"
    payload = AES-256-GCM(key, iv, plaintext, aad) = ciphertext || 16-byte tag

JIDs are written without device (user@server). The plaintexts are protobufs encoded
by hand below (EventResponseMessage; Message{eventMessage}), so the vectors also pin
the byte layout of those messages.

Run once; its stdout is committed as tests/data/msgsecret_vectors.json:

    python3 tools/interop/msgsecret_vectors.py > tests/data/msgsecret_vectors.json
"""

import json
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def field_bytes(num, data):
    return varint((num << 3) | 2) + varint(len(data)) + data


def event_response(response, timestamp_ms, extra_guests):
    # EventResponseMessage { response = 1; timestampMS = 2; extraGuestCount = 3 }
    return (
        field_varint(1, response)
        + field_varint(2, timestamp_ms)
        + field_varint(3, extra_guests)
    )


def event_message(card):
    # EventMessage fields in number order: isCanceled 2, name 3, description 4,
    # startTime 7, endTime 8, extraGuestsAllowed 9, isScheduleCall 10,
    # hasReminder 11, reminderOffsetSec 12.
    out = field_varint(2, int(card["isCanceled"]))
    out += field_bytes(3, card["name"].encode())
    if "description" in card:
        out += field_bytes(4, card["description"].encode())
    out += field_varint(7, card["startTime"])
    if "endTime" in card:
        out += field_varint(8, card["endTime"])
    out += field_varint(9, int(card["extraGuestsAllowed"]))
    out += field_varint(10, int(card["isScheduleCall"]))
    out += field_varint(11, int(card["hasReminder"]))
    if card["hasReminder"]:
        out += field_varint(12, card["reminderOffsetSec"])
    # Message { eventMessage = 75 }
    return field_bytes(75, out)


def derive(secret, use_case, msg_id, creator, sender):
    info = msg_id.encode() + creator.encode() + sender.encode() + use_case.encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
    return info, key


def vector(name, use_case, secret, msg_id, creator, sender, iv, plaintext, content):
    info, key = derive(secret, use_case, msg_id, creator, sender)
    aad = (msg_id.encode() + b"\x00" + sender.encode()) if use_case == "Event Response" else b""
    payload = AESGCM(key).encrypt(iv, plaintext, aad)
    return {
        "name": name,
        "use_case": use_case,
        "secret": secret.hex(),
        "message_id": msg_id,
        "creator": creator,
        "sender": sender,
        "info": info.hex(),
        "key": key.hex(),
        "aad": aad.hex(),
        "iv": iv.hex(),
        "plaintext": plaintext.hex(),
        "payload": payload.hex(),
        "content": content,
    }


def main():
    vectors = []
    rsvps = [
        ("rsvp going, phone numbers", bytes(range(32)), "3EB0A1B2C3D4E5F60718",
         "5511999990000@s.whatsapp.net", "5511988887777@s.whatsapp.net",
         bytes.fromhex("000102030405060708090a0b"), 1, 1796148000123, 2),
        ("rsvp not going, LIDs", bytes([0xA5] * 32), "3EB0FFEEDDCCBBAA9988",
         "100000000000001@lid", "200000000000002@lid",
         bytes.fromhex("f0e1d2c3b4a5968778695a4b"), 2, 1796150000000, 0),
        ("rsvp maybe, PN creator, LID responder", bytes(range(100, 132)), "ABCDEF0123456789",
         "5511999990000@s.whatsapp.net", "200000000000002@lid",
         bytes.fromhex("111111111111111111111111"), 3, 1700000000001, 5),
        ("rsvp removed (UNKNOWN)", bytes(range(255, 223, -1)), "3A00000000000000000F",
         "5511999990000@s.whatsapp.net", "5511988887777@s.whatsapp.net",
         bytes.fromhex("00000000000000000000002a"), 0, 1796148999999, 0),
    ]
    for name, secret, msg_id, creator, sender, iv, resp, ts, guests in rsvps:
        plaintext = event_response(resp, ts, guests)
        content = {"response": resp, "timestamp_ms": ts, "extra_guests": guests}
        vectors.append(vector(name, "Event Response", secret, msg_id, creator, sender, iv,
                              plaintext, content))

    edits = [
        ("edit: cancel", bytes(range(32)), "3EB0A1B2C3D4E5F60718",
         "5511999990000@s.whatsapp.net", "5511999990000@s.whatsapp.net",
         bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab"),
         {"isCanceled": True, "name": "Launch", "startTime": 1796148000,
          "extraGuestsAllowed": False, "isScheduleCall": False, "hasReminder": False}),
        ("edit: new time and reminder, LID", bytes([0x5A] * 32), "3EB0FFEEDDCCBBAA9988",
         "100000000000001@lid", "100000000000001@lid",
         bytes.fromhex("0102030405060708090a0b0c"),
         {"isCanceled": False, "name": "Launch (moved)", "description": "Now at 4pm",
          "startTime": 1796151600, "endTime": 1796155200, "extraGuestsAllowed": True,
          "isScheduleCall": False, "hasReminder": True, "reminderOffsetSec": 900}),
    ]
    for name, secret, msg_id, creator, sender, iv, card in edits:
        vectors.append(vector(name, "Event Edit", secret, msg_id, creator, sender, iv,
                              event_message(card), card))

    json.dump(vectors, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
