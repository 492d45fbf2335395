//! The events API: send event cards, answer them, edit and cancel them, and follow
//! what members answer (PROTOCOL.md §12).
//!
//! * [`Client::send_event`] — a card with a fresh message secret; a call type without
//!   a join link first gets a link from the server ([`call_link`](super::call_link));
//!   [`SendOptions`] adds a quote (`reply_to`), a private reply to the quoted author
//!   (`reply_private`) and "typing…" before the send (`typing_delay`,
//!   [`chat_state`](super::chat_state)).
//! * [`Client::respond_to_event`] — an encrypted RSVP (`encEventResponseMessage`).
//! * [`Client::edit_event`] / [`Client::cancel_event`] — an encrypted EVENT_EDIT
//!   (`secretEncryptedMessage`), creator only. **A canceled event cannot be edited
//!   again** (WhatsApp's apps refuse it too), so both refuse a canceled event.
//! * [`Client::event_tally`] — latest answer per voter and totals, from the store.
//! * Incoming cards, RSVPs, edits and cancellations are decrypted, stored and
//!   reported as [`Event::Activity`](super::Event::Activity) (see
//!   `handle_incoming_message`).
//!
//! Every write that belongs to a send (the card's message secret, the event record,
//! our own RSVP, the edited card) goes into the send's [`StoreBatch`], which the send
//! pipeline commits with the Signal state before the bytes leave: a crash never
//! leaves a card on members' phones whose secret we lost.
//!
//! # JID forms
//!
//! RSVP and edit keys are derived from the creator's and the sender's JID strings, so
//! both sides must write them alike (§12.3). Sending, the creator is written as it is
//! stored with the event (the form the card arrived in: LID in LID groups) and we
//! write ourselves in the creator's namespace ([`sender_for`]). Receiving, every
//! combination of the forms received and their LID/phone-number alternates is tried.
//!
//! # Stored event records
//!
//! [`EventRecord::card`] holds the serialized `EventMessage` of the current version
//! of the card (without quote); [`EventRecord::creator`] the creator in the namespace
//! the card was sent in (for our own cards: our LID in LID-addressed groups and LID
//! chats, our phone number otherwise).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use waevent::client::{Client, ConnectionState, Event};
//! use waevent::event::{CallType, EventCard, EventLocation, IncomingEvent, SendOptions};
//! use waevent::jid::Jid;
//! use waevent::store::SqliteStore;
//!
//! async fn team_sync() -> Result<(), Box<dyn std::error::Error>> {
//!     // A store paired with `waevent pair`.
//!     let store = Arc::new(SqliteStore::open("waevent.db").await?);
//!     let (client, mut events) = Client::new(store, Default::default());
//!     client.connect().await?;
//!     client
//!         .wait_for_state(ConnectionState::LoggedIn, Duration::from_secs(30))
//!         .await?;
//!
//!     let group: Jid = "120363019502650977@g.us".parse()?;
//!     let card = EventCard::builder()
//!         .name("Team sync")
//!         .start_at("2026-12-01T15:00:00-03:00")
//!         .location(EventLocation::named("Room 4"))
//!         .call_type(Some(CallType::Video)) // the server creates the call link
//!         .build()?;
//!     let options = SendOptions {
//!         typing_delay: Some(Duration::from_secs(2)), // "typing…" first
//!         ..Default::default()
//!     };
//!     let event_id = client.send_event(&group, &card, &options).await?.message_id;
//!
//!     // Members' answers arrive decrypted and stored.
//!     while let Some(event) = events.recv().await {
//!         if let Event::Activity(activity) = event
//!             && let IncomingEvent::Rsvp { event_id: id, voter, response, .. } = *activity
//!             && id == event_id
//!         {
//!             println!("{voter}: {}", response.as_str());
//!             let tally = client.event_tally(&event_id).await?;
//!             if tally.going >= 10 {
//!                 break;
//!             }
//!         }
//!     }
//!     // Only the creator may edit or cancel; a canceled event cannot be edited again.
//!     client.cancel_event(&group, &event_id, &SendOptions::default()).await?;
//!     client.disconnect().await;
//!     Ok(())
//! }
//! ```

use std::time::Duration;

use prost::Message as _;
use rand::rngs::OsRng;

use crate::event::{
    EventCard, EventRef, IncomingEvent, MessageSecret, Parties, Rsvp, RsvpResponse, SendOptions,
    creator_from_key, decrypt_event_edit, decrypt_rsvp, edit_message, rsvp_message, sender_for,
    unwrap_message,
};
use crate::jid::Jid;
use crate::proto::e2e;
use crate::store::{
    AddressingMode, EventRecord, EventTally, MAX_MESSAGE_ID_LEN, MessageSecretRecord, RsvpRecord,
    RsvpStatus, SecretBytes, StoreBatch, now_ms,
};

use super::Client;
use super::call_link::{CallLinkError, link_create_request, parse_link_create_answer};
use super::chat_state::{ChatState, chat_state_node};
use super::events::Event;
use super::receive::IncomingMessage;
use super::send::{OutgoingMessage, SendError, SendReceipt};

/// Longest `typing_delay` accepted (the gateway's limit too).
pub const MAX_TYPING_DELAY: Duration = Duration::from_secs(300);

/// Why an events-API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The event to answer, edit or cancel is not known (no stored event card in
    /// that chat); nothing was sent.
    #[error("event {0} not found")]
    EventNotFound(String),
    /// The event card is stored but its message secret is not, so RSVPs and edits
    /// cannot be encrypted; nothing was sent.
    #[error("event {0} has no stored message secret: RSVPs and edits to it cannot be encrypted")]
    MissingSecret(String),
    /// The request is not allowed (e.g. editing an event someone else created, or a
    /// canceled one); nothing was sent.
    #[error("{0}")]
    Rejected(String),
    /// The server did not create the call link the card asked for; nothing was sent.
    #[error("could not create the event's call link: {0}")]
    CallLink(String),
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl EventError {
    /// Whether the error guarantees that nothing left for the chat (so the request may
    /// be retried as is): everything but a send that failed after the stanza may have
    /// been written ([`SendError::Failed`]) or that the server refused after receiving it
    /// ([`SendError::ServerError`]).
    pub fn nothing_sent(&self) -> bool {
        !matches!(
            self,
            EventError::Send(SendError::Failed(_) | SendError::ServerError { .. })
        )
    }
}

impl From<crate::store::Error> for EventError {
    fn from(e: crate::store::Error) -> Self {
        EventError::Store(e.to_string())
    }
}

impl From<CallLinkError> for EventError {
    fn from(e: CallLinkError) -> Self {
        EventError::CallLink(e.to_string())
    }
}

/// Our own user JIDs (without device).
#[derive(Debug, Clone)]
struct OwnIds {
    pn: Jid,
    lid: Option<Jid>,
}

