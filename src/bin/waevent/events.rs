//! The event commands: `send-event`, `respond`, `edit-event`, `cancel-event`,
//! `listen` and `tally`. Each logs in with the stored session (see `waevent pair`),
//! does one thing through the client's events API and disconnects.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use waevent::client::{Client, Event, Events, SendReceipt};
use waevent::event::{
    EventCard, EventCardRequest, LocationRequest, Rsvp, RsvpResponse, SendOptions,
};
use waevent::jid::Jid;
use waevent::store::{EventTally, RsvpStatus};

use super::session::{Output, SessionOpts};

/// How long to wait for the login before giving up.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest card JSON file `--card` reads.
const MAX_CARD_FILE: u64 = 1 << 20;

/// The chat and, for commands on an existing event, its id.
#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// The chat: a group (`120363…@g.us` or Z-API's `120363…-group`), a phone number
    /// (`+55 11 99999-9999`) or a user JID.
    #[arg(long, value_name = "CHAT")]
    pub to: String,
}

/// The fields of an event card: flags, or `--card FILE` with the RyzeAPI JSON body's
/// card fields.
#[derive(Args, Debug, Clone, Default)]
pub struct CardArgs {
    /// Read the card as JSON (name, description, startAt, endAt, location{…}, joinLink,
    /// callType, isScheduleCall, hasReminder, reminderOffsetSec, extraGuestsAllowed,
    /// isCanceled) from FILE, `-` for stdin, instead of the flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "start", "end", "description", "location", "join_link", "call"])]
    pub card: Option<PathBuf>,
    /// Title of the event.
    #[arg(long)]
    pub name: Option<String>,
    /// Start: RFC3339 with an offset (2026-12-01T15:00:00-03:00) or unix seconds.
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// End: RFC3339 with an offset or unix seconds.
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Location name.
    #[arg(long, value_name = "NAME")]
    pub location: Option<String>,
    /// Call link (https://call.whatsapp.com/video/… or any https URL).
    #[arg(long, value_name = "URL")]
    pub join_link: Option<String>,
    /// Ask the sender to create a WhatsApp call link: voice or video.
    #[arg(long, value_name = "TYPE")]
    pub call: Option<String>,
    /// Remind attendees this many seconds before the start.
    #[arg(long, value_name = "SECS")]
    pub reminder: Option<i64>,
    /// Let responders bring extra guests.
    #[arg(long)]
    pub extra_guests: bool,
}

impl CardArgs {
    /// The card, validated with the gateway's rules and texts.
    fn card(&self) -> Result<EventCard, String> {
        if let Some(path) = &self.card {
            let text = read_card_file(path)?;
            return EventCard::from_json(&text).map_err(|e| e.to_string());
        }
        let time = |t: &Option<String>| {
            t.as_ref().map(|t| match t.trim().parse::<i64>() {
                Ok(secs) => Value::from(secs),
                Err(_) => Value::from(t.clone()),
            })
        };
        let request = EventCardRequest {
            name: self.name.clone(),
            description: self.description.clone(),
            start_at: time(&self.start),
            end_at: time(&self.end),
            location: self.location.clone().map(|name| LocationRequest {
                name: Some(name),
                ..Default::default()
            }),
            join_link: self.join_link.clone(),
            call_type: self.call.clone(),
            has_reminder: self.reminder.map(|_| true),
            reminder_offset_sec: self.reminder,
            extra_guests_allowed: Some(self.extra_guests),
            ..Default::default()
        };
        request.into_card().map_err(|e| e.to_string())
    }
}

fn read_card_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_CARD_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_CARD_FILE + 1).read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read the card {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CARD_FILE {
        return Err(format!(
            "the card {} is larger than {MAX_CARD_FILE} bytes",
            path.display()
        ));
    }
    Ok(text)
}

/// Arguments of `waevent send-event`.
#[derive(Args, Debug, Clone)]
pub struct SendEventArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    #[command(flatten)]
    pub card: CardArgs,
}

/// Arguments of `waevent respond`.
#[derive(Args, Debug, Clone)]
pub struct RespondArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// The event card's message id.
    #[arg(long, value_name = "ID")]
    pub event: String,
    /// GOING, NOT_GOING, MAYBE or NONE (removes an earlier answer).
    #[arg(long, value_name = "ANSWER")]
    pub response: String,
    /// Extra guests you bring.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub guests: u32,
}

