//! `waevent demo`: the whole product on a fresh machine, without a WhatsApp account.
//!
//! An in-process simulator plays WhatsApp's server and every phone; a new device
//! (this client) is paired through the QR flow, a group of simulated members is
//! created, an event card goes to the group through the real send pipeline, every
//! member device decrypts it, members answer at random, and the client's tally must
//! equal what they sent. Exit code 0 only if every device decrypted the card and the
//! tally matches.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use serde_json::json;
use waevent::client::Event;
use waevent::demo::{self, ExpectedTally, PlannedAnswer};
use waevent::event::{EventCard, EventLocation, IncomingEvent, SendOptions};
use waevent::jid::Jid;
use waevent::sim::{GroupAddressing, GroupSpec, SimConfig, SimServer};
use waevent::store::{EventTally, MemoryStore};

use super::session::{Output, SessionOpts};

/// Most members the demo accepts.
const MAX_MEMBERS: usize = 4096;
/// How long each phase may take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// Simulated members answering at the same time.
const RSVP_CONCURRENCY: usize = 32;

/// Arguments of `waevent demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Simulated group members (besides you), 1 to 4096.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub members: usize,
    /// Devices per member (primary phone included): K, or a range A-B chosen at random
    /// per member (1 to 4).
    #[arg(long, default_value = "1-3", value_name = "K", value_parser = parse_devices)]
    pub devices: RangeInclusive<u16>,
    /// Seed of the members' random answers (default: random).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

fn parse_devices(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("expected K or A-B with 1 <= A <= B <= 4, got {text:?}");
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if !(1..=4).contains(&a) || !(a..=4).contains(&b) {
        return Err(bad());
    }
    Ok(a..=b)
}

