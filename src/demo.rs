//! Ready-made simulated worlds for `waevent demo`, `waevent serve --sim` and the
//! end-to-end tests (feature `sim`): a real [`Client`] paired through the simulator's
//! QR flow, a group of simulated members, random RSVPs and the tally they must add up
//! to.
//!
//! Nothing here is a shortcut around the protocol: the client pairs by scanning the QR
//! string it rendered, sends through its real pipelines, and the members are the
//! simulator's phones, which decrypt and answer like WhatsApp's apps.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::client::{Client, ClientConfig, Event, Events};
use crate::event::RsvpResponse;
use crate::jid::Jid;
use crate::noise::TrustRoot;
use crate::sim::{SimError, SimPhone, SimServer};
use crate::store::{EventTally, Store};

/// Why a demo step failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator refused something.
    #[error("simulator: {0}")]
    Sim(#[from] SimError),
    /// The client failed or reported a problem.
    #[error("client: {0}")]
    Client(String),
    /// A step did not finish in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
}

/// A client paired to a simulated account and logged in.
#[derive(Debug)]
pub struct PairedClient {
    /// The client.
    pub client: Client,
    /// Its events (everything after the login).
    pub events: Events,
    /// Its device JID (phone-number form).
    pub device: Jid,
}

/// The client configuration for `sim`: its URL and certificate root, with short
/// reconnect delays.
pub fn client_config(sim: &SimServer) -> ClientConfig {
    let mut config = ClientConfig::for_server(sim.url(), TrustRoot::new(sim.trust_root()));
    config.backoff.initial = Duration::from_millis(50);
    config.backoff.max = Duration::from_millis(1000);
    config
}

/// Connects a new client over `store` to `sim`, waits for the QR it renders, scans it
/// with `phone` (the account's simulated primary phone), and waits for the login and
/// the first prekey upload. `on_qr` sees the QR string before the scan.
pub async fn pair_client(
    sim: &SimServer,
    phone: &SimPhone,
    store: Arc<dyn Store>,
    timeout: Duration,
    on_qr: impl FnOnce(&str),
) -> Result<PairedClient, DemoError> {
    let (client, mut events) = Client::new(store, client_config(sim));
    client
        .connect()
        .await
        .map_err(|e| DemoError::Client(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let qr = loop {
        match next_event(&mut events, deadline, timeout, "the QR code").await? {
            Event::PairingQr { code, .. } => break code,
            Event::PairError { message } => return Err(DemoError::Client(message)),
            _ => {}
        }
    };
    on_qr(&qr);
    let device = phone.scan_qr(&qr).await?;
    let mut connected = false;
    loop {
        match next_event(
            &mut events,
            deadline,
            timeout,
            "the login and prekey upload",
        )
        .await?
        {
            Event::Connected => connected = true,
            Event::PreKeysUploaded { .. } if connected => break,
            Event::PairError { message } => return Err(DemoError::Client(message)),
            Event::LoggedOut { reason } => return Err(DemoError::Client(reason.to_string())),
            _ => {}
        }
    }
    Ok(PairedClient {
        client,
        events,
        device,
    })
}

async fn next_event(
    events: &mut Events,
    deadline: tokio::time::Instant,
    timeout: Duration,
    what: &'static str,
) -> Result<Event, DemoError> {
    match tokio::time::timeout_at(deadline, events.recv()).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(DemoError::Client("the client stopped".into())),
        Err(_) => Err(DemoError::Timeout(timeout, what)),
    }
}

/// One simulated member's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAnswer {
    /// The member (as the group addresses it).
    pub member: Jid,
    /// The answer.
    pub response: RsvpResponse,
    /// Extra guests (only when going).
    pub extra_guests: u32,
}

/// A random answer for every member: going, not going or maybe, and 0–2 extra guests
/// for those going.
pub fn random_answers<R: Rng + ?Sized>(members: &[Jid], rng: &mut R) -> Vec<PlannedAnswer> {
    members
        .iter()
        .map(|member| {
            let response = match rng.gen_range(0..3) {
                0 => RsvpResponse::Going,
                1 => RsvpResponse::NotGoing,
                _ => RsvpResponse::Maybe,
            };
            let extra_guests = if response == RsvpResponse::Going {
                rng.gen_range(0..=2)
            } else {
                0
            };
            PlannedAnswer {
                member: member.clone(),
                response,
                extra_guests,
            }
        })
        .collect()
}