/// Arguments of `waevent edit-event`.
#[derive(Args, Debug, Clone)]
pub struct EditEventArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// The event card's message id (an event this account created).
    #[arg(long, value_name = "ID")]
    pub event: String,
    #[command(flatten)]
    pub card: CardArgs,
}

/// Arguments of `waevent cancel-event`.
#[derive(Args, Debug, Clone)]
pub struct CancelEventArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// The event card's message id (an event this account created).
    #[arg(long, value_name = "ID")]
    pub event: String,
}

/// Arguments of `waevent listen`.
#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// Exit after this many events (default: run until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// Arguments of `waevent tally`.
#[derive(Args, Debug, Clone)]
pub struct TallyArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// The event card's message id.
    #[arg(long, value_name = "ID")]
    pub event: String,
    /// Do not connect first: tally only the answers already in the store.
    #[arg(long)]
    pub offline: bool,
    /// After logging in, wait this many seconds for answers queued on the server.
    #[arg(long, default_value_t = 2, value_name = "SECS")]
    pub wait: u64,
}

fn parse_chat(text: &str) -> Result<Jid, String> {
    Jid::parse_recipient(text).map_err(|e| format!("--to: {e}"))
}

fn parse_response(text: &str) -> Result<RsvpResponse, String> {
    text.parse::<RsvpResponse>()
        .map_err(|e| format!("--response: {e}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Opens the store, refuses an unpaired one, connects and waits for the login.
pub async fn connect(opts: &SessionOpts) -> Result<(Client, Events), String> {
    let config = opts.client_config()?;
    let (store, path) = opts.open_store().await?;
    let paired = store
        .load_credentials()
        .await
        .map_err(|e| format!("cannot read the store {}: {e}", path.display()))?
        .is_some_and(|c| c.pn.is_some());
    if !paired {
        return Err(format!(
            "the store {} holds no linked device; run `waevent pair --store {}` first",
            path.display(),
            path.display()
        ));
    }
    let (client, mut events) = Client::new(store, config);
    client
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    let mut last_problem = None;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Connected)) => return Ok((client, events)),
            Ok(Some(Event::LoggedOut { reason })) => {
                return Err(format!(
                    "this device was logged out ({reason}); run `waevent pair` again"
                ));
            }
            Ok(Some(Event::StreamReplaced)) => {
                return Err("another connection of this device took over".into());
            }
            Ok(Some(Event::Disconnected {
                reason,
                will_reconnect,
            })) => {
                if !will_reconnect {
                    return Err(format!("cannot log in: {reason}"));
                }
                last_problem = Some(reason.to_string());
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("the client stopped unexpectedly".into()),
            Err(_) => {
                client.disconnect().await;
                return Err(match last_problem {
                    Some(p) => format!(
                        "could not log in within {} s (last error: {p})",
                        LOGIN_TIMEOUT.as_secs()
                    ),
                    None => format!("could not log in within {} s", LOGIN_TIMEOUT.as_secs()),
                });
            }
        }
    }
}

/// Prints a sent message (text or one JSON line).
fn report_sent(out: Output, what: &str, chat: &Jid, receipt: &SendReceipt) {
    if out.json {
        out.json_line(&json!({
            "event": "sent",
            "what": what,
            "chat": chat.to_string(),
            "messageId": receipt.message_id,
            "serverTime": receipt.server_time,
            "devices": receipt.pairwise_devices,
        }));
    } else {
        out.text(&format!(
            "Sent {what} {} to {chat} (server time {}).",
            receipt.message_id, receipt.server_time
        ));
    }
}

/// Runs `work` on a logged-in client and disconnects afterwards, whatever happened.
async fn with_client<T, F, Fut>(opts: &SessionOpts, work: F) -> Result<T, String>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let (client, _events) = connect(opts).await?;
    let result = work(client.clone()).await;
    client.disconnect().await;
    result
}

/// `waevent send-event`.
pub async fn send_event(args: SendEventArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    let chat = parse_chat(&args.chat.to)?;
    let card = args.card.card()?;
    let receipt = with_client(opts, |client| {
        let chat = chat.clone();
        async move {
            client
                .send_event(&chat, &card, &cli_options())
                .await
                .map_err(|e| format!("cannot send the event: {e}"))
        }
    })
    .await?;
    report_sent(out, "event", &chat, &receipt);
    Ok(())
}

