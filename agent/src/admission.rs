//! Admission: who may hold a connection, and who may ask for costly
//! evidence, when more clients come than the agent serves at once.
//!
//! The threat: anyone who can reach the agent's port can open connections,
//! hold them open while sending nothing or one byte every few seconds, and
//! ask for session evidence in a loop. None of that may keep an owner out.
//! Owners are the clients whose certificate's key has a role in the
//! manifest; everyone else (no certificate, or a key the manifest does not
//! name: anyone can make a certificate) is anonymous.
//!
//! - **Handshakes** ([`Handshakes`]): [`HANDSHAKE_SLOTS`] at once, each
//!   within [`HANDSHAKE_TIMEOUT`]. Who is an owner is known only once the
//!   handshake is over, so these slots are everyone's; when they are all
//!   taken, the oldest handshake that has been going on for more than
//!   [`HANDSHAKE_SHIELD`] is aborted to make room. A client that completes its
//!   handshake promptly therefore gets through however many idle sockets are
//!   open: keeping it out takes [`HANDSHAKE_SLOTS`] new connections every
//!   [`HANDSHAKE_SHIELD`], a sustained rate rather than a count.
//! - **Connections** ([`Connections`]): after the handshake, an anonymous
//!   client takes one of `anonymous_connections` slots of its own pool; an
//!   owner takes one of the other [`MAX_CONNECTIONS`] `- anonymous_connections`
//!   (or, when those are all taken by owners, an anonymous one). A client
//!   that finds no slot is told `503` with `Retry-After` on its first request
//!   and closed; [`REJECTING`] such answers are given at once, each within
//!   [`REJECT_TIMEOUT`], and beyond them the connection is just closed.
//! - **Time**: a connection on which no byte moves either way for
//!   `idle_timeout` while the agent is not working on one of its requests is
//!   closed (see [`crate::activity`]), and request bodies must arrive at a
//!   floor rate (see [`crate::body`]): a slot is never held for long by a
//!   client that does not use it.
//! - **Session evidence** ([`EvidenceGate`]): each costs a report from the
//!   secure processor (serialised per host on hardware) and a vTPM quote.
//!   Anonymous clients have [`ANONYMOUS_EVIDENCE_RUNNING`] of them in work at
//!   a time and [`ANONYMOUS_EVIDENCE_QUEUE`] waiting; beyond that they are told
//!   `429` with `Retry-After`. Owners' requests are never counted, so they
//!   wait behind at most [`ANONYMOUS_EVIDENCE_RUNNING`] anonymous ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

/// Connections served at once, owners' and anonymous clients' together.
pub const MAX_CONNECTIONS: usize = 64;
/// TLS handshakes in progress at once.
pub const HANDSHAKE_SLOTS: usize = 64;
/// Time allowed for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a handshake is safe from being aborted to make room for a new one.
pub const HANDSHAKE_SHIELD: Duration = Duration::from_secs(1);
/// Clients told at once that there is no slot for them.
pub const REJECTING: usize = 16;
/// Time a client without a slot has to send the request that gets its `503`.
pub const REJECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Anonymous session evidence requests in work at once.
pub const ANONYMOUS_EVIDENCE_RUNNING: usize = 2;
/// Anonymous session evidence requests waiting for their turn.
pub const ANONYMOUS_EVIDENCE_QUEUE: usize = 4;
/// What `Retry-After` says to a client turned away, in seconds.
pub const RETRY_AFTER_S: u64 = 1;

/// How clients are held to time and to their share of the connections
/// (configuration keys `idle_timeout_s`, `body_min_rate`, `anonymous_connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// No byte either way for this long, while the agent is not working on a request, closes a connection.
    pub idle_timeout: Duration,
    /// The average rate, in bytes per second, below which a request body is cut off (after a fixed grace).
    pub body_min_rate: u64,
    /// The connection slots, of [`MAX_CONNECTIONS`], that anonymous clients may hold.
    pub anonymous_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            idle_timeout: Duration::from_secs(30),
            body_min_rate: 64 << 10,
            anonymous_connections: 16,
        }
    }
}

/// Who a client is, for admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Its certificate's key has a role in the manifest.
    Owner,
    /// No certificate, or a key the manifest does not name.
    Anonymous,
}