/// The totals the answers must add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpectedTally {
    /// Going.
    pub going: u32,
    /// Not going.
    pub not_going: u32,
    /// Maybe.
    pub maybe: u32,
    /// Extra guests of those going.
    pub extra_guests_going: u32,
}

impl ExpectedTally {
    /// Adds up `answers` (each member answers once).
    pub fn of(answers: &[PlannedAnswer]) -> ExpectedTally {
        let mut t = ExpectedTally::default();
        for a in answers {
            match a.response {
                RsvpResponse::Going => {
                    t.going += 1;
                    t.extra_guests_going += a.extra_guests;
                }
                RsvpResponse::NotGoing => t.not_going += 1,
                RsvpResponse::Maybe => t.maybe += 1,
                RsvpResponse::Unknown => {}
            }
        }
        t
    }

    /// Whether a stored tally has exactly these totals.
    pub fn matches(&self, tally: &EventTally) -> bool {
        tally.going == self.going
            && tally.not_going == self.not_going
            && tally.maybe == self.maybe
            && tally.extra_guests_going == self.extra_guests_going
    }
}

/// The devices of the simulated members of a group (every member except `own`'s
/// account), not unlinked: the devices an event card sent by `own` must reach.
pub fn member_devices(sim: &SimServer, members: &[Jid], own: &Jid) -> Vec<Jid> {
    let own_pn = own.to_non_ad();
    members
        .iter()
        .flat_map(|m| sim.registered_devices(m))
        .filter(|d| !d.removed && d.jid.to_non_ad() != own_pn)
        .map(|d| d.lid)
        .collect()
}

/// What the member devices made of a message so far.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Devices that decrypted the message to an event card.
    pub decrypted: usize,
    /// Devices that received it but could not decrypt it (or it was not a card), with
    /// why.
    pub failed: Vec<(Jid, String)>,
    /// A card as one member decrypted it.
    pub sample: Option<crate::event::EventCard>,
}

/// Counts what every member device (not `own`'s) made of `message_id` in `group`; a
/// device that decrypted a card other than `sent` (when given) counts as failed.
pub fn delivery(
    sim: &SimServer,
    group: &Jid,
    message_id: &str,
    own: &Jid,
    sent: Option<&crate::event::EventCard>,
) -> Result<Delivery, DemoError> {
    let mut d = Delivery::default();
    for view in sim.group_views(group, message_id)? {
        if is_same_account(sim, &view.device, own) {
            continue;
        }
        match (view.card, view.error) {
            (Some(card), None) if sent.is_some_and(|s| *s != card) => d
                .failed
                .push((view.device, format!("decrypted a different card: {card:?}"))),
            (Some(card), None) => {
                d.decrypted += 1;
                if d.sample.is_none() {
                    d.sample = Some(card);
                }
            }
            (_, Some(e)) => d.failed.push((view.device, e)),
            (None, None) => d.failed.push((view.device, "not an event card".into())),
        }
    }
    Ok(d)
}

fn is_same_account(sim: &SimServer, device: &Jid, own: &Jid) -> bool {
    let own_user = own.to_non_ad();
    sim.registered_devices(device)
        .first()
        .is_some_and(|d| d.jid.to_non_ad() == own_user)
}

/// Polls [`delivery`] until `expected` devices have answered (decrypted or failed) or
/// `timeout` passes; `progress` sees the count after every poll.
#[allow(clippy::too_many_arguments)]
pub async fn wait_for_delivery(
    sim: &SimServer,
    group: &Jid,
    message_id: &str,
    own: &Jid,
    sent: Option<&crate::event::EventCard>,
    expected: usize,
    timeout: Duration,
    mut progress: impl FnMut(usize),
) -> Result<Delivery, DemoError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let d = delivery(sim, group, message_id, own, sent)?;
        let seen = d.decrypted + d.failed.len();
        progress(seen);
        if seen >= expected || tokio::time::Instant::now() >= deadline {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway backend for `waevent serve --sim`: the real client behind it, and a demo
/// group whose simulated members answer every event card sent to it (a random answer
/// each, a few seconds later, as people would).
#[cfg(feature = "gateway")]
pub struct RespondingGroupBackend {
    inner: Arc<dyn crate::gateway::EventBackend>,
    sim: SimServer,
    group: Jid,
    members: Vec<Jid>,
    own: Jid,
    spread: Duration,
}

#[cfg(feature = "gateway")]
impl std::fmt::Debug for RespondingGroupBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespondingGroupBackend")
            .field("group", &self.group)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "gateway")]
