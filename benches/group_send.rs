//! Preparing a group send — everything but the socket write: padding, sender-key
//! encryption, pairwise SKDM encryption, the `<message>` node, its wire encoding and
//! the serialized Signal state batch (issue 5 targets on a 2-core machine, 1,024
//! participants × 3 devices):
//!
//! * cold (no sessions: X3DH to every device) ≤ 0.6 s using both cores;
//! * sender key to every device over existing (acknowledged) sessions ≤ 10 ms;
//! * warm (everyone has our sender key) ≤ 30 µs and flat in group size (64, 256, 1,024
//!   members).
//!
//! A counting global allocator reports the peak heap growth of one cold send.
//! Run: `cargo bench --bench group_send -- --warm-up-time 1 --measurement-time 3`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::binary::encode_node;
use waevent::jid::Jid;
use waevent::messaging::{GroupFanout, GroupSend, PairwiseTarget, prepare_group_send};
use waevent::proto::e2e;
use waevent::signal::{
    LocalIdentity, PreKeyBundle, PreKeySignalMessage, PreKeys, SenderKeyRecord, SessionRecord,
    SignedPreKeyRecord, decrypt_prekey, decrypt_whisper, encrypt, generate_prekeys,
};
use waevent::store::AddressingMode;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const GROUP: &str = "120363040000000001@g.us";
const SENDER: &str = "100000000000000:7@lid";
const DEVICES_PER_MEMBER: u16 = 3;

/// A member device as the server hands it out: its keys (to answer) and its bundle.
struct Device {
    jid: Jid,
    identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    prekey: waevent::signal::PreKeyRecord,
}

impl Device {
    fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle::from_local(
            &self.identity,
            u32::from(self.jid.device),
            &self.signed,
            Some(&self.prekey),
        )
    }
}

fn devices(members: usize, rng: &mut StdRng) -> Vec<Device> {
    let mut out = Vec::with_capacity(members * usize::from(DEVICES_PER_MEMBER));
    for m in 0..members {
        for d in 0..DEVICES_PER_MEMBER {
            let identity = LocalIdentity::generate(rng);
            let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, 0, rng);
            let prekey = generate_prekeys(1, 1, rng).remove(0);
            out.push(Device {
                jid: Jid::new_ad(format!("{}", 200_000_000_000_000u64 + m as u64), d, "lid"),
                identity,
                signed,
                prekey,
            });
        }
    }
    out
}

