//! Property test: random sequences of store operations (batches with every kind of
//! part, retries, webhook and idempotency calls, prunes, deletes, logouts, and some
//! invalid inputs) applied to `MemoryStore` and `SqliteStore` give the same result at
//! every step and the same state at the end.

#![cfg(feature = "sqlite")]

mod store_support;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_support::*;
use waevent::signal::ProtocolAddress;
use waevent::signal::store::SignalStateBatch;
use waevent::store::prelude::*;
use waevent::store::{
    DecryptedMessage, IdempotencyClaim, LidPnMapping, PruneBefore, RsvpStatus,
    SenderKeyMemoryUpdate, SentState, SentStateUpdate, StoreBatch, StoredResponse,
};

fn pick<T: Clone>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())].clone()
}

/// A user of `users`, as a device JID (device 0–2).
fn device_in<S: AsRef<str>>(rng: &mut StdRng, users: &[S]) -> String {
    let user = jid(users[rng.gen_range(0..users.len())].as_ref());
    user.with_device(rng.gen_range(0..3)).to_string()
}

fn random_batch(rng: &mut StdRng) -> StoreBatch {
    let mut b = StoreBatch::new();
    let addrs = addresses();
    let names = sender_key_names();
    let users: Vec<String> = PNS
        .iter()
        .chain(LIDS.iter())
        .map(|s| s.to_string())
        .collect();
    let chats: Vec<String> = GROUPS
        .iter()
        .map(|s| s.to_string())
        .chain(users.clone())
        .collect();
    let parts = rng.gen_range(1..6);
    for _ in 0..parts {
        match rng.gen_range(0..20) {
            0 => b.credentials = Some(creds(rng.gen_range(0..4))),
            1 => {
                let mut signal = SignalStateBatch::new();
                for _ in 0..rng.gen_range(0..4) {
                    signal
                        .sessions
                        .push((pick(rng, &addrs), vec![rng.r#gen::<u8>(); 3].into()));
                }
                for _ in 0..rng.gen_range(0..2) {
                    signal.removed_sessions.push(pick(rng, &addrs));
                }
                for _ in 0..rng.gen_range(0..3) {
                    signal
                        .sender_keys
                        .push((pick(rng, &names), vec![rng.r#gen::<u8>(); 2].into()));
                }
                for _ in 0..rng.gen_range(0..2) {
                    signal.removed_sender_keys.push(pick(rng, &names));
                }
                for _ in 0..rng.gen_range(0..3) {
                    signal
                        .identities
                        .push((pick(rng, &addrs), public(rng.gen_range(0..3))));
                }
                for _ in 0..rng.gen_range(0..2) {
                    signal.removed_prekeys.push(pick(rng, &PREKEY_IDS));
                }
                b.signal = signal;
            }
            2 => {
                for _ in 0..rng.gen_range(1..4) {
                    let id = if rng.gen_ratio(1, 15) {
                        1 << 24
                    } else {
                        pick(rng, &PREKEY_IDS)
                    };
                    b.prekeys.push((id, vec![rng.r#gen(); 2]));
                }
            }
            3 => b.uploaded_prekeys = vec![pick(rng, &PREKEY_IDS), pick(rng, &PREKEY_IDS)],
            4 => b
                .signed_prekeys
                .push((pick(rng, &SIGNED_IDS), vec![rng.r#gen()])),
            5 => b
                .mappings
                .push(LidPnMapping::new(&jid(pick(rng, &LIDS)), &jid(pick(rng, &PNS))).unwrap()),
            6 => {
                let user = device_in(rng, &users);
                b.device_lists.push(device_list(&user, rng.r#gen()));
            }
            7 => b.removed_device_lists.push(jid(&device_in(rng, &users))),
            8 => b.groups.push(group(pick(rng, &GROUPS), rng.r#gen())),
            9 => b.removed_groups.push(jid(pick(rng, &GROUPS))),
            10 => {
                let g = jid(pick(rng, &GROUPS));
                let devices: Vec<_> = (0..rng.gen_range(0..3))
                    .map(|_| jid(&device_in(rng, &LIDS)))
                    .collect();
                b.sender_key_memory.push(match rng.gen_range(0..3) {
                    0 => SenderKeyMemoryUpdate::MarkHas { group: g, devices },
                    1 => SenderKeyMemoryUpdate::Forget { group: g, devices },
                    _ => SenderKeyMemoryUpdate::ClearGroup { group: g },
                });
            }
            11 => {
                let sender = device_in(rng, &users);
                b.secrets.push(secret(
                    &pick(rng, &chats),
                    &sender,
                    pick(rng, &MESSAGE_IDS),
                    rng.r#gen(),
                ));
            }
            12 => {
                let creator = device_in(rng, &users);
                b.events.push(event(
                    &pick(rng, &chats),
                    pick(rng, &MESSAGE_IDS),
                    &creator,
                    rng.r#gen(),
                ));
            }
            13 => {
                // A small space, so that voters answer the same event repeatedly.
                let id = if rng.gen_ratio(1, 15) {
                    ""
                } else {
                    MESSAGE_IDS[0]
                };
                let status = pick(
                    rng,
                    &[
                        RsvpStatus::Unknown,
                        RsvpStatus::Going,
                        RsvpStatus::NotGoing,
                        RsvpStatus::Maybe,
                    ],
                );
                let voter = device_in(rng, &LIDS[..2]);
                b.rsvps
                    .push(rsvp(GROUPS[0], id, &voter, status, rng.gen_range(0..3)));
            }
            14 => {
                let state = if rng.r#gen() {
                    SentState::Pending
                } else {
                    SentState::Acked
                };
                b.sent_messages.push(sent(
                    &pick(rng, &chats),
                    pick(rng, &MESSAGE_IDS),
                    rng.gen_range(0..4),
                    state,
                ));
            }
            15 => b.sent_states.push(SentStateUpdate {
                chat: jid(&pick(rng, &chats)),
                message_id: pick(rng, &MESSAGE_IDS).to_string(),
                state: if rng.r#gen() {
                    SentState::Pending
                } else {
                    SentState::Acked
                },
            }),
            16 => b.decrypted.push(DecryptedMessage {
                ciphertext_hash: hash(rng.gen_range(0..4)),
                plaintext: vec![rng.r#gen(); 4],
                received_at_ms: rng.gen_range(0..100),
            }),
            _ => {
                let id = if rng.gen_ratio(1, 15) {
                    ""
                } else {
                    pick(rng, &WEBHOOK_IDS)
                };
                b.webhooks.push(webhook(id, rng.gen_range(0..4)));
            }
        }
    }
    b
}

/// One random operation on `store`; returns its result as text for comparison.
async fn random_op(store: &dyn Store, rng: &mut StdRng) -> String {
    let chats: Vec<String> = GROUPS
        .iter()
        .chain(LIDS.iter())
        .map(|s| s.to_string())
        .collect();
    let keys = ["k1", "k2", ""];
    let claim = |rng: &mut StdRng| IdempotencyClaim {
        instance: "main".into(),
        key: pick(rng, &keys).to_string(),
        fingerprint: pick(rng, &["a", "b"]).to_string(),
        now_ms: rng.gen_range(0..100),
    };
    match rng.gen_range(0..40) {
        0..=19 => format!(
            "{:?}",
            store.commit_batch(random_batch(rng)).await.map_err(kind)
        ),
        20..=22 => {
            let device = jid(&device_in(rng, &LIDS));
            format!(
                "{:?}",
                store
                    .bump_sent_retry(&jid(&pick(rng, &chats)), pick(rng, &MESSAGE_IDS), &device)
                    .await
                    .map_err(kind)
            )
        }
        23 => format!(
            "{:?}",
            store
                .reschedule_webhook(pick(rng, &WEBHOOK_IDS), rng.gen_range(0..500), "err")
                .await
                .map_err(kind)
        ),
        24 => format!(
            "{:?}",
            store
                .delete_webhook(pick(rng, &WEBHOOK_IDS))
                .await
                .map_err(kind)
        ),
        25 => {
            let ids = [pick(rng, &PREKEY_IDS), pick(rng, &PREKEY_IDS)];
            format!("{:?}", store.remove_prekeys(&ids).await.is_ok())
        }
        26 => format!(
            "{:?}",
            store.delete_sessions_of(pick(rng, &NAMES)).await.is_ok()
        ),
        27 => format!(
            "{:?}",
            store.delete_identities_of(pick(rng, &NAMES)).await.is_ok()
        ),
        28 => {
            let a: ProtocolAddress = pick(rng, &addresses());
            format!(
                "{:?}",
                store
                    .save_identity(&a, &public(rng.gen_range(0..3)))
                    .await
                    .ok()
            )
        }
        29..=31 => format!(
            "{:?}",
            store.claim_idempotency_key(&claim(rng)).await.map_err(kind)
        ),
        32 => {
            let response = StoredResponse {
                status: 200,
                body: vec![rng.r#gen()],
            };
            format!(
                "{:?}",
                store
                    .complete_idempotency_key("main", pick(rng, &keys), &response)
                    .await
                    .map_err(kind)
            )
        }
        33 => format!(
            "{:?}",
            store
                .release_idempotency_key("main", pick(rng, &keys))
                .await
                .map_err(kind)
        ),
        34 => {
            let mut cut = || {
                if rng.r#gen() {
                    Some(rng.gen_range(0..300))
                } else {
                    None
                }
            };
            let before = PruneBefore {
                message_secrets: cut(),
                sent_messages: cut(),
                decrypted: cut(),
                idempotency_keys: cut(),
            };
            format!("{:?}", store.prune(before).await.map_err(kind))
        }
        35 => format!(
            "{:?}",
            store
                .store_signed_prekey(pick(rng, &SIGNED_IDS), b"s")
                .await
                .is_ok()
        ),
        36 => format!(
            "{:?}",
            store
                .remove_signed_prekey(pick(rng, &SIGNED_IDS))
                .await
                .is_ok()
        ),
        37 => {
            let chat = jid(&pick(rng, &chats));
            let sender = jid(pick(rng, &PNS));
            format!(
                "{:?}",
                store
                    .find_message_secret(&chat, &sender, pick(rng, &MESSAGE_IDS))
                    .await
                    .map_err(kind)
            )
        }
        38 => format!(
            "{:?}",
            store
                .find_sent_message(&jid(pick(rng, &PNS)), pick(rng, &MESSAGE_IDS))
                .await
                .map_err(kind)
        ),
        _ => {
            if rng.gen_ratio(1, 3) {
                format!("{:?}", store.clear_all().await.map_err(kind))
            } else {
                format!(
                    "{:?}",
                    store
                        .event_tally(&jid(pick(rng, &GROUPS)), pick(rng, &MESSAGE_IDS))
                        .await
                        .map_err(kind)
                )
            }
        }
    }
}

fn kind(e: waevent::store::Error) -> String {
    // Variant and message: both backends must refuse the same way.
    e.to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_sqlite_agree(seed in any::<u64>(), steps in 1usize..40) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let mem = memory();
            let sql = sqlite().await;
            let (mut r1, mut r2) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
            for step in 0..steps {
                let a = random_op(&*mem.store, &mut r1).await;
                let b = random_op(&*sql.store, &mut r2).await;
                assert_eq!(a, b, "seed {seed} step {step}");
            }
            assert_eq!(snapshot(&*mem.store).await, snapshot(&*sql.store).await, "seed {seed}");
        });
    }
}
