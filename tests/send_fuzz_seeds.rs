//! The seeds of the `send_answers` fuzz target are real server answers and
//! notifications of the send path (group info, usync with a signed key-index list, key
//! bundles, `devices` and `w:gp2` notifications, a retry receipt with keys, an error
//! ack), built with the crate's encoder, plus corrupt ones. This test regenerates them
//! deterministically, checks how many parsers accept each, and checks the committed
//! files under `fuzz/corpus/send_answers/` are exactly these bytes. Rewrite them with
//! `WAEVENT_WRITE_FUZZ_SEEDS=1 cargo test --test send_fuzz_seeds`.

use std::path::Path;

use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::binary::{Node, marshal};
use waevent::client::prekeys::{prekey_node, signed_prekey_node};
use waevent::client::send_fuzz::{FUZZ_GROUP_ID, send_answers};
use waevent::jid::Jid;
use waevent::proto::adv::{AdvKeyIndexList, AdvSignedKeyIndexList};
use waevent::signal::identity::{LocalIdentity, SignedPreKeyRecord, generate_prekeys};

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

fn seeds() -> Vec<(&'static str, Vec<u8>, usize)> {
    let m = |n: &Node| marshal(n).unwrap();
    let group = Jid::group(FUZZ_GROUP_ID);
    let mut rng = StdRng::seed_from_u64(77);
    let identity = LocalIdentity::generate(&mut rng);
    let spk = SignedPreKeyRecord::generate(&identity.key_pair, 5, 0, &mut rng);
    let opk = generate_prekeys(9, 1, &mut rng).remove(0);
    let keys = vec![
        Node::new("type").with_bytes(vec![5]),
        Node::new("identity").with_bytes(identity.key_pair.public.as_bytes().to_vec()),
        signed_prekey_node(&spk).unwrap(),
        prekey_node(opk.id, &opk.key_pair.public).unwrap(),
    ];
    let registration =
        || Node::new("registration").with_bytes(identity.registration_id.to_be_bytes().to_vec());

    let group_info = Node::new("iq")
        .attr("from", group.clone())
        .attr("id", "1")
        .attr("type", "result")
        .child(
            Node::new("group")
                .attr("id", FUZZ_GROUP_ID)
                .attr("subject", "Team")
                .attr("addressing_mode", "lid")
                .child(
                    Node::new("participant")
                        .attr("jid", jid("111111111111111@lid"))
                        .attr("type", "superadmin")
                        .attr("phone_number", jid("5511999990001@s.whatsapp.net")),
                )
                .child(Node::new("participant").attr("jid", jid("222222222222222@lid"))),
        );
    let bad_group = Node::new("iq").attr("type", "result").child(
        Node::new("group")
            .attr("id", FUZZ_GROUP_ID)
            .attr("addressing_mode", "lid")
            .child(Node::new("participant").attr("jid", jid("5511999990001@s.whatsapp.net"))),
    );
    let key_index = AdvSignedKeyIndexList {
        details: Some(
            AdvKeyIndexList {
                raw_id: Some(1),
                timestamp: Some(1_700_000_000),
                current_index: Some(3),
                valid_indexes: vec![2, 3],
                account_type: None,
            }
            .encode_to_vec(),
        ),
        account_signature: Some(vec![1; 64]),
        account_signature_key: None,
    }
    .encode_to_vec();
    let usync = Node::new("iq").attr("type", "result").child(
        Node::new("usync").child(
            Node::new("list").child(
                Node::new("user")
                    .attr("jid", jid("5511999990002@s.whatsapp.net"))
                    .child(
                        Node::new("devices")
                            .child(
                                Node::new("device-list")
                                    .attr("hash", "2:AbCdEfGh")
                                    .child(Node::new("device").attr("id", "0"))
                                    .child(
                                        Node::new("device").attr("id", "2").attr("key-index", "2"),
                                    )
                                    .child(
                                        Node::new("device").attr("id", "5").attr("key-index", "1"),
                                    )
                                    .child(
                                        Node::new("device")
                                            .attr("id", "99")
                                            .attr("key-index", "3")
                                            .attr("is_hosted", "true"),
                                    ),
                            )
                            .child(
                                Node::new("key-index-list")
                                    .attr("ts", "1700000000")
                                    .with_bytes(key_index),
                            ),
                    )
                    .child(Node::new("lid").attr("val", jid("222222222222222@lid"))),
            ),
        ),
    );
    let bundles = Node::new("iq").attr("type", "result").child(
        Node::new("list")
            .child({
                let mut c = vec![registration()];
                c.extend(keys.clone());
                Node::new("user")
                    .attr("jid", jid("222222222222222:2@lid"))
                    .with_children(c)
            })
            .child(
                Node::new("user")
                    .attr("jid", jid("222222222222222:5@lid"))
                    .child(
                        Node::new("error")
                            .attr("code", "406")
                            .attr("text", "not-acceptable"),
                    ),
            ),
    );
    let devices = Node::new("notification")
        .attr("from", jid("5511999990002@s.whatsapp.net"))
        .attr("lid", jid("222222222222222@lid"))
        .attr("type", "devices")
        .attr("id", "4")
        .child(
            Node::new("add").attr("device_hash", "2:AAAAAAAA").child(
                Node::new("device")
                    .attr("jid", jid("5511999990002:7@s.whatsapp.net"))
                    .attr("key-index", "4"),
            ),
        );
    let gp2 = Node::new("notification")
        .attr("from", group.clone())
        .attr("participant", jid("111111111111111:2@lid"))
        .attr("type", "w:gp2")
        .attr("id", "5")
        .child(
            Node::new("remove").child(
                Node::new("participant")
                    .attr("jid", jid("222222222222222@lid"))
                    .attr("phone_number", jid("5511999990002@s.whatsapp.net")),
            ),
        );
    let retry = Node::new("receipt")
        .attr("from", group.clone())
        .attr("participant", jid("222222222222222:2@lid"))
        .attr("id", "3EB0ABCDEF0123456789")
        .attr("type", "retry")
        .child(
            Node::new("retry")
                .attr("v", "1")
                .attr("id", "3EB0ABCDEF0123456789")
                .attr("t", "1700000000")
                .attr("count", "2"),
        )
        .child(registration())
        .child(Node::new("keys").with_children(keys));
    let ack = Node::new("ack")
        .attr("class", "message")
        .attr("id", "3EB0ABCDEF0123456789")
        .attr("from", group)
        .attr("t", "1700000000")
        .attr("error", "409")
        .attr("phash", "2:AbCdEfGh");
    let mut truncated = m(&usync);
    truncated.truncate(truncated.len() / 2);
    vec![
        ("group_info", m(&group_info), 1),
        ("usync", m(&usync), 1),
        ("bundles", m(&bundles), 1),
        ("devices_notification", m(&devices), 1),
        ("group_notification", m(&gp2), 1),
        ("retry_receipt", m(&retry), 1),
        ("message_ack_409", m(&ack), 0),
        ("corrupt_group_pn_in_lid", m(&bad_group), 0),
        ("corrupt_usync_truncated", truncated, 0),
        ("corrupt_garbage", vec![0x00, 0xF8, 0x02, 0x13], 0),
    ]
}

#[test]
fn send_answer_seeds_are_real_and_committed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/send_answers");
    let write = std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes, accepted) in seeds() {
        assert_eq!(send_answers(&bytes), accepted, "{name}");
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (regenerate the seeds)", path.display()));
            assert_eq!(committed, bytes, "{name} differs from the committed seed");
        }
    }
}