impl OwnIds {
    fn is_me(&self, jid: &Jid) -> bool {
        let jid = jid.to_non_ad();
        jid == self.pn || self.lid.as_ref() == Some(&jid)
    }

    /// The form WhatsApp indexes our messages by: LID when it is preferred and known.
    fn preferred(&self, lid: bool) -> &Jid {
        match (&self.lid, lid) {
            (Some(l), true) => l,
            _ => &self.pn,
        }
    }
}

/// Where a send goes and the quote it carries.
struct ReplyTarget {
    chat: Jid,
    context: Option<e2e::ContextInfo>,
}

/// A fresh WhatsApp-style message id (`3EB0` + 18 upper-case hex digits, derived
/// like WhatsApp Web's from the time, our phone number and random bytes).
fn new_message_id(own: &OwnIds) -> String {
    crate::messaging::generate_message_id(now_ms() / 1000, Some(&own.pn), &mut OsRng)
}

fn check_message_id(what: &str, id: &str) -> Result<(), EventError> {
    if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN {
        return Err(EventError::Rejected(format!(
            "{what} must be 1 to {MAX_MESSAGE_ID_LEN} characters, got {}",
            id.len()
        )));
    }
    Ok(())
}

fn check_chat(chat: &Jid) -> Result<Jid, EventError> {
    if chat.is_group() || ((chat.is_pn() || chat.is_lid()) && !chat.user.is_empty()) {
        Ok(chat.to_non_ad())
    } else {
        Err(EventError::Rejected(format!(
            "cannot send events to {chat}: expected a group (@g.us) or a user (@s.whatsapp.net, @lid)"
        )))
    }
}

fn check_typing_delay(options: &SendOptions) -> Result<(), EventError> {
    match options.typing_delay {
        Some(d) if d > MAX_TYPING_DELAY => Err(EventError::Rejected(format!(
            "typing_delay must be at most {} s, got {} s",
            MAX_TYPING_DELAY.as_secs(),
            d.as_secs()
        ))),
        _ => Ok(()),
    }
}

/// Quotes and private replies only fit a message with a `contextInfo` (the card).
fn refuse_reply(options: &SendOptions, what: &str) -> Result<(), EventError> {
    if options.reply_to.is_some() || options.reply_private {
        return Err(EventError::Rejected(format!(
            "reply_to and reply_private do not apply to {what} (the message has no quote)"
        )));
    }
    Ok(())
}

/// Reads a stored card (`EventRecord::card`: a serialized `EventMessage`).
fn stored_card(record: &EventRecord) -> Result<EventCard, String> {
    let ev = e2e::EventMessage::decode(record.card.as_slice()).map_err(|e| e.to_string())?;
    EventCard::from_event_message(&ev).map_err(|e| e.to_string())
}

fn status_of(response: RsvpResponse) -> RsvpStatus {
    match response {
        RsvpResponse::Unknown => RsvpStatus::Unknown,
        RsvpResponse::Going => RsvpStatus::Going,
        RsvpResponse::NotGoing => RsvpStatus::NotGoing,
        RsvpResponse::Maybe => RsvpStatus::Maybe,
    }
}

fn push_unique(list: &mut Vec<Jid>, jid: Option<Jid>) {
    if let Some(j) = jid.map(|j| j.to_non_ad())
        && !j.user.is_empty()
        && !list.contains(&j)
    {
        list.push(j);
    }
}

/// The form to record a person under (the store does not merge LID and PN): the LID
/// when either form is one, else the phone number. Returns (as addressed, other form).
fn lid_first(addressed: &Jid, alternate: Option<&Jid>) -> Jid {
    match alternate {
        Some(alt) if alt.is_lid() && !addressed.is_lid() => alt.to_non_ad(),
        _ => addressed.to_non_ad(),
    }
}

impl Client {
    /// Sends an event card to `chat` (a group or a user); returns once the server
    /// acked it.
    ///
    /// A card with a call type and no join link first gets a link from the server
    /// (`link_create`). The card goes out with a fresh 32-byte message secret; the
    /// secret and the event record are stored in the same transaction as the send's
    /// Signal state, before the bytes leave. With `options.reply_to` the card quotes
    /// that message (its content and author when the store has it); `reply_private`
    /// sends it to the quoted author's private chat instead; `typing_delay` shows
    /// "typing…" in the chat that long first.
    ///
    /// Refuses (nothing sent) a chat that is not a group or a user, a typing delay
    /// over [`MAX_TYPING_DELAY`], `reply_private` without `reply_to` or with a quoted
    /// message whose author is unknown or ourselves, and a call link the server does
    /// not create.
    pub async fn send_event(
        &self,
        chat: &Jid,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        check_typing_delay(options)?;
        let chat = check_chat(chat)?;
        let own = self.own_ids().await?;
        let target = self.reply_target(&chat, options, &own).await?;
        let card = self.complete_call_link(card, None).await?;

        let (mut message, secret) = card.to_message(&mut OsRng);
        if let Some(ev) = message.event_message.as_deref_mut() {
            ev.context_info = target.context.map(Box::new);
        }
        let id = new_message_id(&own);
        let creator = self.own_identity_in(&target.chat, &own).await?;
        let created_at_ms = now_ms();
        let batch = StoreBatch {
            secrets: vec![MessageSecretRecord {
                chat: target.chat.clone(),
                sender: creator.clone(),
                message_id: id.clone(),
                secret: SecretBytes::from_array(*secret.as_bytes()),
                created_at_ms,
            }],
            events: vec![EventRecord {
                chat: target.chat.clone(),
                message_id: id.clone(),
                creator,
                from_me: true,
                card: card.to_event_message().encode_to_vec(),
                timestamp_ms: created_at_ms,
            }],
            ..StoreBatch::default()
        };
        tracing::info!(
            chat = %target.chat,
            id = %id,
            source = options.source.as_deref().unwrap_or("api"),
            "sending event card"
        );
        self.send_with_options(&target.chat, message, id, batch, options)
            .await
    }

