//! The send path's IQs and notifications against an independent implementation:
//! Baileys 7's WABinary codec and WAProto (npm `baileys@7.0.0-rc14`), driven by
//! `tools/interop/send_iq.js`.
//!
//! * waevent's bytes → Baileys: the group-info, usync and key-fetch requests waevent
//!   encodes decode in Baileys to exactly the nodes Baileys' own code builds for them
//!   (stanza id and usync sid aside);
//! * Baileys' bytes → waevent: a group-info result, a usync result with a WAProto
//!   signed key-index list (revoked, valid, newer and hosted devices), a key-bundle
//!   result with a refused device, a `devices` and a `w:gp2` notification and a retry
//!   receipt with `<keys>`, encoded by Baileys, parse in waevent to the expected values.

mod common;

use rand::SeedableRng;
use serde_json::{Value, json};
use waevent::binary::{marshal, unmarshal};
use waevent::client::fanout_notifications::{
    DeviceChangeKind, GroupChangeKind, parse_device_notification, parse_group_notification,
};
use waevent::client::group_info::{group_info_iq, parse_group_info};
use waevent::client::key_bundles::{BundleAnswer, bundle_fetch_iq, parse_bundles};
use waevent::client::retry_receipt::parse_retry_receipt;
use waevent::client::usync::{device_list_iq, fanout_devices, parse_device_lists};
use waevent::jid::Jid;
use waevent::signal::identity::{
    LocalIdentity, PreKeyBundle, SignedPreKeyRecord, generate_prekeys,
};
use waevent::store::{AddressingMode, ParticipantRole};

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

#[test]
fn send_path_iqs_match_baileys_both_ways() {
    let group = jid("120363012345678901@g.us");
    let users = [
        jid("5511999990002@s.whatsapp.net"),
        jid("222222222222222@lid"),
    ];
    let devices = [
        jid("222222222222222:3@lid"),
        jid("5511999990002@s.whatsapp.net"),
    ];
    let mut gi = group_info_iq(&group);
    gi.attrs.set("id", "a.b-1");
    let mut us = device_list_iq(&users, "sid-1");
    us.attrs.set("id", "a.b-2");
    let mut kf = bundle_fetch_iq(&devices);
    kf.attrs.set("id", "a.b-3");
    let hex_of = |n| hex::encode(marshal(n).unwrap());

    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let identity = LocalIdentity::generate(&mut rng);
    let spk = SignedPreKeyRecord::generate(&identity.key_pair, 0x00_0A_0B, 0, &mut rng);
    let opk = generate_prekeys(0x01_02_03, 1, &mut rng).remove(0);
    let input = json!({
        "requests": {
            "group_info": {"hex": hex_of(&gi), "params": {"group": group.to_string()}},
            "usync": {"hex": hex_of(&us), "params": {"users": users.iter().map(Jid::to_string).collect::<Vec<_>>()}},
            "key_fetch": {"hex": hex_of(&kf), "params": {"devices": devices.iter().map(Jid::to_string).collect::<Vec<_>>()}},
        },
        "keys": {
            "identity": hex::encode(identity.key_pair.public.as_bytes()),
            "spk_id": spk.id,
            "spk": hex::encode(spk.key_pair.public.as_bytes()),
            "spk_sig": hex::encode(spk.signature),
            "opk_id": opk.id,
            "opk": hex::encode(opk.key_pair.public.as_bytes()),
            "registration": identity.registration_id,
        },
    });
    let out: Value = serde_json::from_slice(&common::run_node(
        "send_iq.js",
        input.to_string().as_bytes(),
    ))
    .unwrap();

    // Our requests, as Baileys reads them, are Baileys' own requests.
    for name in ["group_info", "usync", "key_fetch"] {
        let r = &out["requests"][name];
        assert_eq!(
            r["equal"], true,
            "{name}: Baileys decoded {}\nBaileys builds {}",
            r["decoded"], r["expected"]
        );
    }

    // Baileys-encoded answers parse in waevent.
    let answer = |name: &str| {
        let bytes = hex::decode(out["answers"][name].as_str().unwrap()).unwrap();
        unmarshal(&bytes).unwrap()
    };
    let info = parse_group_info(&group, &answer("group_info"), 1).unwrap();
    assert_eq!(info.metadata.addressing_mode, AddressingMode::Lid);
    assert_eq!(info.metadata.subject.as_deref(), Some("Team"));
    assert_eq!(
        info.metadata
            .participants
            .iter()
            .map(|p| (p.jid.to_string(), p.role))
            .collect::<Vec<_>>(),
        [
            (
                "111111111111111@lid".to_owned(),
                ParticipantRole::SuperAdmin
            ),
            ("222222222222222@lid".to_owned(), ParticipantRole::Member)
        ]
    );
    assert_eq!(info.mappings.len(), 2);
    assert_eq!(info.mappings[1].pn(), jid("5511999990002@s.whatsapp.net"));

    let lists = parse_device_lists(&answer("usync"), 1).unwrap();
    assert_eq!(lists.lists.len(), 1);
    let l = &lists.lists[0];
    assert_eq!(l.user, jid("5511999990002@s.whatsapp.net"));
    // current 5, valid {3, 5}: 4 is revoked, 6 is newer, 99 (key 5) is hosted.
    assert_eq!(
        l.devices.iter().map(|d| d.id).collect::<Vec<_>>(),
        [0, 3, 6, 99]
    );
    assert_eq!(l.hash.as_deref(), Some("2:AbCdEfGh"));
    assert_eq!(
        fanout_devices(l, true),
        [
            jid("5511999990002@s.whatsapp.net"),
            jid("5511999990002:3@s.whatsapp.net"),
            jid("5511999990002:6@s.whatsapp.net")
        ]
    );
    assert_eq!(lists.mappings[0].lid(), jid("222222222222222@lid"));

    let bundles = parse_bundles(&answer("bundles")).unwrap();
    assert_eq!(bundles.len(), 2);
    let BundleAnswer::Bundle(b) = &bundles[0].1 else {
        panic!("{:?}", bundles[0])
    };
    assert_eq!(
        b.bundle,
        PreKeyBundle::from_local(&identity, 3, &spk, Some(&opk))
    );
    b.bundle.verify().unwrap();
    assert!(matches!(
        bundles[1].1,
        BundleAnswer::Refused { code: 406, .. }
    ));

    let dn = parse_device_notification(&answer("devices_notification")).unwrap();
    assert_eq!(dn.user, jid("5511999990002@s.whatsapp.net"));
    assert_eq!(dn.lid, Some(jid("222222222222222@lid")));
    assert_eq!(dn.changes[0].kind, DeviceChangeKind::Remove);
    assert_eq!(
        dn.changes[0].device,
        Some(jid("5511999990002:4@s.whatsapp.net"))
    );
    assert_eq!(dn.changes[0].device_lid, Some(jid("222222222222222:4@lid")));

    let gn = parse_group_notification(&answer("group_notification")).unwrap();
    assert_eq!(gn.group, group);
    assert_eq!(gn.actor, Some(jid("111111111111111:2@lid")));
    assert_eq!(gn.changes[0].kind, GroupChangeKind::Remove);
    assert!(gn.needs_rotation());

    let rr = parse_retry_receipt(&answer("retry_receipt")).unwrap();
    assert_eq!(rr.chat, group);
    assert_eq!(rr.device, jid("222222222222222:3@lid"));
    assert_eq!((rr.count, rr.reason), (2, Some(0)));
    let keys = rr.keys.unwrap();
    assert_eq!(
        keys.bundle,
        PreKeyBundle::from_local(&identity, 3, &spk, Some(&opk))
    );
}