/// Everything admission decides on, shared by the accept loop and the handlers.
pub struct Admission {
    /// The limits in force.
    pub limits: ClientLimits,
    /// Handshakes in progress.
    pub handshakes: Arc<Handshakes>,
    /// Connection slots after the handshake.
    pub connections: Connections,
    /// Anonymous session evidence requests.
    pub evidence: EvidenceGate,
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: ClientLimits) -> Admission {
        Admission {
            limits,
            handshakes: Arc::new(Handshakes::new(HANDSHAKE_SLOTS, HANDSHAKE_SHIELD)),
            connections: Connections::new(limits.anonymous_connections),
            evidence: EvidenceGate::new(ANONYMOUS_EVIDENCE_RUNNING, ANONYMOUS_EVIDENCE_QUEUE),
        }
    }
}

/// The handshakes in progress, oldest first; see the module documentation.
pub struct Handshakes {
    capacity: usize,
    shield: Duration,
    queue: Mutex<HandshakeQueue>,
    freed: Notify,
}

#[derive(Default)]
struct HandshakeQueue {
    next_id: u64,
    pending: VecDeque<(u64, Instant, oneshot::Sender<()>)>,
}

/// A handshake's place; dropping it frees the place.
pub struct HandshakeSlot {
    id: u64,
    pool: Arc<Handshakes>,
    /// Completes when the handshake is aborted to make room for a newer one.
    pub evicted: oneshot::Receiver<()>,
}

