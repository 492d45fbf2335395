//! Every E2E message type waevent produces, checked against Baileys 7's `WAProto`
//! (WhatsApp's schema compiled by protobufjs, npm `baileys@7.0.0-rc14`) in both
//! directions, via `tools/interop/e2e_proto.js`:
//!
//! * waevent's bytes → WAProto decodes them to exactly the expected object (every
//!   field name and value, written by hand below in WAProto's naming), and
//!   WAProto's re-encoding is byte-identical to waevent's;
//! * the same object encoded by WAProto → waevent decodes it to exactly the Rust
//!   value it built.
//!
//! And the RSVP / edit cryptography against `tools/interop/e2e_msgsecret.js`
//! (node's own `crypto` HKDF and AES-256-GCM): node decrypts waevent's RSVPs and
//! edits, waevent decrypts node's.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use waevent::event::{
    EventCard, EventLocation, EventRef, MessageSecret, Parties, Rsvp, RsvpResponse,
    decrypt_event_edit, decrypt_rsvp, edit_message, rsvp_message,
};
use waevent::jid::Jid;
use waevent::proto::e2e;
use waevent::proto::e2e::protocol_message::Type as ProtocolType;

const GROUP: &str = "120363019502650977@g.us";
const CREATOR: &str = "5511999990000@s.whatsapp.net";
const EVENT_ID: &str = "3EB0C4B7A1D2E3F40516";

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn full_card() -> EventCard {
    EventCard::builder()
        .name("Quarterly planning")
        .description("Bring the Q3 numbers")
        .start_at("2026-12-01T15:00:00-03:00")
        .end_at("2026-12-01T16:30:00-03:00")
        .location(EventLocation {
            name: Some("HQ, room 4".into()),
            address: Some("Av. Paulista 1000, São Paulo".into()),
            latitude: Some(-23.5614),
            longitude: Some(-46.6559),
        })
        .join_link("https://call.whatsapp.com/video/AbCdEf123456")
        .schedule_call(true)
        .reminder_offset_secs(900)
        .extra_guests_allowed(true)
        .canceled(false)
        .build()
        .unwrap()
}

fn full_card_object() -> Value {
    json!({
        "isCanceled": false,
        "name": "Quarterly planning",
        "description": "Bring the Q3 numbers",
        "location": {
            "degreesLatitude": -23.5614,
            "degreesLongitude": -46.6559,
            "name": "HQ, room 4",
            "address": "Av. Paulista 1000, São Paulo"
        },
        "joinLink": "https://call.whatsapp.com/video/AbCdEf123456",
        "startTime": "1796148000",
        "endTime": "1796153400",
        "extraGuestsAllowed": true,
        "isScheduleCall": true,
        "hasReminder": true,
        "reminderOffsetSec": "900"
    })
}