    /// Answers the event `event_id` in `chat` with an encrypted RSVP and stores it as
    /// our answer (latest per voter wins).
    ///
    /// The key is derived from the event's creator as stored with the card and our
    /// own JID in the creator's namespace (LID for a LID creator, else phone number).
    /// Refuses (nothing sent) an unknown event ([`EventError::EventNotFound`]), an
    /// event without stored secret ([`EventError::MissingSecret`]), `reply_to` /
    /// `reply_private` (an RSVP carries no quote) and a typing delay over
    /// [`MAX_TYPING_DELAY`].
    pub async fn respond_to_event(
        &self,
        chat: &Jid,
        event_id: &str,
        rsvp: &Rsvp,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        check_typing_delay(options)?;
        refuse_reply(options, "RSVPs")?;
        check_message_id("the event id", event_id)?;
        let chat = check_chat(chat)?;
        let own = self.own_ids().await?;
        let (event, secret) = self.stored_event(&chat, event_id).await?;
        let responder = sender_for(&event.creator, &own.pn, own.lid.as_ref()).clone();
        let event_ref = EventRef::new(event.chat.clone(), event_id, event.creator.clone());
        let message = rsvp_message(rsvp, &event_ref, &secret, &responder, &mut OsRng)
            .map_err(|e| EventError::Rejected(format!("cannot encrypt the RSVP: {e}")))?;
        let batch = StoreBatch {
            rsvps: vec![RsvpRecord {
                chat: event.chat.clone(),
                event_id: event_id.to_string(),
                voter: own.preferred(true).clone(),
                response: status_of(rsvp.response),
                extra_guests: rsvp.extra_guests.min(i32::MAX as u32),
                timestamp_ms: rsvp.timestamp_ms,
            }],
            ..StoreBatch::default()
        };
        tracing::info!(
            chat = %event.chat,
            event = %event_id,
            response = rsvp.response.as_str(),
            source = options.source.as_deref().unwrap_or("api"),
            "sending RSVP"
        );
        self.send_with_options(&event.chat, message, new_message_id(&own), batch, options)
            .await
    }

    /// Replaces the event `event_id` in `chat` (created by us) by `card`: an
    /// encrypted EVENT_EDIT carrying the whole new card (a canceled `card` cancels
    /// the event). The stored card is replaced in the send's transaction.
    ///
    /// A new card with a call type but no join link keeps the old card's link when it
    /// is of the same type, else gets a new one from the server. Refuses (nothing
    /// sent) an unknown event, an event someone else created, an event that is
    /// already canceled (a canceled event cannot be edited again), `reply_to` /
    /// `reply_private` and a typing delay over [`MAX_TYPING_DELAY`].
    pub async fn edit_event(
        &self,
        chat: &Jid,
        event_id: &str,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        self.send_edit(chat, event_id, Some(card), options).await
    }

    /// Cancels the event `event_id` in `chat` (created by us): an edit with
    /// `isCanceled` and every other field unchanged. Refuses what
    /// [`edit_event`](Self::edit_event) refuses.
    pub async fn cancel_event(
        &self,
        chat: &Jid,
        event_id: &str,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        self.send_edit(chat, event_id, None, options).await
    }

    /// The latest answer of every voter to the event `event_id` and the totals, from
    /// the store. Refuses an id no stored event has, and an id several chats' events
    /// share (use [`event_tally_in`](Self::event_tally_in) then).
    pub async fn event_tally(&self, event_id: &str) -> Result<EventTally, EventError> {
        check_message_id("the event id", event_id)?;
        let events = self.store().events_by_id(event_id).await?;
        match events.as_slice() {
            [] => Err(EventError::EventNotFound(event_id.to_string())),
            [one] => Ok(self.store().event_tally(&one.chat, event_id).await?),
            many => Err(EventError::Rejected(format!(
                "event id {event_id} is used in {} chats; name the chat",
                many.len()
            ))),
        }
    }

    /// [`event_tally`](Self::event_tally) of the event `event_id` in `chat`.
    pub async fn event_tally_in(
        &self,
        chat: &Jid,
        event_id: &str,
    ) -> Result<EventTally, EventError> {
        check_message_id("the event id", event_id)?;
        let chat = check_chat(chat)?;
        let (event, _) = self.stored_event(&chat, event_id).await?;
        Ok(self.store().event_tally(&event.chat, event_id).await?)
    }

    /// Called by the receive pipeline for every decrypted message after its plaintext
    /// is stored. Event cards, RSVPs (`encEventResponseMessage`) and EVENT_EDITs are
    /// decrypted, stored and reported as [`Event::Activity`]; everything else is
    /// ignored. Idempotent: a redelivery stores nothing new (a card never replaces a
    /// later edit of itself, an RSVP is applied only when it is the voter's latest, an
    /// edit equal to the stored card is a no-op, a canceled card takes no edits). A
    /// redelivered card or RSVP the store takes again is reported again (an event may
    /// be reported twice after a crash, never lost). What cannot be decrypted or
    /// does not validate is logged with the reason and dropped.
    #[allow(dead_code)] // called by the receive pipeline
    pub(crate) async fn handle_incoming_message(&self, message: &IncomingMessage) {
        let content = unwrap_message(&message.message);
        let result = if let Some(ev) = content.event_message.as_deref() {
            self.on_event_card(message, content, ev).await
        } else if let Some(enc) = &content.enc_event_response_message {
            self.on_rsvp(message, enc).await
        } else if let Some(sem) = &content.secret_encrypted_message {
            self.on_event_edit(message, sem).await
        } else {
            Ok(None)
        };
        match result {
            Ok(Some(event)) => self.emit(Event::Activity(Box::new(event))),
            Ok(None) => {}
            Err(reason) => tracing::warn!(
                chat = %message.info.chat,
                id = %message.info.id,
                sender = %message.info.sender,
                %reason,
                "dropped an event message"
            ),
        }
    }

    // ---- sending helpers ----

    async fn own_ids(&self) -> Result<OwnIds, EventError> {
        let creds = self
            .credentials()
            .await
            .map_err(|e| EventError::Store(e.to_string()))?;
        let creds = creds.ok_or(SendError::NotConnected)?;
        let pn = creds
            .pn
            .as_ref()
            .ok_or(SendError::NotConnected)?
            .to_non_ad();
        Ok(OwnIds {
            pn,
            lid: creds.lid.as_ref().map(Jid::to_non_ad),
        })
    }

    /// The JID members see us as in `chat`: our LID in LID-addressed groups (and
    /// groups whose addressing is not cached yet: LID is WhatsApp's default) and in
    /// LID chats, our phone number otherwise.
    async fn own_identity_in(&self, chat: &Jid, own: &OwnIds) -> Result<Jid, EventError> {
        let lid = if chat.is_group() {
            match self.store().load_group(chat).await? {
                Some(meta) => meta.addressing_mode == AddressingMode::Lid,
                None => true,
            }
        } else {
            chat.is_lid()
        };
        Ok(own.preferred(lid).clone())
    }

