//! Groups in the simulated world and the members the simulator plays itself.
//!
//! (Issue 5 skeleton: the API the end-to-end tests, the demo and the gateway's
//! `serve --sim` build on. The simulator-groups owner fills it in.)

use std::ops::RangeInclusive;

use crate::event::{EventCard, RsvpResponse};
use crate::jid::Jid;

use super::SimError;
use super::server::SimServer;

/// How group members are addressed in stanzas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupAddressing {
    /// LID addressing (WhatsApp's default for new groups).
    #[default]
    Lid,
    /// Phone-number addressing.
    Pn,
}

/// What group to create.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Group subject.
    pub subject: String,
    /// Accounts that already exist (e.g. the account a client under test is paired
    /// to), added as members; the first one is the group's creator and admin.
    pub accounts: Vec<Jid>,
    /// How many simulated members to create in addition (each a new account).
    pub simulated_members: usize,
    /// How many devices each simulated member has (primary phone included), chosen
    /// at random in this range (1..=4 at most).
    pub devices_per_member: RangeInclusive<u16>,
    /// LID or PN addressing.
    pub addressing: GroupAddressing,
}

/// What one simulated member device made of a message it received.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    /// The device (in the group's addressing).
    pub device: Jid,
    /// The event card it decrypted, if the message was one.
    pub card: Option<EventCard>,
    /// Why it could not decrypt, if it could not.
    pub error: Option<String>,
}

impl SimServer {
    /// Creates a group; returns its JID (`<id>@g.us`).
    pub fn create_group(&self, spec: GroupSpec) -> Result<Jid, SimError> {
        let _ = spec;
        Err(SimError::UnknownAccount(
            "groups not implemented yet".into(),
        ))
    }

    /// The group's members (user JIDs in the group's addressing), creator first.
    pub fn group_members(&self, group: &Jid) -> Result<Vec<Jid>, SimError> {
        Err(SimError::UnknownAccount(group.to_string()))
    }

    /// What every simulated member device made of message `message_id` in `group`
    /// (devices that have not received it yet are missing).
    pub fn group_views(&self, group: &Jid, message_id: &str) -> Result<Vec<DeviceView>, SimError> {
        let _ = message_id;
        Err(SimError::UnknownAccount(group.to_string()))
    }

    /// Makes simulated member `member` answer event `event_id` (which its devices
    /// received) from its primary phone: an encrypted RSVP sent to the group like a
    /// real phone sends it. Returns the RSVP's message id.
    pub async fn member_rsvp(
        &self,
        group: &Jid,
        member: &Jid,
        event_id: &str,
        response: RsvpResponse,
        extra_guests: u32,
    ) -> Result<String, SimError> {
        let _ = (member, event_id, response, extra_guests);
        Err(SimError::UnknownAccount(group.to_string()))
    }

    /// Removes `member` from `group` (a `w:gp2` remove notification goes to every
    /// remaining member device).
    pub fn remove_member(&self, group: &Jid, member: &Jid) -> Result<(), SimError> {
        let _ = member;
        Err(SimError::UnknownAccount(group.to_string()))
    }
}