fn card() -> e2e::Message {
    e2e::Message {
        event_message: Some(Box::new(e2e::EventMessage {
            name: Some("Quarterly planning dinner".into()),
            description: Some("Table for everyone who RSVPs by Friday; bring ideas.".into()),
            start_time: Some(1_900_000_000),
            end_time: Some(1_900_010_800),
            location: Some(e2e::LocationMessage {
                name: Some("Trattoria da Mario".into()),
                address: Some("Rua Augusta 1200, São Paulo".into()),
                degrees_latitude: Some(-23.55),
                degrees_longitude: Some(-46.65),
                ..Default::default()
            }),
            extra_guests_allowed: Some(true),
            ..Default::default()
        })),
        message_context_info: Some(e2e::MessageContextInfo {
            message_secret: Some(vec![7; 32]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Group {
    our: LocalIdentity,
    fanout: GroupFanout,
    sender_key: SenderKeyRecord,
}

fn group(devices: &[Device], rng: &mut StdRng) -> Group {
    let mut fanout = GroupFanout::new(
        GROUP.parse().unwrap(),
        AddressingMode::Lid,
        SENDER.parse().unwrap(),
        devices.iter().map(|d| d.jid.clone()),
    )
    .unwrap();
    let mut sender_key = SenderKeyRecord::new();
    fanout.ensure_sender_key(&mut sender_key, rng);
    Group {
        our: LocalIdentity::generate(rng),
        fanout,
        sender_key,
    }
}

fn cold_targets(devices: &[Device]) -> Vec<PairwiseTarget> {
    devices
        .iter()
        .map(|d| PairwiseTarget {
            device: d.jid.clone(),
            session: SessionRecord::new(),
            bundle: Some(d.bundle()),
        })
        .collect()
}

/// One prepared send, encoded: everything but the socket write.
fn send_once(
    g: &Group,
    sender_key: &mut SenderKeyRecord,
    message: &e2e::Message,
    targets: Vec<PairwiseTarget>,
    rng: &mut StdRng,
) -> usize {
    let prepared = prepare_group_send(
        &g.fanout,
        &g.our,
        sender_key,
        GroupSend {
            message_id: "3EB0A1B2C3D4E5F6A7B8C9",
            message,
            device_identity: &[0x0A; 180],
            targets,
        },
        rng,
    )
    .unwrap();
    let bytes = encode_node(&prepared.node).unwrap();
    black_box(&prepared.signal_state);
    bytes.len()
}

/// Acknowledged sessions with every device: each device decrypts our first pkmsg and
/// answers, as after a first group message and a reply.
fn acknowledged_sessions(g: &Group, devices: &[Device], rng: &mut StdRng) -> Vec<SessionRecord> {
    devices
        .iter()
        .map(|d| {
            let mut ours = SessionRecord::new();
            waevent::signal::initialize_from_bundle(&mut ours, &g.our, &d.bundle(), rng).unwrap();
            let first = encrypt(&mut ours, b"hello").unwrap();
            let mut theirs = SessionRecord::new();
            decrypt_prekey(
                &mut theirs,
                &d.identity,
                &PreKeySignalMessage::deserialize(first.bytes()).unwrap(),
                PreKeys {
                    signed: Some(&d.signed),
                    one_time: Some(&d.prekey),
                },
                rng,
            )
            .unwrap();
            let reply = encrypt(&mut theirs, b"hi").unwrap();
            decrypt_whisper(&mut ours, reply.bytes(), rng).unwrap();
            ours
        })
        .collect()
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks
/// of 10 ms), so that figures taken on a busy machine can be read as CPU cost.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f` `n` times and prints wall and CPU time per run.
fn cpu_report(what: &str, n: usize, mut f: impl FnMut()) {
    let cpu = cpu_seconds();
    let wall = std::time::Instant::now();
    for _ in 0..n {
        f();
    }
    let wall = wall.elapsed().as_secs_f64() / n as f64;
    let cpu = (cpu_seconds() - cpu) / n as f64;
    println!(
        "{what}: wall {:.3} ms, CPU {:.3} ms per send (CPU/2 = wall on an idle 2-core machine)",
        wall * 1e3,
        cpu * 1e3
    );
}

fn bench(c: &mut Criterion) {
    let rng = &mut StdRng::seed_from_u64(1);
    let message = card();
    let all = devices(1024, rng);

    // Cold: X3DH to all 3,072 devices.
    let g = group(&all, rng);
    let profile_sk = std::env::var_os("GROUP_SEND_PROFILE_SK").is_some();
    if !profile_sk {
        let targets = cold_targets(&all);
        let mut sender_key = g.sender_key.clone();
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let len = send_once(&g, &mut sender_key, &message, targets, rng);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        println!(
            "cold 1024x3: stanza {len} bytes; peak heap growth during prepare+encode {:.1} MiB",
            peak as f64 / (1024.0 * 1024.0)
        );
    }
    if !profile_sk {
        cpu_report("cold 1024x3 (incl. building the targets)", 3, || {
            let mut sender_key = g.sender_key.clone();
            send_once(&g, &mut sender_key, &message, cold_targets(&all), rng);
        });
        let mut cold = c.benchmark_group("group_send cold");
        cold.sample_size(10);
        cold.bench_function("1024x3 devices: X3DH + SKDM to all", |b| {
            b.iter_batched(
                || (cold_targets(&all), g.sender_key.clone()),
                |(targets, mut sender_key)| send_once(&g, &mut sender_key, &message, targets, rng),
                BatchSize::PerIteration,
            )
        });
        cold.finish();
    }

    // Sender key to every device over existing, acknowledged sessions.
    let sessions = acknowledged_sessions(&g, &all, rng);
    let session_targets = || -> Vec<PairwiseTarget> {
        all.iter()
            .zip(&sessions)
            .map(|(d, s)| PairwiseTarget {
                device: d.jid.clone(),
                session: s.clone(),
                bundle: None,
            })
            .collect()
    };
    {
        // The case measures what it says: one `msg` per device, no new session.
        let mut sender_key = g.sender_key.clone();
        let prepared = prepare_group_send(
            &g.fanout,
            &g.our,
            &mut sender_key,
            GroupSend {
                message_id: "3EB0A1B2C3D4E5F6A7B8C9",
                message: &message,
                device_identity: &[0x0A; 180],
                targets: session_targets(),
            },
            rng,
        )
        .unwrap();
        assert_eq!(
            (
                prepared.counts.msg,
                prepared.counts.pkmsg,
                prepared.counts.new_sessions
            ),
            (all.len(), 0, 0)
        );
        println!(
            "sk-to-all 1024x3: stanza {} bytes, {} pairwise msg",
            encode_node(&prepared.node).unwrap().len(),
            prepared.counts.msg
        );
    }
    if profile_sk {
        // Profiling aid (`GROUP_SEND_PROFILE_SK=1`, cold case skipped): build the
        // targets first, print a marker line, loop only the sk-to-all send and exit.
        let mut batches: Vec<Vec<PairwiseTarget>> = (0..40).map(|_| session_targets()).collect();
        println!("profiling sk-to-all now");
        cpu_report("sk-to-all 1024x3", 40, || {
            let mut sender_key = g.sender_key.clone();
            let targets = batches.pop().unwrap_or_default();
            send_once(&g, &mut sender_key, &message, targets, rng);
        });
        std::process::exit(0);
    }
    {
        let mut batches: Vec<Vec<PairwiseTarget>> = (0..10).map(|_| session_targets()).collect();
        cpu_report("sk-to-all 1024x3", 10, || {
            let mut sender_key = g.sender_key.clone();
            let targets = batches.pop().unwrap_or_default();
            send_once(&g, &mut sender_key, &message, targets, rng);
        });
    }
    c.bench_function(
        "group_send sk-to-all 1024x3 devices (existing sessions)",
        |b| {
            b.iter_batched(
                || (session_targets(), g.sender_key.clone()),
                |(targets, mut sender_key)| send_once(&g, &mut sender_key, &message, targets, rng),
                BatchSize::PerIteration,
            )
        },
    );

    // Warm: everyone has the key; flat in group size.
    for members in [64usize, 256, 1024] {
        let subset = &all[..members * usize::from(DEVICES_PER_MEMBER)];
        let mut g = group(subset, rng);
        let everyone = g.fanout.devices().to_vec();
        g.fanout.mark_has_sender_key(&everyone);
        assert!(g.fanout.everyone_has_sender_key());
        let mut sender_key = g.sender_key.clone();
        cpu_report(&format!("warm {members}x3"), 20_000, || {
            send_once(&g, &mut sender_key, &message, Vec::new(), rng);
        });
        c.bench_function(
            &format!("group_send warm {members}x3 devices (skmsg only)"),
            |b| b.iter(|| send_once(&g, &mut sender_key, &message, Vec::new(), rng)),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