    /// The chat to send to and the quote, from `reply_to` / `reply_private`.
    async fn reply_target(
        &self,
        chat: &Jid,
        options: &SendOptions,
        own: &OwnIds,
    ) -> Result<ReplyTarget, EventError> {
        let Some(quoted_id) = options.reply_to.as_deref() else {
            if options.reply_private {
                return Err(EventError::Rejected(
                    "reply_private needs reply_to (the message whose author to answer)".into(),
                ));
            }
            return Ok(ReplyTarget {
                chat: chat.clone(),
                context: None,
            });
        };
        check_message_id("reply_to", quoted_id)?;
        let (author, quoted) = self.quoted_message(chat, quoted_id, own).await?;
        let mut context = e2e::ContextInfo {
            stanza_id: Some(quoted_id.to_string()),
            participant: author.as_ref().map(Jid::to_string),
            quoted_message: quoted.map(Box::new),
            ..Default::default()
        };
        if !options.reply_private || !chat.is_group() {
            return Ok(ReplyTarget {
                chat: chat.clone(),
                context: Some(context),
            });
        }
        let author = author.ok_or_else(|| {
            EventError::Rejected(format!(
                "cannot reply privately to {quoted_id}: the message is not in the store, so its author is unknown"
            ))
        })?;
        if own.is_me(&author) {
            return Err(EventError::Rejected(format!(
                "cannot reply privately to {quoted_id}: it is our own message"
            )));
        }
        context.remote_jid = Some(chat.to_string());
        Ok(ReplyTarget {
            chat: author,
            context: Some(context),
        })
    }

    /// The author and content of a message to quote, when the store has it: an event
    /// card (received or sent) or a message we sent.
    async fn quoted_message(
        &self,
        chat: &Jid,
        id: &str,
        own: &OwnIds,
    ) -> Result<(Option<Jid>, Option<e2e::Message>), EventError> {
        if let Some(event) = self.load_event_any(chat, id).await? {
            let quoted = e2e::EventMessage::decode(event.card.as_slice())
                .ok()
                .map(|ev| e2e::Message {
                    event_message: Some(Box::new(ev)),
                    ..Default::default()
                });
            return Ok((Some(event.creator), quoted));
        }
        if let Some(sent) = self.store().find_sent_message(chat, id).await? {
            let quoted = e2e::Message::decode(sent.sent.message.as_slice())
                .ok()
                .map(|mut m| {
                    // The quote repeats the content, never the secret.
                    m.message_context_info = None;
                    m
                });
            let author = self.own_identity_in(chat, own).await?;
            return Ok((Some(author), quoted));
        }
        Ok((None, None))
    }

    /// The card with its join link: unchanged when it has one or no call type; else
    /// `previous`'s link when of the same type, else a new link from the server.
    async fn complete_call_link(
        &self,
        card: &EventCard,
        previous: Option<&EventCard>,
    ) -> Result<EventCard, EventError> {
        let Some(call_type) = card.needs_call_link() else {
            return Ok(card.clone());
        };
        let link = match previous.and_then(EventCard::join_link) {
            Some(old) if crate::event::CallType::of_link(old) == Some(call_type) => old.to_string(),
            _ => self.create_call_link(call_type, card.start_time()).await?,
        };
        card.with_join_link(link)
            .map_err(|e| EventError::CallLink(format!("the server's link is not valid: {e}")))
    }

    /// Asks the server for a call link (`link_create` to `@call`) for an event
    /// starting at `start_time` (unix seconds); returns the join link.
    pub async fn create_call_link(
        &self,
        call_type: crate::event::CallType,
        start_time: i64,
    ) -> Result<String, EventError> {
        let id = self.generate_id();
        let request = link_create_request(&id, call_type, start_time);
        let answer = self
            .send_and_wait(&request, &id, self.config().iq_timeout)
            .await
            .map_err(|e| match e {
                super::IqError::NotConnected => EventError::Send(SendError::NotConnected),
                other => EventError::CallLink(other.to_string()),
            })?;
        Ok(parse_link_create_answer(&answer, call_type)?)
    }

    /// `<composing/>`, wait, `<paused/>` (nothing when there is no delay).
    async fn show_typing(&self, chat: &Jid, delay: Option<Duration>) -> Result<(), EventError> {
        let Some(delay) = delay.filter(|d| !d.is_zero()) else {
            return Ok(());
        };
        self.send_node(&chat_state_node(chat, ChatState::Composing))
            .await
            .map_err(|_| SendError::NotConnected)?;
        tokio::time::sleep(delay).await;
        self.send_node(&chat_state_node(chat, ChatState::Paused))
            .await
            .map_err(|_| SendError::NotConnected)?;
        Ok(())
    }

    /// The event record `id` in `chat`, or in the chat's LID/PN alternate (1:1).
    async fn load_event_any(
        &self,
        chat: &Jid,
        id: &str,
    ) -> Result<Option<EventRecord>, EventError> {
        if let Some(found) = self.store().load_event(chat, id).await? {
            return Ok(Some(found));
        }
        if chat.is_group() {
            return Ok(None);
        }
        match self.store().alternate_jid(chat).await? {
            Some(alt) => Ok(self.store().load_event(&alt, id).await?),
            None => Ok(None),
        }
    }

    /// The stored event and its secret; refuses an unknown event or a missing secret.
    async fn stored_event(
        &self,
        chat: &Jid,
        id: &str,
    ) -> Result<(EventRecord, MessageSecret), EventError> {
        let event = self
            .load_event_any(chat, id)
            .await?
            .ok_or_else(|| EventError::EventNotFound(id.to_string()))?;
        let record = self
            .store()
            .find_message_secret(&event.chat, &event.creator, id)
            .await?
            .ok_or_else(|| EventError::MissingSecret(id.to_string()))?;
        Ok((event, MessageSecret::from_array(*record.secret.as_bytes())))
    }

    async fn send_edit(
        &self,
        chat: &Jid,
        event_id: &str,
        new_card: Option<&EventCard>,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        check_typing_delay(options)?;
        refuse_reply(options, "event edits")?;
        check_message_id("the event id", event_id)?;
        let chat = check_chat(chat)?;
        let own = self.own_ids().await?;
        let (event, secret) = self.stored_event(&chat, event_id).await?;
        if !(event.from_me || own.is_me(&event.creator)) {
            return Err(EventError::Rejected(format!(
                "event {event_id} was created by {}; only its creator can edit or cancel it",
                event.creator
            )));
        }
        let current = stored_card(&event).map_err(|e| {
            EventError::Store(format!(
                "stored card of event {event_id} is unreadable: {e}"
            ))
        })?;
        if current.is_canceled() {
            return Err(EventError::Rejected(format!(
                "event {event_id} is canceled; a canceled event cannot be edited again"
            )));
        }
        let card = match new_card {
            Some(card) => self.complete_call_link(card, Some(&current)).await?,
            None => current.to_canceled(),
        };
        let editor = sender_for(&event.creator, &own.pn, own.lid.as_ref()).clone();
        let event_ref = EventRef::new(event.chat.clone(), event_id, event.creator.clone());
        let message = edit_message(&card, &event_ref, &secret, &editor, &mut OsRng)
            .map_err(|e| EventError::Rejected(format!("cannot encrypt the edit: {e}")))?;
        let batch = StoreBatch {
            events: vec![EventRecord {
                card: card.to_event_message().encode_to_vec(),
                ..event.clone()
            }],
            ..StoreBatch::default()
        };
        tracing::info!(
            chat = %event.chat,
            event = %event_id,
            canceled = card.is_canceled(),
            source = options.source.as_deref().unwrap_or("api"),
            "sending event edit"
        );
        self.send_with_options(&event.chat, message, new_message_id(&own), batch, options)
            .await
    }