impl RespondingGroupBackend {
    /// Wraps `inner` (the client of account `own`); cards sent to `group` get an
    /// answer from every one of `members` within `spread`.
    pub fn new(
        inner: Arc<dyn crate::gateway::EventBackend>,
        sim: SimServer,
        group: Jid,
        members: Vec<Jid>,
        own: Jid,
        spread: Duration,
    ) -> Self {
        RespondingGroupBackend {
            inner,
            sim,
            group,
            members,
            own,
            spread,
        }
    }

    fn answer_later(&self, event_id: String) {
        let sim = self.sim.clone();
        let group = self.group.clone();
        let own = self.own.clone();
        let answers = random_answers(&self.members, &mut rand::thread_rng());
        let expected = member_devices(&sim, &self.members, &own).len();
        let spread = self.spread;
        tokio::spawn(async move {
            let got = wait_for_delivery(
                &sim,
                &group,
                &event_id,
                &own,
                None,
                expected,
                Duration::from_secs(60),
                |_| {},
            )
            .await;
            if let Err(e) = got {
                tracing::warn!(error = %e, "simulated members did not get the card");
                return;
            }
            let step = spread
                .checked_div(u32::try_from(answers.len().max(1)).unwrap_or(u32::MAX))
                .unwrap_or_default();
            for a in answers {
                tokio::time::sleep(step).await;
                if let Err(e) = sim
                    .member_rsvp(&group, &a.member, &event_id, a.response, a.extra_guests)
                    .await
                {
                    tracing::warn!(member = %a.member, error = %e, "simulated RSVP failed");
                }
            }
        });
    }
}

#[cfg(feature = "gateway")]
#[async_trait::async_trait]
impl crate::gateway::EventBackend for RespondingGroupBackend {
    async fn send_event(
        &self,
        chat: &Jid,
        card: &crate::event::EventCard,
        options: &crate::event::SendOptions,
    ) -> Result<crate::gateway::SentMessage, crate::gateway::BackendError> {
        let sent = self.inner.send_event(chat, card, options).await?;
        if chat.to_non_ad() == self.group {
            self.answer_later(sent.message_id.clone());
        }
        Ok(sent)
    }

    async fn respond_to_event(
        &self,
        chat: &Jid,
        event_id: &str,
        rsvp: &crate::event::Rsvp,
        options: &crate::event::SendOptions,
    ) -> Result<crate::gateway::SentMessage, crate::gateway::BackendError> {
        self.inner
            .respond_to_event(chat, event_id, rsvp, options)
            .await
    }

    async fn edit_event(
        &self,
        chat: &Jid,
        event_id: &str,
        card: &crate::event::EventCard,
        options: &crate::event::SendOptions,
    ) -> Result<crate::gateway::SentMessage, crate::gateway::BackendError> {
        self.inner.edit_event(chat, event_id, card, options).await
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::gateway::IncomingEvent> {
        self.inner.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_answers_add_up() {
        let members: Vec<Jid> = (0..500)
            .map(|i| Jid::lid_user(format!("{}", 1000 + i)))
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let answers = random_answers(&members, &mut rng);
        assert_eq!(answers.len(), 500);
        let t = ExpectedTally::of(&answers);
        assert_eq!(t.going + t.not_going + t.maybe, 500);
        assert!(t.going > 100 && t.not_going > 100 && t.maybe > 100, "{t:?}");
        assert!(
            answers
                .iter()
                .all(|a| a.response == RsvpResponse::Going || a.extra_guests == 0)
        );
        let tally = EventTally {
            going: t.going,
            not_going: t.not_going,
            maybe: t.maybe,
            extra_guests_going: t.extra_guests_going,
            responses: Vec::new(),
        };
        assert!(t.matches(&tally));
        let off = EventTally {
            maybe: t.maybe + 1,
            ..tally
        };
        assert!(!t.matches(&off));
    }
}