fn bar(len: u64, prefix: &'static str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_prefix(prefix);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>10} [{bar:40.cyan/blue}] {pos:>5}/{len:5} {msg} ({elapsed})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs the demo; `Err` carries why it failed.
pub async fn run(args: DemoArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    if args.members == 0 || args.members > MAX_MEMBERS {
        return Err(format!(
            "--members must be 1 to {MAX_MEMBERS}, got {}",
            args.members
        ));
    }
    let started = Instant::now();
    let sim = SimServer::start(SimConfig::default())
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let result = run_in(&sim, &args, out, started).await;
    sim.shutdown().await;
    result
}

async fn run_in(
    sim: &SimServer,
    args: &DemoArgs,
    out: Output,
    started: Instant,
) -> Result<(), String> {
    out.text(&format!(
        "Simulator on {} (its own certificate root; the client verifies the chain).",
        sim.url()
    ));

    // 1. Pair a new device through the QR flow.
    let phone = sim.create_account("15550100000");
    let paired = demo::pair_client(
        sim,
        &phone,
        Arc::new(MemoryStore::new()),
        PHASE_TIMEOUT,
        |qr| {
            let shown: String = qr.chars().take(48).collect();
            out.text(&format!(
                "The client rendered QR {shown}…; the simulated phone of {} scans it.",
                phone.pn()
            ));
        },
    )
    .await
    .map_err(|e| format!("pairing failed: {e}"))?;
    let demo::PairedClient {
        client,
        mut events,
        device,
    } = paired;
    out.text(&format!(
        "Paired and logged in as {device} ({:.1} s).",
        started.elapsed().as_secs_f64()
    ));

    // 2. A group of simulated members.
    let group = sim
        .create_group(GroupSpec {
            subject: "waevent demo".into(),
            accounts: vec![phone.pn()],
            simulated_members: args.members,
            devices_per_member: args.devices.clone(),
            addressing: GroupAddressing::Lid,
        })
        .map_err(|e| format!("cannot create the group: {e}"))?;
    // An established group: members already hold each other's sender keys, so their
    // answers carry SKDMs only for the new device (this client).
    sim.share_member_sender_keys(&group)
        .map_err(|e| format!("simulator: {e}"))?;
    let members: Vec<Jid> = sim
        .group_members(&group)
        .map_err(|e| format!("simulator: {e}"))?
        .into_iter()
        .filter(|m| m.to_non_ad() != phone.lid() && m.to_non_ad() != phone.pn())
        .collect();
    let devices = demo::member_devices(sim, &members, &device);
    out.text(&format!(
        "Group {group}: {} members with {} devices.",
        members.len(),
        devices.len()
    ));

    // 3. The card, through the real send pipeline.
    let card = demo_card()?;
    let send_started = Instant::now();
    let receipt = client
        .send_event(
            &group,
            &card,
            &SendOptions {
                source: Some("demo".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot send the event card: {e}"))?;
    let ack_time = send_started.elapsed();
    let event_id = receipt.message_id.clone();
    let fanout = bar(devices.len() as u64, "fan-out", out.json);
    fanout.set_message("devices decrypted");
    let delivery = demo::wait_for_delivery(
        sim,
        &group,
        &event_id,
        &device,
        Some(&card),
        devices.len(),
        PHASE_TIMEOUT,
        |n| fanout.set_position(n as u64),
    )
    .await
    .map_err(|e| e.to_string())?;
    fanout.finish();
    let fanout_time = send_started.elapsed();
    out.text(&format!(
        "Sent {event_id}: server ack after {:.0} ms; {} of {} devices decrypted it in {:.2} s.",
        ack_time.as_secs_f64() * 1000.0,
        delivery.decrypted,
        devices.len(),
        fanout_time.as_secs_f64()
    ));
    if let Some(sample) = &delivery.sample {
        out.text("\nThe card as a member's phone decrypted it:");
        out.text(&describe(sample));
        out.text("");
    }

    // 4. Members answer at random.
    let mut rng = match args.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_entropy(),
    };
    let answers = demo::random_answers(&members, &mut rng);
    let expected = ExpectedTally::of(&answers);
    let rsvps = bar(answers.len() as u64, "RSVPs", out.json);
    rsvps.set_message("answers received by the client");
    let rsvp_started = Instant::now();
    let (sent_ok, received) = tokio::join!(
        send_answers(sim, &group, &event_id, &answers),
        receive_answers(&mut events, &event_id, answers.len(), &rsvps),
    );
    rsvps.finish();
    let send_failures = sent_ok;
    let tally = client
        .event_tally(&event_id)
        .await
        .map_err(|e| format!("cannot read the tally: {e}"))?;
    client.disconnect().await;

    // 5. The verdict.
    let all_decrypted = delivery.decrypted == devices.len() && delivery.failed.is_empty();
    let tally_ok = expected.matches(&tally);
    if out.json {
        out.json_line(&json!({
            "event": "demo",
            "group": group.to_string(),
            "eventMessageId": event_id,
            "members": members.len(),
            "devices": devices.len(),
            "decrypted": delivery.decrypted,
            "failed": delivery.failed.iter().map(|(d, e)| json!({"device": d.to_string(), "error": e})).collect::<Vec<_>>(),
            "rsvpsSent": answers.len() - send_failures.len(),
            "rsvpsReceived": received,
            "expected": {"going": expected.going, "notGoing": expected.not_going, "maybe": expected.maybe, "extraGuestsGoing": expected.extra_guests_going},
            "tally": {"going": tally.going, "notGoing": tally.not_going, "maybe": tally.maybe, "extraGuestsGoing": tally.extra_guests_going},
            "ok": all_decrypted && tally_ok && send_failures.is_empty(),
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        out.text(&format!(
            "{} of {} answers reached the client in {:.2} s.",
            received,
            answers.len(),
            rsvp_started.elapsed().as_secs_f64()
        ));
        print_tally(out, &tally, &expected);
        out.text(&format!(
            "Done in {:.1} s.",
            started.elapsed().as_secs_f64()
        ));
    }
    let mut problems = Vec::new();
    if !all_decrypted {
        let first = delivery
            .failed
            .first()
            .map(|(d, e)| format!(" (first: {d}: {e})"))
            .unwrap_or_default();
        problems.push(format!(
            "{} of {} devices decrypted the card{first}",
            delivery.decrypted,
            devices.len()
        ));
    }
    if let Some((member, e)) = send_failures.first() {
        problems.push(format!(
            "{} simulated answers could not be sent (first: {member}: {e})",
            send_failures.len()
        ));
    }
    if !tally_ok {
        problems.push(format!(
            "the tally ({} going +{}, {} not going, {} maybe) does not match what members sent \
             ({} going +{}, {} not going, {} maybe)",
            tally.going,
            tally.extra_guests_going,
            tally.not_going,
            tally.maybe,
            expected.going,
            expected.extra_guests_going,
            expected.not_going,
            expected.maybe
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("demo failed: {}", problems.join("; ")))
    }
}

/// Tomorrow at 15:00 UTC, for an hour, with a video call and a reminder.
fn demo_card() -> Result<EventCard, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let start = (now / 86_400 + 1) * 86_400 + 15 * 3600;
    EventCard::builder()
        .name("waevent demo: team sync")
        .description("Sent by waevent to a simulated group; answer to see the tally.")
        .start_unix(start)
        .end_unix(start + 3600)
        .location(EventLocation::named("Room 4"))
        .join_link("https://call.whatsapp.com/video/waeventDemoLink1")
        .reminder_offset_secs(900)
        .extra_guests_allowed(true)
        .build()
        .map_err(|e| format!("demo card: {e}"))
}

/// The card as text, field by field.
fn describe(card: &EventCard) -> String {
    let mut lines = vec![format!("  name:        {}", card.name())];
    if let Some(d) = card.description() {
        lines.push(format!("  description: {d}"));
    }
    lines.push(format!(
        "  starts:      {}",
        waevent::event::format_unix(card.start_time())
    ));
    if let Some(end) = card.end_time() {
        lines.push(format!(
            "  ends:        {}",
            waevent::event::format_unix(end)
        ));
    }
    if let Some(l) = card.location() {
        let place: Vec<&str> = [l.name.as_deref(), l.address.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        lines.push(format!("  location:    {}", place.join(", ")));
    }
    if let Some(link) = card.join_link() {
        lines.push(format!("  call link:   {link}"));
    }
    if let Some(r) = card.reminder_offset_secs() {
        lines.push(format!("  reminder:    {} min before", r / 60));
    }
    lines.push(format!(
        "  extra guests allowed: {}",
        if card.extra_guests_allowed() {
            "yes"
        } else {
            "no"
        }
    ));
    lines.join("\n")
}

/// Every member answers (a few at a time); returns the answers that failed.
async fn send_answers(
    sim: &SimServer,
    group: &Jid,
    event_id: &str,
    answers: &[PlannedAnswer],
) -> Vec<(Jid, String)> {
    futures_util::stream::iter(answers.iter())
        .map(|a| async move {
            sim.member_rsvp(group, &a.member, event_id, a.response, a.extra_guests)
                .await
                .err()
                .map(|e| (a.member.clone(), e.to_string()))
        })
        .buffer_unordered(RSVP_CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// Counts the RSVPs to `event_id` the client reports until `want` distinct voters
/// answered or the phase times out.
async fn receive_answers(
    events: &mut waevent::client::Events,
    event_id: &str,
    want: usize,
    bar: &ProgressBar,
) -> usize {
    let mut voters = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    while voters.len() < want {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Activity(activity))) => {
                if let IncomingEvent::Rsvp {
                    event_id: id,
                    voter,
                    ..
                } = *activity
                    && id == event_id
                {
                    voters.insert(voter);
                    bar.set_position(voters.len() as u64);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    voters.len()
}

fn print_tally(out: Output, tally: &EventTally, expected: &ExpectedTally) {
    let mark = |a: u32, b: u32| if a == b { "ok" } else { "MISMATCH" };
    out.text("\nTally (client's store)  vs  what members sent:");
    out.text(&format!(
        "  going        {:>5}  vs {:>5}  {}",
        tally.going,
        expected.going,
        mark(tally.going, expected.going)
    ));
    out.text(&format!(
        "  extra guests {:>5}  vs {:>5}  {}",
        tally.extra_guests_going,
        expected.extra_guests_going,
        mark(tally.extra_guests_going, expected.extra_guests_going)
    ));
    out.text(&format!(
        "  not going    {:>5}  vs {:>5}  {}",
        tally.not_going,
        expected.not_going,
        mark(tally.not_going, expected.not_going)
    ));
    out.text(&format!(
        "  maybe        {:>5}  vs {:>5}  {}",
        tally.maybe,
        expected.maybe,
        mark(tally.maybe, expected.maybe)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_counts_are_one_to_four() {
        assert_eq!(parse_devices("1-3"), Ok(1..=3));
        assert_eq!(parse_devices("2"), Ok(2..=2));
        assert_eq!(parse_devices(" 4 - 4 "), Ok(4..=4));
        for bad in ["0", "5", "3-2", "1-5", "x", "", "1-", "-1"] {
            assert!(parse_devices(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_demo_card_is_valid_and_described() {
        let card = demo_card().unwrap();
        assert!(card.end_time().unwrap() > card.start_time());
        let text = describe(&card);
        assert!(
            text.contains("Room 4") && text.contains("15 min before"),
            "{text}"
        );
    }
}