    /// Shows "typing…" for `options.typing_delay`, then sends `message` with `id`,
    /// committing `batch` and the caller's `options.source` with it.
    async fn send_with_options(
        &self,
        chat: &Jid,
        message: e2e::Message,
        id: String,
        batch: StoreBatch,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        self.show_typing(chat, options.typing_delay).await?;
        Ok(self
            .send_message(
                chat,
                OutgoingMessage {
                    message,
                    id: Some(id),
                    batch,
                    source: options.source.clone(),
                },
            )
            .await?)
    }

    // ---- receiving helpers ----

    /// Every known form of `jid` (itself, then its LID/PN alternate).
    async fn forms_of(&self, list: &mut Vec<Jid>, jid: &Jid) {
        push_unique(list, Some(jid.clone()));
        match self.store().alternate_jid(&jid.to_non_ad()).await {
            Ok(alt) => push_unique(list, alt),
            Err(e) => tracing::debug!(error = %e, "LID/PN mapping lookup failed"),
        }
    }

    /// The sender's forms: as addressed, the stanza's alternate, the stored mapping.
    async fn sender_forms(&self, message: &IncomingMessage) -> Vec<Jid> {
        let mut senders = Vec::with_capacity(3);
        self.forms_of(&mut senders, &message.info.sender).await;
        push_unique(&mut senders, message.info.sender_alt.clone());
        senders
    }

    async fn on_event_card(
        &self,
        message: &IncomingMessage,
        content: &e2e::Message,
        ev: &e2e::EventMessage,
    ) -> Result<Option<IncomingEvent>, String> {
        let info = &message.info;
        let card =
            EventCard::from_event_message(ev).map_err(|e| format!("invalid event card: {e}"))?;
        let creator = info.sender.to_non_ad();
        let time_ms = info.timestamp.saturating_mul(1000);
        if let Some(existing) = self
            .store()
            .load_event(&info.chat, &info.id)
            .await
            .map_err(|e| e.to_string())?
        {
            // A redelivery: never let it undo a later edit.
            let same =
                existing.creator == creator && stored_card(&existing).ok().as_ref() == Some(&card);
            if !same {
                return Ok(None);
            }
        }
        let mut batch = StoreBatch {
            events: vec![EventRecord {
                chat: info.chat.clone(),
                message_id: info.id.clone(),
                creator: creator.clone(),
                from_me: info.from_me,
                card: card.to_event_message().encode_to_vec(),
                timestamp_ms: time_ms,
            }],
            ..StoreBatch::default()
        };
        match MessageSecret::from_message(content) {
            Ok(secret) => batch.secrets.push(MessageSecretRecord {
                chat: info.chat.clone(),
                sender: creator.clone(),
                message_id: info.id.clone(),
                secret: SecretBytes::from_array(*secret.as_bytes()),
                created_at_ms: now_ms(),
            }),
            Err(e) => tracing::warn!(
                chat = %info.chat, id = %info.id, error = %e,
                "event card without a usable message secret: RSVPs and edits to it cannot be read"
            ),
        }
        self.store()
            .commit_batch(batch)
            .await
            .map_err(|e| format!("could not store the event card: {e}"))?;
        Ok(Some(IncomingEvent::EventCard {
            chat: info.chat.clone(),
            message_id: info.id.clone(),
            sender: creator,
            from_me: info.from_me,
            card,
            time_ms,
        }))
    }