/// `waevent respond`.
pub async fn respond(args: RespondArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    let chat = parse_chat(&args.chat.to)?;
    let rsvp = Rsvp {
        response: parse_response(&args.response)?,
        extra_guests: args.guests,
        timestamp_ms: now_ms(),
    };
    let event = args.event.clone();
    let receipt = with_client(opts, |client| {
        let chat = chat.clone();
        async move {
            client
                .respond_to_event(&chat, &event, &rsvp, &cli_options())
                .await
                .map_err(|e| format!("cannot answer the event: {e}"))
        }
    })
    .await?;
    report_sent(out, "response", &chat, &receipt);
    Ok(())
}

/// `waevent edit-event`.
pub async fn edit_event(args: EditEventArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    let chat = parse_chat(&args.chat.to)?;
    let card = args.card.card()?;
    let event = args.event.clone();
    let receipt = with_client(opts, |client| {
        let chat = chat.clone();
        async move {
            client
                .edit_event(&chat, &event, &card, &cli_options())
                .await
                .map_err(|e| format!("cannot edit the event: {e}"))
        }
    })
    .await?;
    report_sent(out, "edit", &chat, &receipt);
    Ok(())
}

/// `waevent cancel-event`.
pub async fn cancel_event(args: CancelEventArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    let chat = parse_chat(&args.chat.to)?;
    let event = args.event.clone();
    let receipt = with_client(opts, |client| {
        let chat = chat.clone();
        async move {
            client
                .cancel_event(&chat, &event, &cli_options())
                .await
                .map_err(|e| format!("cannot cancel the event: {e}"))
        }
    })
    .await?;
    report_sent(out, "cancellation", &chat, &receipt);
    Ok(())
}

fn cli_options() -> SendOptions {
    SendOptions {
        source: Some("cli".into()),
        ..Default::default()
    }
}

/// One incoming event as the JSON line `listen` prints.
#[cfg(feature = "gateway")]
pub fn activity_json(event: &waevent::event::IncomingEvent) -> Value {
    json!({"type": event.kind(), "data": waevent::gateway::webhook::event_data(event)})
}

/// One incoming event as a line for people.
#[cfg(feature = "gateway")]
fn activity_text(event: &waevent::event::IncomingEvent) -> String {
    use waevent::event::IncomingEvent as E;
    match event {
        E::EventCard {
            chat,
            message_id,
            sender,
            card,
            ..
        } => format!(
            "card {message_id} in {chat} from {sender}: {} at {}",
            card.name(),
            waevent::event::format_unix(card.start_time())
        ),
        E::Rsvp {
            chat,
            event_id,
            voter,
            response,
            extra_guests,
            ..
        } => format!(
            "rsvp in {chat} to {event_id} from {voter}: {}{}",
            response.as_str(),
            if *extra_guests > 0 {
                format!(" (+{extra_guests})")
            } else {
                String::new()
            }
        ),
        E::EventEdited {
            chat,
            event_id,
            editor,
            card,
            ..
        } => format!("edit of {event_id} in {chat} by {editor}: {}", card.name()),
        E::EventCanceled {
            chat,
            event_id,
            editor,
            ..
        } => format!("cancellation of {event_id} in {chat} by {editor}"),
        _ => format!("{} event", event.kind()),
    }
}

/// `waevent listen`: one line per incoming card, RSVP, edit or cancellation.
#[cfg(feature = "gateway")]
pub async fn listen(args: ListenArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    let (client, mut events) = connect(opts).await?;
    if !out.json {
        eprintln!("waevent: listening; Ctrl-C to stop");
    } else {
        out.json_line(&json!({"event": "listening"}));
    }
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut seen = 0u64;
    let result = loop {
        if args.count.is_some_and(|n| seen >= n) {
            break Ok(());
        }
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, events.recv()).await.ok(),
                None => Some(events.recv().await),
            }
        };
        let event = tokio::select! {
            e = next => e,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        match event {
            None => break Ok(()), // timeout
            Some(None) => break Err("the client stopped unexpectedly".to_owned()),
            Some(Some(Event::Activity(activity))) => {
                seen += 1;
                if out.json {
                    out.json_line(&activity_json(&activity));
                } else {
                    out.text(&activity_text(&activity));
                }
            }
            Some(Some(Event::LoggedOut { reason })) => {
                break Err(format!("this device was logged out ({reason})"));
            }
            Some(Some(Event::StreamReplaced)) => {
                break Err("another connection of this device took over".to_owned());
            }
            Some(Some(Event::Disconnected {
                reason,
                will_reconnect,
            })) => {
                if !will_reconnect {
                    break Err(format!("disconnected: {reason}"));
                }
                if !out.json {
                    eprintln!("waevent: connection lost ({reason}); reconnecting…");
                }
            }
            Some(Some(_)) => {}
        }
    };
    client.disconnect().await;
    result
}