/// (name, waevent's message, the same message as WAProto's object).
fn cases() -> Vec<(&'static str, e2e::Message, Value)> {
    let mut rng = StdRng::seed_from_u64(42);
    let secret = MessageSecret::from_array(*b"0123456789abcdef0123456789ABCDEF");
    let secret_b64 = b64(secret.as_bytes());
    let mut out = Vec::new();

    // Event card with every field and its message secret.
    out.push((
        "event card (every field)",
        full_card().to_message_with_secret(&secret),
        json!({
            "messageContextInfo": {"messageSecret": secret_b64},
            "eventMessage": full_card_object()
        }),
    ));

    // Minimal card: only the required fields and the explicit flags.
    let minimal = EventCard::builder()
        .name("Team sync")
        .start_unix(1_796_148_000)
        .canceled(true)
        .build()
        .unwrap();
    out.push((
        "event card (minimal, canceled)",
        minimal.to_message_with_secret(&secret),
        json!({
            "messageContextInfo": {"messageSecret": secret_b64},
            "eventMessage": {
                "isCanceled": true,
                "name": "Team sync",
                "startTime": "1796148000",
                "extraGuestsAllowed": false,
                "isScheduleCall": false,
                "hasReminder": false
            }
        }),
    ));

    // RSVP.
    let ev = EventRef::new(
        Jid::parse(GROUP).unwrap(),
        EVENT_ID,
        Jid::parse(CREATOR).unwrap(),
    );
    let rsvp = Rsvp {
        response: RsvpResponse::Going,
        extra_guests: 2,
        timestamp_ms: 1_796_148_000_123,
    };
    let m = rsvp_message(
        &rsvp,
        &ev,
        &secret,
        &Jid::parse("5511988887777:3@s.whatsapp.net").unwrap(),
        &mut rng,
    )
    .unwrap();
    let enc = m.enc_event_response_message.clone().unwrap();
    out.push((
        "RSVP (encEventResponseMessage)",
        m,
        json!({
            "encEventResponseMessage": {
                "eventCreationMessageKey": {
                    "remoteJid": GROUP,
                    "fromMe": false,
                    "id": EVENT_ID,
                    "participant": CREATOR
                },
                "encPayload": b64(enc.enc_payload.as_ref().unwrap()),
                "encIv": b64(enc.enc_iv.as_ref().unwrap())
            }
        }),
    ));

    // EVENT_EDIT.
    let m = edit_message(
        &full_card().to_canceled(),
        &ev,
        &secret,
        &Jid::parse("5511999990000:7@s.whatsapp.net").unwrap(),
        &mut rng,
    )
    .unwrap();
    let sem = m.secret_encrypted_message.clone().unwrap();
    out.push((
        "event edit (secretEncryptedMessage EVENT_EDIT)",
        m,
        json!({
            "secretEncryptedMessage": {
                "targetMessageKey": {
                    "remoteJid": GROUP,
                    "fromMe": true,
                    "id": EVENT_ID,
                    "participant": CREATOR
                },
                "encPayload": b64(sem.enc_payload.as_ref().unwrap()),
                "encIv": b64(sem.enc_iv.as_ref().unwrap()),
                "secretEncType": "EVENT_EDIT"
            }
        }),
    ));

    // Sender-key distribution with device-list metadata (a group fan-out copy).
    let axolotl: Vec<u8> = (0u8..=140).collect();
    out.push((
        "SKDM + event + device list metadata",
        e2e::Message {
            sender_key_distribution_message: Some(e2e::SenderKeyDistributionMessage {
                group_id: Some(GROUP.into()),
                axolotl_sender_key_distribution_message: Some(axolotl.clone()),
            }),
            message_context_info: Some(e2e::MessageContextInfo {
                device_list_metadata: Some(e2e::DeviceListMetadata {
                    sender_key_hash: Some(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
                    sender_timestamp: Some(1_796_000_000),
                    sender_key_indexes: vec![0, 3, 300],
                    recipient_key_hash: Some(vec![0xAA; 10]),
                    recipient_timestamp: Some(1_795_000_000),
                    recipient_key_indexes: vec![7],
                }),
                device_list_metadata_version: Some(2),
                message_secret: Some(secret.as_bytes().to_vec()),
                padding_bytes: Some(vec![0, 0, 0]),
                message_add_on_duration_in_secs: Some(86_400),
                reporting_token_version: Some(2),
                message_add_on_expiry_type: Some(
                    e2e::message_context_info::MessageAddonExpiryType::DependentOnParent as i32,
                ),
            }),
            event_message: Some(Box::new(full_card().to_event_message())),
            ..Default::default()
        },
        json!({
            "senderKeyDistributionMessage": {
                "groupId": GROUP,
                "axolotlSenderKeyDistributionMessage": b64(&axolotl)
            },
            "messageContextInfo": {
                "deviceListMetadata": {
                    "senderKeyHash": b64(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
                    "senderTimestamp": "1796000000",
                    "senderKeyIndexes": [0, 3, 300],
                    "recipientKeyHash": b64(&[0xAA; 10]),
                    "recipientTimestamp": "1795000000",
                    "recipientKeyIndexes": [7]
                },
                "deviceListMetadataVersion": 2,
                "messageSecret": secret_b64,
                "paddingBytes": "AAAA",
                "messageAddOnDurationInSecs": 86400,
                "reportingTokenVersion": 2,
                "messageAddOnExpiryType": "DEPENDENT_ON_PARENT"
            },
            "eventMessage": full_card_object()
        }),
    ));

    // What the sender's own other devices receive.
    out.push((
        "deviceSentMessage",
        e2e::Message {
            device_sent_message: Some(Box::new(e2e::DeviceSentMessage {
                destination_jid: Some(GROUP.into()),
                message: Some(Box::new(full_card().to_message_with_secret(&secret))),
                phash: Some("2:abcDEF12".into()),
            })),
            ..Default::default()
        },
        json!({
            "deviceSentMessage": {
                "destinationJid": GROUP,
                "message": {
                    "messageContextInfo": {"messageSecret": secret_b64},
                    "eventMessage": full_card_object()
                },
                "phash": "2:abcDEF12"
            }
        }),
    ));

    // Text with reply and mention context, in a disappearing chat.
    out.push((
        "extendedTextMessage with contextInfo",
        e2e::Message {
            extended_text_message: Some(Box::new(e2e::ExtendedTextMessage {
                text: Some("@5511988887777 see the card above".into()),
                context_info: Some(Box::new(e2e::ContextInfo {
                    stanza_id: Some(EVENT_ID.into()),
                    participant: Some(CREATOR.into()),
                    quoted_message: Some(Box::new(e2e::Message {
                        conversation: Some("quoted".into()),
                        ..Default::default()
                    })),
                    remote_jid: Some(GROUP.into()),
                    mentioned_jid: vec![
                        "5511988887777@s.whatsapp.net".into(),
                        "100000000000001@lid".into(),
                    ],
                    expiration: Some(604_800),
                    ephemeral_setting_timestamp: Some(1_790_000_000),
                })),
            })),
            ..Default::default()
        },
        json!({
            "extendedTextMessage": {
                "text": "@5511988887777 see the card above",
                "contextInfo": {
                    "stanzaId": EVENT_ID,
                    "participant": CREATOR,
                    "quotedMessage": {"conversation": "quoted"},
                    "remoteJid": GROUP,
                    "mentionedJid": ["5511988887777@s.whatsapp.net", "100000000000001@lid"],
                    "expiration": 604800,
                    "ephemeralSettingTimestamp": "1790000000"
                }
            }
        }),
    ));

    // Message edit (protocolMessage inside editedMessage) and a revoke.
    out.push((
        "editedMessage { protocolMessage MESSAGE_EDIT }",
        e2e::Message {
            edited_message: Some(Box::new(e2e::FutureProofMessage {
                message: Some(Box::new(e2e::Message {
                    protocol_message: Some(Box::new(e2e::ProtocolMessage {
                        key: Some(e2e::MessageKey {
                            remote_jid: Some(GROUP.into()),
                            from_me: Some(true),
                            id: Some("3EB0000000000000AAAA".into()),
                            participant: None,
                        }),
                        r#type: Some(ProtocolType::MessageEdit as i32),
                        edited_message: Some(Box::new(e2e::Message {
                            conversation: Some("fixed typo".into()),
                            ..Default::default()
                        })),
                        timestamp_ms: Some(1_796_148_000_456),
                        ..Default::default()
                    })),
                    ..Default::default()
                })),
            })),
            ..Default::default()
        },
        json!({
            "editedMessage": {
                "message": {
                    "protocolMessage": {
                        "key": {"remoteJid": GROUP, "fromMe": true, "id": "3EB0000000000000AAAA"},
                        "type": "MESSAGE_EDIT",
                        "editedMessage": {"conversation": "fixed typo"},
                        "timestampMs": "1796148000456"
                    }
                }
            }
        }),
    ));
    out.push((
        "protocolMessage REVOKE and ephemeral setting",
        e2e::Message {
            protocol_message: Some(Box::new(e2e::ProtocolMessage {
                key: Some(e2e::MessageKey {
                    remote_jid: Some(GROUP.into()),
                    from_me: Some(false),
                    id: Some(EVENT_ID.into()),
                    participant: Some(CREATOR.into()),
                }),
                r#type: Some(ProtocolType::Revoke as i32),
                ephemeral_expiration: Some(86_400),
                ephemeral_setting_timestamp: Some(1_790_000_001),
                ..Default::default()
            })),
            ..Default::default()
        },
        json!({
            "protocolMessage": {
                "key": {"remoteJid": GROUP, "fromMe": false, "id": EVENT_ID, "participant": CREATOR},
                "type": "REVOKE",
                "ephemeralExpiration": 86400,
                "ephemeralSettingTimestamp": "1790000001"
            }
        }),
    ));

    // Event card inside a disappearing-chat wrapper.
    out.push((
        "ephemeralMessage { event card }",
        e2e::Message {
            ephemeral_message: Some(Box::new(e2e::FutureProofMessage {
                message: Some(Box::new(minimal.to_message_with_secret(&secret))),
            })),
            ..Default::default()
        },
        json!({
            "ephemeralMessage": {
                "message": {
                    "messageContextInfo": {"messageSecret": secret_b64},
                    "eventMessage": {
                        "isCanceled": true,
                        "name": "Team sync",
                        "startTime": "1796148000",
                        "extraGuestsAllowed": false,
                        "isScheduleCall": false,
                        "hasReminder": false
                    }
                }
            }
        }),
    ));

    out
}

#[test]
fn waproto_decodes_waevent_messages_and_waevent_decodes_waproto_messages() {
    let cases = cases();
    let decode: Vec<Value> = cases
        .iter()
        .map(|(name, m, _)| json!({"name": name, "b64": b64(&m.encode_to_vec())}))
        .collect();
    let encode: Vec<Value> = cases
        .iter()
        .map(|(name, _, obj)| json!({"name": name, "object": obj}))
        .collect();
    let input = json!({"decode": decode, "encode": encode});
    let out: Value = serde_json::from_slice(&common::run_node(
        "e2e_proto.js",
        input.to_string().as_bytes(),
    ))
    .unwrap();

    for (name, msg, expected) in &cases {
        let ours = msg.encode_to_vec();
        // waevent → WAProto.
        let got = &out["decoded"][name];
        assert_eq!(
            &got["object"], expected,
            "{name}: WAProto's view of waevent's bytes"
        );
        assert_eq!(
            got["reencoded"].as_str().unwrap(),
            b64(&ours),
            "{name}: WAProto re-encodes waevent's bytes identically"
        );
        // WAProto → waevent.
        let enc = &out["encoded"][name];
        assert_eq!(
            &enc["understood"], expected,
            "{name}: WAProto understood every field of the object"
        );
        let theirs = B64.decode(enc["b64"].as_str().unwrap()).unwrap();
        let decoded = e2e::Message::decode(theirs.as_slice()).unwrap();
        assert_eq!(&decoded, msg, "{name}: waevent's view of WAProto's bytes");
        assert_eq!(theirs, ours, "{name}: same bytes both ways");
    }

    // Event extraction on WAProto-encoded messages.
    let card_bytes = B64
        .decode(
            out["encoded"]["event card (every field)"]["b64"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let card_msg = e2e::Message::decode(card_bytes.as_slice()).unwrap();
    assert_eq!(EventCard::from_message(&card_msg).unwrap(), full_card());
    let wrapped = B64
        .decode(out["encoded"]["deviceSentMessage"]["b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        EventCard::from_message(&e2e::Message::decode(wrapped.as_slice()).unwrap()).unwrap(),
        full_card()
    );
}

struct Who {
    creator: Jid,
    sender: Jid,
}

fn msgsecret_input(uc: &str, name: &str, secret: &MessageSecret, who: &Who) -> Value {
    json!({
        "name": name,
        "use_case": uc,
        "secret": b64(secret.as_bytes()),
        "message_id": EVENT_ID,
        "creator": who.creator.to_non_ad().to_string(),
        "sender": who.sender.to_non_ad().to_string(),
    })
}

#[test]
fn node_crypto_and_waevent_open_each_others_rsvps_and_edits() {
    let mut rng = StdRng::seed_from_u64(7);
    let secret = MessageSecret::generate(&mut rng);
    let pairs = [
        (
            "pn",
            Who {
                creator: Jid::parse("5511999990000:2@s.whatsapp.net").unwrap(),
                sender: Jid::parse("5511988887777:14@s.whatsapp.net").unwrap(),
            },
        ),
        (
            "lid",
            Who {
                creator: Jid::parse("100000000000001:3@lid").unwrap(),
                sender: Jid::parse("200000000000002@lid").unwrap(),
            },
        ),
    ];
    let rsvp = Rsvp {
        response: RsvpResponse::NotGoing,
        extra_guests: 0,
        timestamp_ms: 1_796_148_001_000,
    };
    let edited = full_card().to_canceled();

    let mut decrypt = Vec::new();
    let mut encrypt = Vec::new();
    for (tag, who) in &pairs {
        let ev = EventRef::new(Jid::parse(GROUP).unwrap(), EVENT_ID, who.creator.clone());
        // Ours, for node to decrypt.
        let m = rsvp_message(&rsvp, &ev, &secret, &who.sender, &mut rng).unwrap();
        let enc = m.enc_event_response_message.unwrap();
        let mut d = msgsecret_input("Event Response", &format!("rsvp {tag}"), &secret, who);
        d["iv"] = json!(b64(enc.enc_iv.as_ref().unwrap()));
        d["payload"] = json!(b64(enc.enc_payload.as_ref().unwrap()));
        decrypt.push(d);
        let m = edit_message(&edited, &ev, &secret, &who.creator, &mut rng).unwrap();
        let sem = m.secret_encrypted_message.unwrap();
        let edit_who = Who {
            creator: who.creator.clone(),
            sender: who.creator.clone(),
        };
        let mut d = msgsecret_input("Event Edit", &format!("edit {tag}"), &secret, &edit_who);
        d["iv"] = json!(b64(sem.enc_iv.as_ref().unwrap()));
        d["payload"] = json!(b64(sem.enc_payload.as_ref().unwrap()));
        decrypt.push(d);
        // Theirs, for us to decrypt.
        let mut e = msgsecret_input("Event Response", &format!("rsvp {tag}"), &secret, who);
        e["object"] =
            json!({"response": "MAYBE", "timestampMs": "1796148002000", "extraGuestCount": 3});
        encrypt.push(e);
        let mut e = msgsecret_input("Event Edit", &format!("edit {tag}"), &secret, &edit_who);
        e["object"] = json!({"eventMessage": full_card_object()});
        encrypt.push(e);
    }
    let input = json!({"decrypt": decrypt, "encrypt": encrypt});
    let out: Value = serde_json::from_slice(&common::run_node(
        "e2e_msgsecret.js",
        input.to_string().as_bytes(),
    ))
    .unwrap();

    for (tag, who) in &pairs {
        // node opened ours.
        assert_eq!(
            out["decrypted"][format!("rsvp {tag}")],
            json!({"response": "NOT_GOING", "timestampMs": "1796148001000", "extraGuestCount": 0}),
            "{tag}"
        );
        let mut canceled = full_card_object();
        canceled["isCanceled"] = json!(true);
        assert_eq!(
            out["decrypted"][format!("edit {tag}")],
            json!({"eventMessage": canceled}),
            "{tag}"
        );

        // We open node's: with a wrong-namespace candidate first, as a receiver would.
        let r = &out["encrypted"][format!("rsvp {tag}")];
        let enc = e2e::EncEventResponseMessage {
            event_creation_message_key: Some(e2e::MessageKey {
                remote_jid: Some(GROUP.into()),
                from_me: Some(false),
                id: Some(EVENT_ID.into()),
                participant: Some(who.creator.to_non_ad().to_string()),
            }),
            enc_payload: Some(B64.decode(r["payload"].as_str().unwrap()).unwrap()),
            enc_iv: Some(B64.decode(r["iv"].as_str().unwrap()).unwrap()),
        };
        let cands = Parties::alternates(
            &[Jid::pn_user("5500000000000"), who.creator.clone()],
            std::slice::from_ref(&who.sender),
        );
        let got = decrypt_rsvp(&enc, &secret, &cands).unwrap();
        assert_eq!(
            got.value,
            Rsvp {
                response: RsvpResponse::Maybe,
                extra_guests: 3,
                timestamp_ms: 1_796_148_002_000
            }
        );
        assert_eq!(got.parties, cands[1]);

        let e = &out["encrypted"][format!("edit {tag}")];
        let sem = e2e::SecretEncryptedMessage {
            target_message_key: enc.event_creation_message_key.clone(),
            enc_payload: Some(B64.decode(e["payload"].as_str().unwrap()).unwrap()),
            enc_iv: Some(B64.decode(e["iv"].as_str().unwrap()).unwrap()),
            secret_enc_type: Some(1),
            remote_key_id: None,
        };
        let cands = [Parties::new(who.creator.clone(), who.creator.clone())];
        assert_eq!(
            decrypt_event_edit(&sem, &secret, &cands).unwrap().value,
            full_card()
        );
        // And a wrong secret is refused with a typed error.
        let other = MessageSecret::from_array([9; 32]);
        assert!(decrypt_event_edit(&sem, &other, &cands).is_err());
    }
}