    /// The secret of event `id` in `chat` and every form its creator may be written
    /// in: the creator stored with the card, the one stored with the secret, the one
    /// the modification's key names (`claimed`, only when `trust_claim`), and their
    /// alternates. Stored forms come first.
    async fn event_secret_and_creators(
        &self,
        chat: &Jid,
        id: &str,
        claimed: Option<&Jid>,
    ) -> Result<(Option<EventRecord>, MessageSecret, Vec<Jid>), String> {
        let event = self
            .load_event_any(chat, id)
            .await
            .map_err(|e| e.to_string())?;
        let lookup_creator = match (&event, claimed) {
            (Some(e), _) => e.creator.clone(),
            (None, Some(c)) => c.clone(),
            (None, None) => return Err(format!("event {id} is not in the store")),
        };
        let record = self
            .store()
            .find_message_secret(chat, &lookup_creator, id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("no message secret stored for event {id} by {lookup_creator}")
            })?;
        let mut creators = Vec::with_capacity(6);
        if let Some(e) = &event {
            self.forms_of(&mut creators, &e.creator).await;
        }
        self.forms_of(&mut creators, &record.sender).await;
        if let Some(c) = claimed {
            self.forms_of(&mut creators, c).await;
        }
        Ok((
            event,
            MessageSecret::from_array(*record.secret.as_bytes()),
            creators,
        ))
    }

    async fn on_rsvp(
        &self,
        message: &IncomingMessage,
        enc: &e2e::EncEventResponseMessage,
    ) -> Result<Option<IncomingEvent>, String> {
        let info = &message.info;
        let key = enc
            .event_creation_message_key
            .as_ref()
            .ok_or("RSVP without eventCreationMessageKey")?;
        let event_id = key
            .id
            .as_deref()
            .filter(|id| !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN)
            .ok_or("RSVP without a usable eventCreationMessageKey.ID")?;
        let claimed = creator_from_key(key, &info.chat, &info.sender)
            .map_err(|e| format!("RSVP names no creator: {e}"))?;
        let (event, secret, creators) = self
            .event_secret_and_creators(&info.chat, event_id, Some(&claimed))
            .await?;
        let senders = self.sender_forms(message).await;
        // As received first (creator from the key, responder as addressed), then the
        // alternates of each.
        let mut ordered = vec![claimed.clone()];
        for c in creators {
            push_unique(&mut ordered, Some(c));
        }
        let candidates = Parties::alternates(&ordered, &senders);
        let opened = decrypt_rsvp(enc, &secret, &candidates)
            .map_err(|e| format!("undecryptable RSVP to {event_id}: {e}"))?;
        let rsvp = opened.value;
        let voter_addressed = info.sender.to_non_ad();
        let voter_alt = senders.iter().find(|j| **j != voter_addressed).cloned();
        let record = RsvpRecord {
            chat: event
                .as_ref()
                .map_or_else(|| info.chat.clone(), |e| e.chat.clone()),
            event_id: event_id.to_string(),
            voter: lid_first(&voter_addressed, voter_alt.as_ref()),
            response: status_of(rsvp.response),
            extra_guests: rsvp.extra_guests.min(i32::MAX as u32),
            timestamp_ms: if rsvp.timestamp_ms > 0 {
                rsvp.timestamp_ms
            } else {
                info.timestamp.saturating_mul(1000)
            },
        };
        let applied = self
            .store()
            .record_rsvp(&record)
            .await
            .map_err(|e| format!("could not store the RSVP: {e}"))?;
        if !applied {
            tracing::debug!(event = %event_id, voter = %record.voter, "older RSVP ignored");
            return Ok(None);
        }
        let own = self.own_ids().await.ok();
        let creator = event.as_ref().map(|e| e.creator.clone()).unwrap_or(claimed);
        let event_from_me = event.as_ref().is_some_and(|e| e.from_me)
            || own.as_ref().is_some_and(|o| o.is_me(&creator));
        Ok(Some(IncomingEvent::Rsvp {
            chat: record.chat,
            message_id: info.id.clone(),
            event_id: event_id.to_string(),
            event_from_me,
            event_creator: Some(creator),
            voter: voter_addressed,
            voter_alt,
            from_me: info.from_me,
            response: rsvp.response,
            extra_guests: record.extra_guests,
            time_ms: record.timestamp_ms,
        }))
    }

    async fn on_event_edit(
        &self,
        message: &IncomingMessage,
        sem: &e2e::SecretEncryptedMessage,
    ) -> Result<Option<IncomingEvent>, String> {
        use crate::proto::e2e::secret_encrypted_message::SecretEncType;
        if sem.secret_enc_type != Some(SecretEncType::EventEdit as i32) {
            // Other secret-encrypted add-ons (message edits, poll edits) are not ours.
            return Ok(None);
        }
        let info = &message.info;
        let event_id = sem
            .target_message_key
            .as_ref()
            .and_then(|k| k.id.as_deref())
            .filter(|id| !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN)
            .ok_or("event edit without a usable targetMessageKey.ID")?;
        // The creator comes from the store, never from the edit's key: anyone who
        // knows the secret (every member) could claim to be the creator.
        let (event, secret, creators) = self
            .event_secret_and_creators(&info.chat, event_id, None)
            .await?;
        let event = event.ok_or_else(|| format!("edit of unknown event {event_id}"))?;
        let current = stored_card(&event)
            .map_err(|e| format!("stored card of event {event_id} is unreadable: {e}"))?;
        let senders = self.sender_forms(message).await;
        let candidates = Parties::alternates(&creators, &senders);
        let opened = decrypt_event_edit(sem, &secret, &candidates)
            .map_err(|e| format!("refused edit of event {event_id}: {e}"))?;
        let card = opened.value;
        if card == current {
            // A redelivery of the edit already applied.
            return Ok(None);
        }
        if current.is_canceled() {
            return Err(format!(
                "edit of event {event_id} ignored: the event is canceled and cannot be edited again"
            ));
        }
        self.store()
            .put_event(&EventRecord {
                card: card.to_event_message().encode_to_vec(),
                ..event.clone()
            })
            .await
            .map_err(|e| format!("could not store the edited card: {e}"))?;
        let time_ms = info.timestamp.saturating_mul(1000);
        let editor = info.sender.to_non_ad();
        Ok(Some(if card.is_canceled() {
            IncomingEvent::EventCanceled {
                chat: event.chat,
                message_id: info.id.clone(),
                event_id: event_id.to_string(),
                editor,
                time_ms,
            }
        } else {
            IncomingEvent::EventEdited {
                chat: event.chat,
                message_id: info.id.clone(),
                event_id: event_id.to_string(),
                editor,
                card,
                time_ms,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::client::receive::MessageInfo;
    use crate::client::{ClientConfig, Events};
    use crate::event::{EventLocation, encrypt_rsvp};
    use crate::store::{DeviceCredentials, LidPnMapping, MemoryStore, Store};

    const OWN_PN: &str = "5511999990000:7@s.whatsapp.net";
    const OWN_LID: &str = "100000000000001:7@lid";
    const MEMBER_PN: &str = "5511988887777";
    const MEMBER_LID: &str = "200000000000002";
    const OTHER_LID: &str = "300000000000003";

    fn group() -> Jid {
        Jid::group("120363000000000001")
    }

    async fn client() -> (Client, Events, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut creds = DeviceCredentials::generate(&mut OsRng);
        creds.pn = Some(Jid::parse(OWN_PN).unwrap());
        creds.lid = Some(Jid::parse(OWN_LID).unwrap());
        store.save_credentials(&creds).await.unwrap();
        store
            .put_lid_mappings(&[
                LidPnMapping::new(&Jid::parse(OWN_LID).unwrap(), &Jid::parse(OWN_PN).unwrap())
                    .unwrap(),
                LidPnMapping::new(&Jid::lid_user(MEMBER_LID), &Jid::pn_user(MEMBER_PN)).unwrap(),
            ])
            .await
            .unwrap();
        let (client, events) = Client::new(store.clone(), ClientConfig::default());
        (client, events, store)
    }

    fn card(name: &str) -> EventCard {
        EventCard::builder()
            .name(name)
            .description("Bring snacks")
            .start_unix(1_764_612_000)
            .end_unix(1_764_615_600)
            .location(EventLocation::named("Office"))
            .extra_guests_allowed(true)
            .build()
            .unwrap()
    }

    fn incoming(
        id: &str,
        sender: Jid,
        sender_alt: Option<Jid>,
        message: e2e::Message,
    ) -> IncomingMessage {
        IncomingMessage {
            info: MessageInfo {
                id: id.into(),
                chat: group(),
                sender,
                sender_alt,
                from_me: false,
                timestamp: 1_764_000_000,
                push_name: None,
                stanza_type: "event".into(),
                edit: None,
            },
            message,
        }
    }

    fn activity(events: &mut Events) -> Option<IncomingEvent> {
        match events.try_recv()? {
            Event::Activity(a) => Some(*a),
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// A member's card arrives: stored with its secret, reported.
    async fn member_card(client: &Client, events: &mut Events) -> MessageSecret {
        let (message, secret) = card("Launch").to_message(&mut OsRng);
        let sender = Jid::lid_user(MEMBER_LID).with_device(3);
        client
            .handle_incoming_message(&incoming(
                "3EB0CARD",
                sender,
                Some(Jid::pn_user(MEMBER_PN).with_device(3)),
                message,
            ))
            .await;
        match activity(events).expect("card reported") {
            IncomingEvent::EventCard {
                chat,
                message_id,
                sender,
                from_me,
                card: got,
                time_ms,
            } => {
                assert_eq!(chat, group());
                assert_eq!(message_id, "3EB0CARD");
                assert_eq!(sender, Jid::lid_user(MEMBER_LID));
                assert!(!from_me);
                assert_eq!(got, card("Launch"));
                assert_eq!(time_ms, 1_764_000_000_000);
            }
            other => panic!("{other:?}"),
        }
        secret
    }

    #[test]
    fn message_ids_look_like_whatsapps() {
        let own = OwnIds {
            pn: Jid::pn_user("5511999990000"),
            lid: None,
        };
        let a = new_message_id(&own);
        assert_eq!(a.len(), 22);
        assert!(a.starts_with("3EB0"));
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
        assert_ne!(a, new_message_id(&own));
    }

    #[tokio::test]
    async fn incoming_card_rsvps_and_tally() {
        let (client, mut events, store) = client().await;
        let secret = member_card(&client, &mut events).await;
        let stored = store
            .load_event(&group(), "3EB0CARD")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.creator, Jid::lid_user(MEMBER_LID));
        assert!(!stored.from_me);
        let rec = store
            .message_secret(&group(), &Jid::lid_user(MEMBER_LID), "3EB0CARD")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.secret.as_bytes(), secret.as_bytes());

        // Another member answers as WhatsApp does (LID creator → own LID).
        let ev = EventRef::new(group(), "3EB0CARD", Jid::lid_user(MEMBER_LID));
        let voter = Jid::lid_user(OTHER_LID);
        let mut rsvp = Rsvp::new(RsvpResponse::Going, 1_764_000_100_000);
        rsvp.extra_guests = 2;
        let m = rsvp_message(&rsvp, &ev, &secret, &voter, &mut OsRng).unwrap();
        client
            .handle_incoming_message(&incoming("R1", voter.with_device(1), None, m.clone()))
            .await;
        match activity(&mut events).expect("rsvp reported") {
            IncomingEvent::Rsvp {
                event_id,
                voter: v,
                response,
                extra_guests,
                event_from_me,
                event_creator,
                time_ms,
                ..
            } => {
                assert_eq!(event_id, "3EB0CARD");
                assert_eq!(v, voter);
                assert_eq!(response, RsvpResponse::Going);
                assert_eq!(extra_guests, 2);
                assert!(!event_from_me);
                assert_eq!(event_creator, Some(Jid::lid_user(MEMBER_LID)));
                assert_eq!(time_ms, 1_764_000_100_000);
            }
            other => panic!("{other:?}"),
        }
        // The redelivery is stored again (same timestamp) and reported again; an older
        // answer is neither.
        client
            .handle_incoming_message(&incoming("R1", voter.with_device(1), None, m))
            .await;
        assert!(activity(&mut events).is_some());
        let older = Rsvp::new(RsvpResponse::NotGoing, 1_764_000_000_000);
        let m = rsvp_message(&older, &ev, &secret, &voter, &mut OsRng).unwrap();
        client
            .handle_incoming_message(&incoming("R0", voter.with_device(1), None, m))
            .await;
        assert!(activity(&mut events).is_none());

        // The creator's own answer written with PN strings (Baileys-style) still opens
        // through the known LID↔PN mapping, and is recorded under the LID.
        let pn_ev = EventRef::new(group(), "3EB0CARD", Jid::pn_user(MEMBER_PN));
        let maybe = Rsvp::new(RsvpResponse::Maybe, 1_764_000_200_000);
        let mut enc = encrypt_rsvp(
            &maybe,
            &pn_ev,
            &secret,
            &Jid::pn_user(MEMBER_PN),
            &mut OsRng,
        )
        .unwrap();
        enc.event_creation_message_key = Some(ev.message_key(&Jid::lid_user(MEMBER_LID)));
        let m = e2e::Message {
            enc_event_response_message: Some(enc),
            ..Default::default()
        };
        client
            .handle_incoming_message(&incoming(
                "R2",
                Jid::lid_user(MEMBER_LID).with_device(3),
                None,
                m,
            ))
            .await;
        match activity(&mut events).expect("PN-derived rsvp") {
            IncomingEvent::Rsvp {
                voter,
                voter_alt,
                response,
                ..
            } => {
                assert_eq!(voter, Jid::lid_user(MEMBER_LID));
                assert_eq!(voter_alt, Some(Jid::pn_user(MEMBER_PN)));
                assert_eq!(response, RsvpResponse::Maybe);
            }
            other => panic!("{other:?}"),
        }

        let tally = client.event_tally("3EB0CARD").await.unwrap();
        assert_eq!((tally.going, tally.not_going, tally.maybe), (1, 0, 1));
        assert_eq!(tally.extra_guests_going, 2);
        assert_eq!(tally.responses.len(), 2);
        assert_eq!(
            client.event_tally("nope").await,
            Err(EventError::EventNotFound("nope".into()))
        );

        // A forged RSVP (wrong secret) is dropped.
        let forged = rsvp_message(
            &rsvp,
            &ev,
            &MessageSecret::generate(&mut OsRng),
            &voter,
            &mut OsRng,
        )
        .unwrap();
        client
            .handle_incoming_message(&incoming("R3", voter.with_device(1), None, forged))
            .await;
        assert!(activity(&mut events).is_none());
        // As are RSVPs to unknown events and garbage keys.
        let unknown = EventRef::new(group(), "OTHER", Jid::lid_user(MEMBER_LID));
        let m = rsvp_message(&rsvp, &unknown, &secret, &voter, &mut OsRng).unwrap();
        client
            .handle_incoming_message(&incoming("R4", voter.with_device(1), None, m))
            .await;
        let m = e2e::Message {
            enc_event_response_message: Some(e2e::EncEventResponseMessage::default()),
            ..Default::default()
        };
        client
            .handle_incoming_message(&incoming("R5", voter.with_device(1), None, m))
            .await;
        assert!(activity(&mut events).is_none());
    }

    #[tokio::test]
    async fn incoming_edits_only_from_the_creator_and_never_after_cancel() {
        let (client, mut events, store) = client().await;
        let secret = member_card(&client, &mut events).await;
        let ev = EventRef::new(group(), "3EB0CARD", Jid::lid_user(MEMBER_LID));

        // Another member knows the secret but is not the creator, even when its key
        // claims fromMe.
        let intruder = Jid::lid_user(OTHER_LID);
        let forged = edit_message(&card("Hijacked"), &ev, &secret, &intruder, &mut OsRng).unwrap();
        client
            .handle_incoming_message(&incoming("E0", intruder.with_device(1), None, forged))
            .await;
        assert!(activity(&mut events).is_none());
        let intruder_ev = EventRef::new(group(), "3EB0CARD", intruder.clone());
        let claimed = edit_message(
            &card("Hijacked"),
            &intruder_ev,
            &secret,
            &intruder,
            &mut OsRng,
        )
        .unwrap();
        client
            .handle_incoming_message(&incoming("E0b", intruder.with_device(1), None, claimed))
            .await;
        assert!(activity(&mut events).is_none());

        // The creator edits, writing itself with its phone number.
        let creator = Jid::lid_user(MEMBER_LID).with_device(3);
        let edited = card("Launch v2");
        let pn_ev = EventRef::new(group(), "3EB0CARD", Jid::pn_user(MEMBER_PN));
        let m = edit_message(
            &edited,
            &pn_ev,
            &secret,
            &Jid::pn_user(MEMBER_PN),
            &mut OsRng,
        )
        .unwrap();
        client
            .handle_incoming_message(&incoming("E1", creator.clone(), None, m.clone()))
            .await;
        match activity(&mut events).expect("edit reported") {
            IncomingEvent::EventEdited {
                event_id,
                card: c,
                editor,
                ..
            } => {
                assert_eq!(event_id, "3EB0CARD");
                assert_eq!(c, edited);
                assert_eq!(editor, Jid::lid_user(MEMBER_LID));
            }
            other => panic!("{other:?}"),
        }
        let stored = store
            .load_event(&group(), "3EB0CARD")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored_card(&stored).unwrap(), edited);
        // Redelivered edit: nothing new. Redelivered original card: does not undo it.
        client
            .handle_incoming_message(&incoming("E1", creator.clone(), None, m))
            .await;
        let original = card("Launch").to_message_with_secret(&secret);
        client
            .handle_incoming_message(&incoming("3EB0CARD", creator.clone(), None, original))
            .await;
        assert!(activity(&mut events).is_none());
        let stored = store
            .load_event(&group(), "3EB0CARD")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored_card(&stored).unwrap(), edited);

        // Cancel, then a later edit is ignored.
        let m = edit_message(
            &edited.to_canceled(),
            &ev,
            &secret,
            &Jid::lid_user(MEMBER_LID),
            &mut OsRng,
        )
        .unwrap();
        client
            .handle_incoming_message(&incoming("E2", creator.clone(), None, m))
            .await;
        assert!(matches!(
            activity(&mut events),
            Some(IncomingEvent::EventCanceled { ref event_id, .. }) if event_id == "3EB0CARD"
        ));
        let m = edit_message(
            &card("Back"),
            &ev,
            &secret,
            &Jid::lid_user(MEMBER_LID),
            &mut OsRng,
        )
        .unwrap();
        client
            .handle_incoming_message(&incoming("E3", creator, None, m))
            .await;
        assert!(activity(&mut events).is_none());
        let stored = store
            .load_event(&group(), "3EB0CARD")
            .await
            .unwrap()
            .unwrap();
        assert!(stored_card(&stored).unwrap().is_canceled());
    }

    #[tokio::test]
    async fn refusals_send_nothing() {
        let (client, mut events, _store) = client().await;
        let _ = member_card(&client, &mut events).await;
        let opts = SendOptions::default();
        // Not our event.
        let err = client
            .edit_event(&group(), "3EB0CARD", &card("x"), &opts)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EventError::Rejected(m) if m.contains("only its creator")),
            "{err}"
        );
        assert!(matches!(
            client.cancel_event(&group(), "3EB0CARD", &opts).await,
            Err(EventError::Rejected(_))
        ));
        // Unknown event.
        let rsvp = Rsvp::new(RsvpResponse::Going, 1);
        assert_eq!(
            client
                .respond_to_event(&group(), "NOPE", &rsvp, &opts)
                .await,
            Err(EventError::EventNotFound("NOPE".into()))
        );
        // Options that do not fit.
        let quote = SendOptions {
            reply_to: Some("X".into()),
            ..Default::default()
        };
        assert!(matches!(
            client
                .respond_to_event(&group(), "3EB0CARD", &rsvp, &quote)
                .await,
            Err(EventError::Rejected(_))
        ));
        let slow = SendOptions {
            typing_delay: Some(Duration::from_secs(301)),
            ..Default::default()
        };
        assert!(matches!(
            client.send_event(&group(), &card("x"), &slow).await,
            Err(EventError::Rejected(_))
        ));
        let private = SendOptions {
            reply_private: true,
            ..Default::default()
        };
        assert!(matches!(
            client.send_event(&group(), &card("x"), &private).await,
            Err(EventError::Rejected(_))
        ));
        let private_unknown = SendOptions {
            reply_to: Some("UNKNOWN".into()),
            reply_private: true,
            ..Default::default()
        };
        let err = client
            .send_event(&group(), &card("x"), &private_unknown)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("author is unknown"), "{err}");
        assert!(matches!(
            client
                .send_event(&Jid::new("", "broadcast"), &card("x"), &opts)
                .await,
            Err(EventError::Rejected(_))
        ));
        // A call link needs the connection.
        let call = card("call")
            .to_builder()
            .call_type(Some(crate::event::CallType::Video))
            .build()
            .unwrap();
        assert_eq!(
            client.send_event(&group(), &call, &opts).await,
            Err(EventError::Send(SendError::NotConnected))
        );
    }

    #[tokio::test]
    async fn own_canceled_event_cannot_be_edited() {
        let (client, _events, store) = client().await;
        let secret = MessageSecret::generate(&mut OsRng);
        let own_lid = Jid::parse(OWN_LID).unwrap().to_non_ad();
        store
            .commit_batch(StoreBatch {
                secrets: vec![MessageSecretRecord {
                    chat: group(),
                    sender: own_lid.clone(),
                    message_id: "3EB0MINE".into(),
                    secret: SecretBytes::from_array(*secret.as_bytes()),
                    created_at_ms: 1,
                }],
                events: vec![EventRecord {
                    chat: group(),
                    message_id: "3EB0MINE".into(),
                    creator: own_lid,
                    from_me: true,
                    card: card("Mine")
                        .to_canceled()
                        .to_event_message()
                        .encode_to_vec(),
                    timestamp_ms: 1,
                }],
                ..StoreBatch::default()
            })
            .await
            .unwrap();
        let err = client
            .edit_event(
                &group(),
                "3EB0MINE",
                &card("again"),
                &SendOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event 3EB0MINE is canceled; a canceled event cannot be edited again"
        );
    }

    #[test]
    fn only_failed_sends_may_have_left() {
        assert!(EventError::MissingSecret("x".into()).nothing_sent());
        assert!(EventError::CallLink("refused".into()).nothing_sent());
        assert!(EventError::Send(SendError::NotConnected).nothing_sent());
        assert!(!EventError::Send(SendError::Failed("closed".into())).nothing_sent());
        assert!(
            !EventError::Send(SendError::ServerError {
                id: "x".into(),
                code: 479
            })
            .nothing_sent()
        );
    }

    #[test]
    fn lid_is_the_recorded_form() {
        let pn = Jid::pn_user("1");
        let lid = Jid::lid_user("2");
        assert_eq!(lid_first(&pn, Some(&lid)), lid);
        assert_eq!(lid_first(&lid, Some(&pn)), lid);
        assert_eq!(lid_first(&pn, None), pn);
    }
}