/// `waevent tally`: the latest answer of every voter and the totals.
pub async fn tally(args: TallyArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    let chat = parse_chat(&args.chat.to)?;
    let tally = if args.offline {
        let (store, path) = opts.open_store().await?;
        store
            .event_tally(&chat, &args.event)
            .await
            .map_err(|e| format!("cannot read the store {}: {e}", path.display()))?
    } else {
        let (client, mut events) = connect(opts).await?;
        // Answers queued on the server arrive right after the login.
        let quiet = Duration::from_secs(args.wait);
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, events.recv()).await {}
        let tally = client.store().event_tally(&chat, &args.event).await;
        client.disconnect().await;
        tally.map_err(|e| format!("cannot read the store: {e}"))?
    };
    print_tally(out, &chat, &args.event, &tally);
    Ok(())
}

/// `GOING`, `NOT_GOING`, `MAYBE` or `NONE`, as the gateway names answers.
fn status_text(status: RsvpStatus) -> &'static str {
    match status {
        RsvpStatus::Going => "GOING",
        RsvpStatus::NotGoing => "NOT_GOING",
        RsvpStatus::Maybe => "MAYBE",
        RsvpStatus::Unknown => "NONE",
    }
}

/// The tally as JSON (`--json`) or a short table.
pub fn tally_json(chat: &Jid, event_id: &str, tally: &EventTally) -> Value {
    let responses: Vec<Value> = tally
        .responses
        .iter()
        .map(|r| {
            json!({
                "voter": r.voter.to_string(),
                "response": status_text(r.response),
                "extraGuests": r.extra_guests,
            })
        })
        .collect();
    json!({
        "event": "tally",
        "chat": chat.to_string(),
        "eventMessageId": event_id,
        "going": tally.going,
        "notGoing": tally.not_going,
        "maybe": tally.maybe,
        "extraGuestsGoing": tally.extra_guests_going,
        "responses": responses,
    })
}

fn print_tally(out: Output, chat: &Jid, event_id: &str, tally: &EventTally) {
    if out.json {
        out.json_line(&tally_json(chat, event_id, tally));
        return;
    }
    out.text(&format!(
        "Event {event_id} in {chat}: {} going (+{} guests), {} not going, {} maybe.",
        tally.going, tally.extra_guests_going, tally.not_going, tally.maybe
    ));
    for r in &tally.responses {
        out.text(&format!(
            "  {:<40} {}{}",
            r.voter.to_string(),
            status_text(r.response),
            if r.extra_guests > 0 {
                format!(" (+{})", r.extra_guests)
            } else {
                String::new()
            }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_flags_use_the_gateway_rules_and_texts() {
        let args = CardArgs {
            name: Some("Team sync".into()),
            start: Some("2026-12-01T15:00:00-03:00".into()),
            end: Some("1796151600".into()),
            location: Some("Room 4".into()),
            reminder: Some(600),
            extra_guests: true,
            ..Default::default()
        };
        let card = args.card().unwrap();
        assert_eq!(card.start_time(), 1_796_148_000);
        assert_eq!(card.end_time(), Some(1_796_151_600));
        assert_eq!(card.reminder_offset_secs(), Some(600));
        assert!(card.extra_guests_allowed());
        let no_name = CardArgs {
            start: Some("2026-12-01T15:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(no_name.card().unwrap_err(), "Name is required");
        let no_start = CardArgs {
            name: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(no_start.card().unwrap_err(), "startAt is required");
        let bad_call = CardArgs {
            name: Some("x".into()),
            start: Some("2026-12-01T15:00:00Z".into()),
            call: Some("fax".into()),
            ..Default::default()
        };
        assert!(bad_call.card().is_err());
    }

    #[test]
    fn chats_and_answers_are_checked_before_connecting() {
        assert_eq!(
            parse_chat("120363019502650977-group").unwrap().to_string(),
            "120363019502650977@g.us"
        );
        assert!(
            parse_chat("12ab")
                .unwrap_err()
                .starts_with("--to: Invalid phone number format")
        );
        assert_eq!(parse_response("not-going"), Ok(RsvpResponse::NotGoing));
        assert!(parse_response("yes").is_err());
    }
}
