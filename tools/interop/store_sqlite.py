"""Reads and writes a waevent store with Python's own sqlite3 module (a separate SQLite
build, usually older than the one bundled by rusqlite), to check that the file is an
ordinary, valid SQLite database in both directions.

stdin: JSON {"path": ..., "action": "inspect" | "write"}
stdout: JSON
"""
import json
import os
import sqlite3
import stat
import sys

req = json.load(sys.stdin)
path = req["path"]
conn = sqlite3.connect(path, timeout=10)
conn.execute("PRAGMA foreign_keys = ON")

if req["action"] == "inspect":
    out = {
        "sqlite_version": sqlite3.sqlite_version,
        "mode": oct(stat.S_IMODE(os.stat(path).st_mode)),
        "integrity": [r[0] for r in conn.execute("PRAGMA integrity_check")],
        "foreign_key_violations": len(list(conn.execute("PRAGMA foreign_key_check"))),
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
        "application_id": conn.execute("PRAGMA application_id").fetchone()[0],
        "tables": {},
    }
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for name in names:
        out["tables"][name] = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    out["strict"] = sorted(
        r[0] for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        if r[1].rstrip().upper().endswith("STRICT") or "STRICT," in r[1].upper())
    out["lid_mapping"] = sorted(list(r) for r in conn.execute("SELECT lid_user, pn_user FROM lid_mapping"))
    out["rsvp"] = sorted(list(r) for r in conn.execute(
        "SELECT chat_jid, event_id, voter_jid, response, extra_guests, timestamp_ms FROM rsvp"))
    row = conn.execute(
        "SELECT pn_jid, lid_jid, registration_id, length(identity_private), length(adv_secret), "
        "platform, push_name, login_counter, next_prekey_id FROM device").fetchone()
    out["device"] = list(row) if row else None
    sent = conn.execute(
        "SELECT chat_jid, message_id, length(stanza), state FROM sent_message ORDER BY message_id").fetchall()
    out["sent_message"] = [list(r) for r in sent]
    out["retries"] = [list(r) for r in conn.execute(
        "SELECT message_id, device_jid, count FROM sent_message_retry ORDER BY device_jid")]
    print(json.dumps(out))
elif req["action"] == "write":
    with conn:
        conn.execute("INSERT INTO lid_mapping (lid_user, pn_user) VALUES ('99005', '15550005')")
        conn.execute(
            "INSERT INTO event_card (chat_jid, message_id, creator_jid, from_me, card, timestamp_ms) "
            "VALUES ('120363001@g.us', 'PYEVENT', '99005@lid', 0, ?, 1700000000123)", (b"\x1a\x04Meet",))
        conn.execute(
            "INSERT INTO rsvp (chat_jid, event_id, voter_jid, response, extra_guests, timestamp_ms) "
            "VALUES ('120363001@g.us', 'PYEVENT', '99001@lid', 3, 2, 1700000000999)")
        conn.execute(
            "INSERT INTO webhook_outbox (id, instance, payload, attempts, next_attempt_at_ms, created_at_ms, last_error) "
            "VALUES ('py-1', 'main', ?, 4, 10, 5, 'HTTP 503')", (b'{"from":"python"}',))
        conn.execute(
            "INSERT INTO sent_message_retry (chat_jid, message_id, device_jid, count) "
            "VALUES ('120363001@g.us', '3EB0A1', '99009:4@lid', 3)")
        # A damaged row: an identity key of 3 bytes.
        conn.execute(
            "INSERT INTO identity (name, device, public_key) VALUES ('broken', 1, x'010203')")
    # The schema refuses what it must refuse, in this SQLite build too.
    refused = []
    for stmt in [
        "INSERT INTO lid_mapping (lid_user, pn_user) VALUES ('99006', '15550005')",  # pn UNIQUE
        "INSERT INTO prekey (id, record, uploaded) VALUES (1000, x'00', 'yes')",  # STRICT
        "INSERT INTO sent_message_retry VALUES ('120363001@g.us', 'nope', 'x@lid', 1)",  # FK
        "INSERT INTO device (singleton, noise_public, noise_private, identity_public, identity_private,"
        " registration_id, signed_prekey_id, adv_secret, platform, push_name, business_name,"
        " login_counter, next_prekey_id, server_time_offset_ms)"
        " VALUES (2, x'', x'', x'', x'', 1, 1, x'', '', '', '', 0, 1, 0)",  # singleton
    ]:
        try:
            with conn:
                conn.execute(stmt)
            refused.append(False)
        except sqlite3.Error:
            refused.append(True)
    print(json.dumps({"written": True, "refused": refused}))
else:
    sys.exit("unknown action")
