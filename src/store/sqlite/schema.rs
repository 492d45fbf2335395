//! The SQLite schema and its migrations.
//!
//! `PRAGMA user_version` holds the schema version and `PRAGMA application_id` marks the
//! file as a waevent store. `MIGRATIONS[n]` takes a database from version `n` to
//! `n + 1`; all pending steps and the version bump run in one transaction, so a crash
//! during a migration leaves the old version intact. Never edit a released step: add
//! a new one.
//!
//! Tables are `STRICT` (SQLite checks column types), keys that are looked up together
//! are composite primary keys, and child rows (device-list entries, group
//! participants, retry counts) cascade with their parent. Tables of small rows are
//! `WITHOUT ROWID`; those holding records of a kilobyte or more (sessions, sender
//! keys, cards, stanzas, responses) are ordinary rowid tables, which SQLite stores
//! large rows in far more efficiently.

/// `PRAGMA application_id` of a waevent store ("WAEV").
pub(super) const APPLICATION_ID: i64 = 0x5741_4556;

/// Migration steps; the schema version is `MIGRATIONS.len()`.
pub(super) const MIGRATIONS: &[&str] = &[V1, V2];

/// V2: the error code of a sent message the server refused (`state` 2), and who
/// asked for the send.
const V2: &str = r#"
ALTER TABLE sent_message ADD COLUMN refused_code INTEGER;
ALTER TABLE sent_message ADD COLUMN source TEXT;
"#;

const V1: &str = r#"
CREATE TABLE device (
    singleton             INTEGER PRIMARY KEY CHECK (singleton = 1),
    noise_public          BLOB    NOT NULL,
    noise_private         BLOB    NOT NULL,
    identity_public       BLOB    NOT NULL,
    identity_private      BLOB    NOT NULL,
    registration_id       INTEGER NOT NULL,
    signed_prekey_id      INTEGER NOT NULL,
    adv_secret            BLOB    NOT NULL,
    pn_jid                TEXT,
    lid_jid               TEXT,
    account               BLOB,
    platform              TEXT    NOT NULL,
    push_name             TEXT    NOT NULL,
    business_name         TEXT    NOT NULL,
    routing_info          BLOB,
    login_counter         INTEGER NOT NULL,
    next_prekey_id        INTEGER NOT NULL,
    server_time_offset_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE identity (
    name       TEXT    NOT NULL,
    device     INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    PRIMARY KEY (name, device)
) STRICT, WITHOUT ROWID;

CREATE TABLE prekey (
    id       INTEGER PRIMARY KEY,
    record   BLOB    NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX prekey_not_uploaded ON prekey (id) WHERE uploaded = 0;

CREATE TABLE signed_prekey (
    id     INTEGER PRIMARY KEY,
    record BLOB    NOT NULL
) STRICT;

CREATE TABLE session (
    name   TEXT    NOT NULL,
    device INTEGER NOT NULL,
    record BLOB    NOT NULL,
    PRIMARY KEY (name, device)
) STRICT;

CREATE TABLE sender_key (
    group_jid     TEXT    NOT NULL,
    sender_name   TEXT    NOT NULL,
    sender_device INTEGER NOT NULL,
    record        BLOB    NOT NULL,
    PRIMARY KEY (group_jid, sender_name, sender_device)
) STRICT;

CREATE TABLE lid_mapping (
    lid_user TEXT PRIMARY KEY,
    pn_user  TEXT NOT NULL UNIQUE
) STRICT, WITHOUT ROWID;

CREATE TABLE device_list (
    user_jid      TEXT PRIMARY KEY,
    hash          TEXT,
    key_index_ts  INTEGER,
    fetched_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE device_list_entry (
    user_jid  TEXT    NOT NULL REFERENCES device_list (user_jid) ON DELETE CASCADE,
    device    INTEGER NOT NULL,
    key_index INTEGER,
    hosted    INTEGER NOT NULL,
    PRIMARY KEY (user_jid, device)
) STRICT, WITHOUT ROWID;

CREATE TABLE group_metadata (
    group_jid       TEXT PRIMARY KEY,
    addressing_mode TEXT    NOT NULL,
    phash           TEXT,
    subject         TEXT,
    fetched_at_ms   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE group_participant (
    group_jid    TEXT    NOT NULL REFERENCES group_metadata (group_jid) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    jid          TEXT    NOT NULL,
    phone_number TEXT,
    lid          TEXT,
    role         INTEGER NOT NULL,
    PRIMARY KEY (group_jid, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE sender_key_memory (
    group_jid  TEXT NOT NULL,
    device_jid TEXT NOT NULL,
    PRIMARY KEY (group_jid, device_jid)
) STRICT, WITHOUT ROWID;

CREATE TABLE message_secret (
    chat_jid      TEXT    NOT NULL,
    sender_jid    TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    secret        BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (chat_jid, sender_jid, message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX message_secret_created ON message_secret (created_at_ms);

CREATE TABLE event_card (
    chat_jid     TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    creator_jid  TEXT    NOT NULL,
    from_me      INTEGER NOT NULL,
    card         BLOB    NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (chat_jid, message_id)
) STRICT;
CREATE INDEX event_card_by_id ON event_card (message_id);

CREATE TABLE rsvp (
    chat_jid     TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    voter_jid    TEXT    NOT NULL,
    response     INTEGER NOT NULL,
    extra_guests INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (chat_jid, event_id, voter_jid)
) STRICT, WITHOUT ROWID;

CREATE TABLE sent_message (
    chat_jid      TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    message       BLOB    NOT NULL,
    stanza        BLOB    NOT NULL,
    state         INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (chat_jid, message_id)
) STRICT;
CREATE INDEX sent_message_pending ON sent_message (created_at_ms, chat_jid, message_id)
    WHERE state = 0;
CREATE INDEX sent_message_created ON sent_message (created_at_ms);

CREATE TABLE sent_message_retry (
    chat_jid   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    device_jid TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (chat_jid, message_id, device_jid),
    FOREIGN KEY (chat_jid, message_id) REFERENCES sent_message (chat_jid, message_id)
        ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE decrypted_message (
    ciphertext_hash BLOB    PRIMARY KEY,
    plaintext       BLOB    NOT NULL,
    received_at_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX decrypted_message_received ON decrypted_message (received_at_ms);

CREATE TABLE webhook_outbox (
    id                 TEXT    PRIMARY KEY,
    instance           TEXT    NOT NULL,
    payload            BLOB    NOT NULL,
    attempts           INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    last_error         TEXT
) STRICT;
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at_ms, id);

CREATE TABLE idempotency_key (
    instance    TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    since_ms    INTEGER NOT NULL,
    status      INTEGER,
    body        BLOB,
    PRIMARY KEY (instance, key)
) STRICT;
CREATE INDEX idempotency_key_since ON idempotency_key (since_ms);
"#;

/// Every table, children before parents (the order `clear_all` deletes in).
pub(super) const TABLES: &[&str] = &[
    "device",
    "identity",
    "prekey",
    "signed_prekey",
    "session",
    "sender_key",
    "lid_mapping",
    "device_list_entry",
    "device_list",
    "group_participant",
    "group_metadata",
    "sender_key_memory",
    "message_secret",
    "event_card",
    "rsvp",
    "sent_message_retry",
    "sent_message",
    "decrypted_message",
    "webhook_outbox",
    "idempotency_key",
];