impl Handshakes {
    /// `capacity` handshakes at once, each safe from eviction for `shield`.
    pub fn new(capacity: usize, shield: Duration) -> Handshakes {
        Handshakes { capacity: capacity.max(1), shield, queue: Mutex::default(), freed: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, HandshakeQueue> {
        // Every update is a single push or remove: the queue is consistent after a panic.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handshakes in progress now.
    pub fn in_progress(&self) -> usize {
        self.lock().pending.len()
    }

    /// A place for a new handshake: a free one, or the oldest handshake's
    /// once it is older than the shield (it is told through its
    /// [`HandshakeSlot::evicted`]), or, when every handshake is younger, the
    /// first place to free up.
    ///
    /// # Cancel safety
    /// Cancel-safe: a place is taken only in the poll that returns it.
    pub async fn acquire(self: &Arc<Self>) -> HandshakeSlot {
        loop {
            let wait = {
                let mut q = self.lock();
                if q.pending.len() >= self.capacity {
                    if let Some(age) = q.pending.front().map(|(_, started, _)| started.elapsed()) {
                        if age >= self.shield {
                            if let Some((_, _, abort)) = q.pending.pop_front() {
                                log::debug!(
                                    "{} handshakes in progress: aborting one that has taken {:.1} s",
                                    self.capacity,
                                    age.as_secs_f64()
                                );
                                let _ = abort.send(());
                            }
                        }
                    }
                }
                if q.pending.len() < self.capacity {
                    let id = q.next_id;
                    q.next_id += 1;
                    let (abort, evicted) = oneshot::channel();
                    q.pending.push_back((id, Instant::now(), abort));
                    return HandshakeSlot { id, pool: Arc::clone(self), evicted };
                }
                q.pending
                    .front()
                    .map_or(self.shield, |(_, started, _)| self.shield.saturating_sub(started.elapsed()))
            };
            tokio::select! {
                _ = self.freed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut q = self.pool.lock();
        if let Some(i) = q.pending.iter().position(|(id, _, _)| *id == self.id) {
            q.pending.remove(i);
        }
        drop(q);
        self.pool.freed.notify_one();
    }
}

/// The connection slots after the handshake: owners' and anonymous clients' pools.
pub struct Connections {
    owners: Arc<Semaphore>,
    anonymous: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
}

/// What a client that completed its handshake gets.
pub enum Admitted {
    /// A slot: serve it while the permit lives.
    Served(OwnedSemaphorePermit),
    /// No slot: answer `503` within [`REJECT_TIMEOUT`] while the permit lives.
    Rejected(OwnedSemaphorePermit),
    /// No slot and no room to say so: close the connection.
    Dropped,
}

impl Connections {
    /// [`MAX_CONNECTIONS`] slots of which `anonymous` (at most all but one) are for anonymous clients.
    pub fn new(anonymous: usize) -> Connections {
        let anonymous = anonymous.clamp(1, MAX_CONNECTIONS - 1);
        Connections {
            owners: Arc::new(Semaphore::new(MAX_CONNECTIONS - anonymous)),
            anonymous: Arc::new(Semaphore::new(anonymous)),
            rejecting: Arc::new(Semaphore::new(REJECTING)),
        }
    }

    /// A slot for a client of `class`, without waiting.
    pub fn admit(&self, class: Class) -> Admitted {
        let slot = match class {
            Class::Owner => Arc::clone(&self.owners)
                .try_acquire_owned()
                .or_else(|_| Arc::clone(&self.anonymous).try_acquire_owned()),
            Class::Anonymous => Arc::clone(&self.anonymous).try_acquire_owned(),
        };
        match slot {
            Ok(permit) => Admitted::Served(permit),
            Err(_) => match Arc::clone(&self.rejecting).try_acquire_owned() {
                Ok(permit) => Admitted::Rejected(permit),
                Err(_) => Admitted::Dropped,
            },
        }
    }
}

/// Bounds the anonymous session evidence requests in work and waiting.
pub struct EvidenceGate {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// An anonymous request's turn; dropping it lets the next one in.
pub struct EvidenceTurn {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

/// Too many anonymous requests are in work or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many session evidence requests from clients without an owner key; retry in {RETRY_AFTER_S} s")]
pub struct Busy;

impl EvidenceGate {
    /// `running` requests in work at once and `queue` waiting.
    pub fn new(running: usize, queue: usize) -> EvidenceGate {
        EvidenceGate {
            admitted: Arc::new(Semaphore::new(running.max(1) + queue)),
            running: Arc::new(Semaphore::new(running.max(1))),
        }
    }

    /// Waits for an anonymous request's turn, or refuses at once when the queue is full.
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped wait gives its place in the queue back.
    pub async fn enter(&self) -> Result<EvidenceTurn, Busy> {
        let admitted = Arc::clone(&self.admitted).try_acquire_owned().map_err(|_| Busy)?;
        let running = Arc::clone(&self.running).acquire_owned().await.map_err(|_| Busy)?;
        Ok(EvidenceTurn { _admitted: admitted, _running: running })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_handshake_pool_evicts_its_oldest_handshake_past_the_shield() {
        let pool = Arc::new(Handshakes::new(2, Duration::from_millis(400)));
        let mut first = pool.acquire().await;
        let _second = pool.acquire().await;
        // Both younger than the shield: the third waits.
        let third = tokio::time::timeout(Duration::from_millis(100), pool.acquire()).await;
        assert!(third.is_err());
        assert!(first.evicted.try_recv().is_err(), "nobody was evicted yet");
        // Past the shield, the oldest gives way.
        let _third = pool.acquire().await;
        assert!(first.evicted.try_recv().is_ok(), "the oldest handshake was told to stop");
        assert_eq!(pool.in_progress(), 2);
        drop(first);
        assert_eq!(pool.in_progress(), 2, "the evicted handshake's place was already taken");
    }

    #[tokio::test]
    async fn a_finished_handshake_frees_its_place() {
        let pool = Arc::new(Handshakes::new(1, Duration::from_secs(3600)));
        let first = pool.acquire().await;
        let waiting = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.acquire().await.id }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(waiting.await.unwrap(), 1);
    }

    #[test]
    fn anonymous_clients_never_take_the_owners_slots() {
        let c = Connections::new(16);
        let anonymous: Vec<_> = (0..16)
            .map(|_| match c.admit(Class::Anonymous) {
                Admitted::Served(p) => p,
                _ => panic!("an anonymous slot was free"),
            })
            .collect();
        let rejected: Vec<_> = (0..REJECTING)
            .map(|_| match c.admit(Class::Anonymous) {
                Admitted::Rejected(p) => p,
                _ => panic!("the 17th anonymous client got a slot"),
            })
            .collect();
        assert!(matches!(c.admit(Class::Anonymous), Admitted::Dropped));
        let owners: Vec<_> = (0..MAX_CONNECTIONS - 16)
            .map(|_| match c.admit(Class::Owner) {
                Admitted::Served(p) => p,
                _ => panic!("an owner found no slot while anonymous clients held theirs"),
            })
            .collect();
        drop(rejected);
        assert!(matches!(c.admit(Class::Owner), Admitted::Rejected(_)));
        drop(anonymous);
        assert!(matches!(c.admit(Class::Owner), Admitted::Served(_)), "owners may borrow anonymous slots");
        assert_eq!(owners.len(), 48);
    }

    #[tokio::test]
    async fn the_evidence_gate_queues_a_few_and_refuses_the_rest() {
        let gate = Arc::new(EvidenceGate::new(1, 1));
        let running = gate.enter().await.unwrap();
        let queued = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.enter().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.enter().await.err(), Some(Busy));
        drop(running);
        assert_eq!(queued.await.unwrap(), Ok(()));
        assert!(gate.enter().await.is_ok());
    }
}
