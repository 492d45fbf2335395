//! What a send must know before it can encrypt, from the store's caches or from the
//! server: group metadata (`w:g2`), device lists (usync), pre-key bundles for devices
//! without a session (one batched `encrypt` IQ), and the per-device pairwise targets.

use std::collections::HashMap;

use rand::RngCore;

use super::Client;
use super::group_info::{GroupInfoError, group_info_iq, parse_group_info};
use super::key_bundles::{
    BUNDLE_BATCH, BundleAnswer, FetchedBundle, bundle_fetch_iq, parse_bundles,
};
use super::send::SendError;
use super::usync::{USYNC_BATCH, device_list_iq, parse_device_lists};
use crate::jid::Jid;
use crate::messaging::PairwiseTarget;
use crate::signal::address::ProtocolAddress;
use crate::signal::store::SignalStoreExt;
use crate::store::{DeviceList, GroupMetadata, StoreBatch, now_ms};

/// Bundles fetched for a send, and the users whose device lists turned out stale
/// (`406` for one of their devices).
#[derive(Debug, Default)]
pub(crate) struct FetchedBundles {
    pub bundles: HashMap<Jid, FetchedBundle>,
    pub stale_users: Vec<Jid>,
}

impl Client {
    /// The group's metadata: from the store's cache unless `refresh`, else from the
    /// server (then cached, with the LID↔PN pairs it reveals).
    pub(crate) async fn resolve_group(
        &self,
        group: &Jid,
        refresh: bool,
    ) -> Result<GroupMetadata, SendError> {
        let store = self.store();
        if !refresh && let Some(g) = store.load_group(group).await? {
            return Ok(g);
        }
        let response =
            self.send_iq(group_info_iq(group))
                .await
                .map_err(|e| match GroupInfoError::from_iq(group, e) {
                    e @ (GroupInfoError::NotFound(_) | GroupInfoError::Forbidden(_)) => {
                        SendError::Rejected(e.to_string())
                    }
                    e => SendError::Query(e.to_string()),
                })?;
        let info = parse_group_info(group, &response, now_ms())
            .map_err(|e| SendError::Query(e.to_string()))?;
        store
            .commit_batch(StoreBatch {
                groups: vec![info.metadata.clone()],
                mappings: info.mappings,
                ..StoreBatch::default()
            })
            .await?;
        Ok(info.metadata)
    }

    /// The device lists of `users` (user JIDs): cached ones unless `refresh`, the rest
    /// from one usync IQ per [`USYNC_BATCH`] users (then cached, with the LIDs the
    /// server gave). Users the server gives no list for are left out.
    pub(crate) async fn resolve_device_lists(
        &self,
        users: &[Jid],
        refresh: bool,
    ) -> Result<Vec<DeviceList>, SendError> {
        let store = self.store();
        let users: Vec<Jid> = users.iter().map(Jid::to_non_ad).collect();
        let cached = if refresh {
            vec![None; users.len()]
        } else {
            store.load_device_lists(&users).await?
        };
        let mut lists = Vec::with_capacity(users.len());
        let mut missing = Vec::new();
        for (user, list) in users.iter().zip(cached) {
            match list {
                Some(l) => lists.push(l),
                None => missing.push(user.clone()),
            }
        }
        for chunk in missing.chunks(USYNC_BATCH) {
            let sid = self.usync_sid();
            let response = self
                .send_iq(device_list_iq(chunk, &sid))
                .await
                .map_err(|e| SendError::Query(format!("usync device lists: {e}")))?;
            let answer = parse_device_lists(&response, now_ms())
                .map_err(|e| SendError::Query(e.to_string()))?;
            for (user, code, text) in &answer.failed {
                tracing::warn!(%user, code, %text, "usync gave no devices for a user");
            }
            // Keep only lists for users we asked about (a server answering about
            // others must not fill our cache).
            let asked: std::collections::HashSet<&Jid> = chunk.iter().collect();
            let fresh: Vec<DeviceList> = answer
                .lists
                .into_iter()
                .filter(|l| asked.contains(&l.user))
                .collect();
            store
                .commit_batch(StoreBatch {
                    device_lists: fresh.clone(),
                    mappings: answer.mappings,
                    ..StoreBatch::default()
                })
                .await?;
            lists.extend(fresh);
        }
        Ok(lists)
    }

    /// Fetches pre-key bundles for `devices` in batches of [`BUNDLE_BATCH`]. A device
    /// the server refuses (`406`: no longer registered; `404`) gets no bundle, and its
    /// user's cached device list is dropped so the next send asks again.
    pub(crate) async fn fetch_bundles(&self, devices: &[Jid]) -> Result<FetchedBundles, SendError> {
        let mut out = FetchedBundles::default();
        for chunk in devices.chunks(BUNDLE_BATCH) {
            let response = self
                .send_iq(bundle_fetch_iq(chunk))
                .await
                .map_err(|e| SendError::Query(format!("pre-key bundle fetch: {e}")))?;
            let answers = parse_bundles(&response).map_err(|e| SendError::Query(e.to_string()))?;
            for (jid, answer) in answers {
                match answer {
                    BundleAnswer::Bundle(b) => {
                        out.bundles.insert(jid, b);
                    }
                    BundleAnswer::Refused { code, text } => {
                        tracing::info!(device = %jid, code, %text, "server refused a pre-key bundle");
                        out.stale_users.push(jid.to_non_ad());
                    }
                    BundleAnswer::Unreadable(e) => {
                        tracing::warn!(device = %jid, error = %e, "unreadable pre-key bundle");
                    }
                }
            }
        }
        out.stale_users.sort();
        out.stale_users.dedup();
        if !out.stale_users.is_empty() {
            self.store().delete_device_lists(&out.stale_users).await?;
        }
        Ok(out)
    }

    /// One [`PairwiseTarget`] per device: its stored session, and a fetched bundle for
    /// each device without a current session (all fetched in one batched IQ). Also
    /// returns the users whose device lists went stale.
    pub(crate) async fn pairwise_targets(
        &self,
        devices: &[Jid],
    ) -> Result<(Vec<PairwiseTarget>, Vec<Jid>), SendError> {
        let addresses: Vec<ProtocolAddress> =
            devices.iter().map(ProtocolAddress::from_jid).collect();
        let sessions = self.store().load_session_records(&addresses).await?;
        let need: Vec<Jid> = devices
            .iter()
            .zip(&sessions)
            .filter(|(_, s)| !s.has_current_session())
            .map(|(d, _)| d.clone())
            .collect();
        let mut fetched = if need.is_empty() {
            FetchedBundles::default()
        } else {
            self.fetch_bundles(&need).await?
        };
        let targets = devices
            .iter()
            .zip(sessions)
            .map(|(d, session)| PairwiseTarget {
                device: d.clone(),
                bundle: fetched.bundles.remove(d).map(|b| b.bundle),
                session,
            })
            .collect();
        Ok((targets, fetched.stale_users))
    }

    /// A fresh usync session id.
    fn usync_sid(&self) -> String {
        let mut b = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    }
}
