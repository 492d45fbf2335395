//! `Idempotency-Key`: a repeated key returns the first response and never sends twice.
//!
//! Two layers:
//! * in this process, one async lock per (instance, key): concurrent duplicates queue
//!   behind the first request and, once it finished, find its stored response;
//! * in the instance's store, the key's claim and then its response (status and body
//!   bytes), so a duplicate after a restart gets the same answer.
//!
//! A claim is released (the key may be used again) when the request failed before
//! anything could be sent: not connected, event not found, refused by the backend.
//! Once the backend was asked and may have sent — success, or a failure of unknown
//! outcome — the response is stored for good. The same key with a different request
//! (another route, instance or body) is refused with 422; a key still claimed by a
//! request that never finished (the gateway died mid-send) is refused with 409.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::InstanceRuntime;
use super::http::{Reply, now_ms};
use crate::store::{IdempotencyClaim, IdempotencyState, StoredResponse};

/// What running a request gave.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Nothing was sent: the key is released.
    NotSent(Reply),
    /// The backend was asked (and may have sent): the reply is stored under the key.
    Attempted(Reply),
}

type LockMap = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// The in-process locks, one per (instance, key) in use.
#[derive(Default)]
pub(crate) struct KeyLocks {
    map: Mutex<LockMap>,
}

/// Holds one key's lock; removes the map entry when no one else waits for it.
struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    slot: (String, String),
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.slot)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.slot);
        }
    }
}

impl KeyLocks {
    async fn lock(&self, instance: &str, key: &str) -> KeyGuard<'_> {
        let slot = (instance.to_string(), key.to_string());
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(slot.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyGuard {
            locks: self,
            slot,
            guard: Some(guard),
        }
    }

    /// How many keys have a lock right now (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// A digest of what a request asks for (API, route, instance, body): the same key
/// with another fingerprint is refused. Tokens are not part of it.
pub(crate) fn fingerprint(api: &str, route: &str, instance: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [api.as_bytes(), route.as_bytes(), instance.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(body);
    hex::encode(h.finalize())
}

/// 16 random bytes as 32 upper-case hex characters (Z-API's `zaapId` form).
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    hex::encode_upper(b)
}

/// Runs `request` at most once per `key` (see the module docs); without a key it
/// just runs. `error` builds an error reply in the API's shape.
pub(crate) async fn run<F, Fut>(
    locks: &KeyLocks,
    inst: &InstanceRuntime,
    key: Option<&str>,
    fingerprint: String,
    error: impl Fn(StatusCode, &str) -> Reply,
    request: F,
) -> Reply
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let Some(key) = key else {
        return match request().await {
            Outcome::NotSent(r) | Outcome::Attempted(r) => r,
        };
    };
    let instance = inst.config.name.as_str();
    let _guard = locks.lock(instance, key).await;
    let claim = IdempotencyClaim {
        instance: instance.to_string(),
        key: key.to_string(),
        fingerprint,
        now_ms: now_ms(),
    };
    let state = match inst.store.claim_idempotency_key(&claim).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(instance, error = %e, "idempotency store failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Idempotency store failed; the request was not run",
            );
        }
    };
    match state {
        IdempotencyState::Claimed => {}
        IdempotencyState::Completed(stored) => {
            let status =
                StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Reply {
                status,
                body: stored.body,
                replayed: true,
                allow: None,
            };
        }
        IdempotencyState::InProgress { .. } => {
            return error(
                StatusCode::CONFLICT,
                "A request with this Idempotency-Key is still in progress or was interrupted; use a new key",
            );
        }
        IdempotencyState::Mismatch => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "This Idempotency-Key was already used for a different request",
            );
        }
    }
    match request().await {
        Outcome::Attempted(reply) => {
            let stored = StoredResponse {
                status: reply.status.as_u16(),
                body: reply.body.clone(),
            };
            if let Err(e) = inst
                .store
                .complete_idempotency_key(instance, key, &stored)
                .await
            {
                // The key stays claimed: a duplicate gets 409, never a second send.
                tracing::error!(instance, error = %e, "cannot store an idempotent response");
            }
            reply
        }
        Outcome::NotSent(reply) => {
            if let Err(e) = inst.store.release_idempotency_key(instance, key).await {
                tracing::error!(instance, error = %e, "cannot release an idempotency key");
            }
            reply
        }
    }
}

/// Forgets idempotency keys older than `ttl` (stale in-progress claims included),
/// now and then every `ttl / 4` (at most every 10 minutes), until `stop` is set.
pub(crate) async fn run_pruning(
    inst: std::sync::Arc<InstanceRuntime>,
    ttl: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = (ttl / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(600),
    );
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    loop {
        let before = crate::store::PruneBefore {
            idempotency_keys: Some(now_ms().saturating_sub(ttl_ms)),
            ..Default::default()
        };
        match inst.store.prune(before).await {
            Ok(counts) if counts.idempotency_keys > 0 => {
                tracing::info!(instance = %inst.config.name, removed = counts.idempotency_keys, "idempotency keys expired");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(instance = %inst.config.name, error = %e, "cannot prune idempotency keys");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_fields() {
        let a = fingerprint("z-api", "send-event", "main", b"{}");
        assert_eq!(a, fingerprint("z-api", "send-event", "main", b"{}"));
        assert_ne!(a, fingerprint("z-api", "send-event", "main", b"{ }"));
        assert_ne!(a, fingerprint("z-api", "send-eventm", "ain", b"{}"));
        assert_ne!(a, fingerprint("ryze", "send-event", "main", b"{}"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn random_ids() {
        let a = random_id();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        );
        assert_ne!(a, random_id());
    }

    #[tokio::test]
    async fn locks_serialize_and_clean_up() {
        let locks = Arc::new(KeyLocks::default());
        let g = locks.lock("i", "k").await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("i", "k").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        // Another key is independent.
        drop(locks.lock("i", "other").await);
        drop(g);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn stale_claims_expire() {
        use crate::gateway::{DisconnectedBackend, GatewayConfig};
        use crate::store::{MemoryStore, Store};
        let config = GatewayConfig::from_toml(
            "[[instances]]\nname = \"main\"\ntoken = \"instance-token-0123456789\"",
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let inst = Arc::new(InstanceRuntime {
            config: config.instances[0].clone(),
            backend: Arc::new(DisconnectedBackend::new()),
            store: store.clone(),
            stream: tokio::sync::broadcast::channel(1).0,
            wake: Arc::new(tokio::sync::Notify::new()),
        });
        let claim = |key: &str, at: i64| IdempotencyClaim {
            instance: "main".into(),
            key: key.into(),
            fingerprint: "f".into(),
            now_ms: at,
        };
        // A claim from two hours ago that never finished, and a fresh one.
        let now = now_ms();
        assert_eq!(
            store
                .claim_idempotency_key(&claim("old", now - 7_200_000))
                .await
                .unwrap(),
            IdempotencyState::Claimed
        );
        assert_eq!(
            store
                .claim_idempotency_key(&claim("new", now))
                .await
                .unwrap(),
            IdempotencyState::Claimed
        );
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run_pruning(
            inst,
            std::time::Duration::from_secs(3600),
            stop_rx,
        ));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(
            store
                .claim_idempotency_key(&claim("old", now))
                .await
                .unwrap(),
            IdempotencyState::Claimed
        );
        assert!(matches!(
            store
                .claim_idempotency_key(&claim("new", now))
                .await
                .unwrap(),
            IdempotencyState::InProgress { .. }
        ));
    }
}
