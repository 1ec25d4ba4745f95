//! The heartbeat path: the node's hellos as UDP datagrams over a second network (a traffic
//! interface), so that in election mode a cut failover link alone does not look like a dead
//! peer (`docs/ARCHITECTURE.md`, "The heartbeat path").
//!
//! Authentication is as strong as the failover link's and rests on the same pin: every
//! datagram is signed with the node's own key (Ed25519, the key `failoverctl keygen` makes and
//! the TLS link presents) and carries the public key, which must hash to the pinned fingerprint
//! before the signature is even checked. Freshness: each datagram carries a challenge (a random
//! per-start salt and the sender's clock) and echoes the latest challenge it verified from the
//! receiver; a datagram counts only if it echoes one of the receiver's own challenges no older
//! than `max_age` (the dead interval), and only if its own challenge is newer than the last one
//! counted. A recorded datagram replayed later, or held back longer than `max_age`, proves
//! nothing and is dropped; a datagram from any other key is dropped unverified.
//!
//! [`HeartbeatSeal`] is the check itself, without I/O; [`spawn_heartbeat`] runs it on a UDP
//! socket in a tokio task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use failoverd_wire::heartbeat::{Challenge, Heartbeat, HeartbeatView, SIGNATURE_CONTEXT};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls::pki_types::PrivateKeyDer;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::{Fingerprint, Identity, LinkError, Pins};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const ED25519_SIGNATURE_LEN: usize = 64;
/// Largest datagram read; heartbeats are about 220 bytes, a longer one is malformed.
const RECEIVE_BUFFER: usize = 2048;
/// Hellos waiting to be sealed and sent; more are dropped (the next one is due soon).
const SEND_QUEUE: usize = 16;
/// Verified hellos the driver has not taken yet; more are dropped.
const RECEIVE_QUEUE: usize = 64;
/// At most one log line per drop reason in this interval; the others are counted.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Why a received datagram was dropped, cheapest check first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatDrop {
    /// Not a heartbeat datagram of this version.
    Malformed,
    /// Its key is not the pinned one (or not an Ed25519 key).
    WrongKey,
    /// The signature does not verify.
    BadSignature,
    /// Authentic, but it echoes no recent challenge of ours: an old datagram replayed, held
    /// back, or the first one of an exchange (the peer has not heard us yet).
    Stale,
    /// Authentic and fresh, but not newer than one already counted: a duplicate.
    Replayed,
}

impl HeartbeatDrop {
    /// Stable name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::WrongKey => "wrong_key",
            Self::BadSignature => "bad_signature",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
        }
    }

    const ALL: [HeartbeatDrop; 5] = [
        Self::Malformed,
        Self::WrongKey,
        Self::BadSignature,
        Self::Stale,
        Self::Replayed,
    ];
}

/// Seals our hellos and opens the peer's: the signature, the pin and the freshness check,
/// without I/O (the caller passes its clock in microseconds).
pub struct HeartbeatSeal {
    key_pair: Ed25519KeyPair,
    spki: Vec<u8>,
    pins: Pins,
    salt: u64,
    max_age: u64,
    /// The peer's latest challenge we verified: what we echo.
    peer: Option<Challenge>,
    /// The peer's challenge of the last datagram counted: later ones must be newer.
    counted: Option<Challenge>,
}

impl HeartbeatSeal {
    /// A seal for `identity` (which must be an Ed25519 key) talking to a peer with one of the
    /// keys `pins`; a datagram counts if it echoes a challenge of ours at most `max_age` old. `salt`
    /// must be random and differ at every start (0 is replaced by 1).
    pub fn new(
        identity: &Identity,
        pins: impl Into<Pins>,
        max_age: Duration,
        salt: u64,
    ) -> Result<Self, LinkError> {
        let not_ed25519 = || {
            LinkError::Config(
                "the heartbeat path signs with an Ed25519 node key (as `failoverctl keygen` makes); this node's key is of another kind".to_string(),
            )
        };
        let PrivateKeyDer::Pkcs8(der) = identity.key() else {
            return Err(not_ed25519());
        };
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|_| not_ed25519())?;
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key_pair.public_key().as_ref());
        if !spki_fingerprint(&spki).ct_eq(&identity.fingerprint()) {
            return Err(not_ed25519());
        }
        Ok(Self {
            key_pair,
            spki,
            pins: pins.into(),
            salt: salt.max(1),
            max_age: max_age.as_micros() as u64,
            peer: None,
            counted: None,
        })
    }

    /// The datagram carrying `hello` (one whole hello frame), with a fresh challenge stamped
    /// `now_us`.
    pub fn seal(&self, now_us: u64, hello: &[u8]) -> Vec<u8> {
        Heartbeat {
            challenge: Challenge {
                salt: self.salt,
                stamp: now_us,
            },
            echo: self.peer,
            hello,
            key: &self.spki,
        }
        .emit(ED25519_SIGNATURE_LEN, |signed| {
            self.key_pair.sign(signed).as_ref().to_vec()
        })
    }

    /// The key that signed `datagram` (one of the pins) and the peer's hello frame in it, if it
    /// is authentic and fresh at `now_us`; else why not.
    pub fn open<'a>(
        &mut self,
        now_us: u64,
        datagram: &'a [u8],
    ) -> Result<(Fingerprint, &'a [u8]), HeartbeatDrop> {
        let view = HeartbeatView::new_checked(datagram).map_err(|_| HeartbeatDrop::Malformed)?;
        let key = view.key();
        let sender = spki_fingerprint(key);
        if !self.pins.accepts(&sender) || !key.starts_with(&ED25519_SPKI_PREFIX) {
            return Err(HeartbeatDrop::WrongKey);
        }
        let mut signed = Vec::with_capacity(SIGNATURE_CONTEXT.len() + view.signed().len());
        signed.extend_from_slice(SIGNATURE_CONTEXT);
        signed.extend_from_slice(view.signed());
        UnparsedPublicKey::new(&ED25519, &key[ED25519_SPKI_PREFIX.len()..])
            .verify(&signed, view.signature())
            .map_err(|_| HeartbeatDrop::BadSignature)?;
        let challenge = view.challenge();
        let fresh = view.echo().is_some_and(|echo| {
            echo.salt == self.salt && echo.stamp <= now_us && now_us - echo.stamp <= self.max_age
        });
        let newer = |than: Option<Challenge>| {
            than.is_none_or(|c| c.salt != challenge.salt || challenge.stamp > c.stamp)
        };
        // What we echo moves only forward: an old authentic datagram replayed must not make us
        // echo a stale challenge (the peer would drop our heartbeats). A new salt (the peer
        // restarted) is taken from a fresh datagram, or while we have nothing to echo.
        let same_salt = self.peer.is_some_and(|p| p.salt == challenge.salt);
        if (fresh && newer(self.peer)) || self.peer.is_none() || (same_salt && newer(self.peer)) {
            self.peer = Some(challenge);
        }
        if !fresh {
            return Err(HeartbeatDrop::Stale);
        }
        if !newer(self.counted) {
            return Err(HeartbeatDrop::Replayed);
        }
        self.counted = Some(challenge);
        Ok((sender, view.hello()))
    }
}

fn spki_fingerprint(spki: &[u8]) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let mut bytes = [0; 32];
    bytes.copy_from_slice(digest.as_ref());
    Fingerprint::from_bytes(bytes)
}

/// Where the heartbeat path listens and whom it sends to.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// The UDP address to receive the peer's heartbeats on.
    pub listen: SocketAddr,
    /// The peer's heartbeat address.
    pub peer: SocketAddr,
    /// This node's key: it signs our heartbeats.
    pub identity: Identity,
    /// The only keys whose heartbeats count.
    pub pins: Pins,
    /// A heartbeat counts only if it echoes a challenge of ours at most this old: the dead
    /// interval, so a datagram held back cannot postpone a takeover by more than that.
    pub max_age: Duration,
}

/// Counters of the heartbeat path since [`spawn_heartbeat`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams the socket refused to send (no route, the peer's network down).
    pub send_errors: u64,
    /// Authentic, fresh heartbeats handed on.
    pub accepted: u64,
    /// Datagrams dropped, by [`HeartbeatDrop`] (in the order of `HeartbeatDrop::ALL`).
    pub dropped: [(&'static str, u64); 5],
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    send_errors: AtomicU64,
    accepted: AtomicU64,
    dropped: [AtomicU64; 5],
}

/// Sends our hellos over the heartbeat path. Cheap to clone.
#[derive(Clone)]
pub struct HeartbeatSender {
    queue: mpsc::Sender<Vec<u8>>,
    counters: Arc<Counters>,
    local_addr: SocketAddr,
}

impl HeartbeatSender {
    /// Queues one hello frame; dropped if the queue is full (the next hello is due soon).
    pub fn send(&self, hello: Vec<u8>) {
        let _ = self.queue.try_send(hello);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HeartbeatStats {
        let c = &self.counters;
        let mut dropped = [("", 0); 5];
        for (slot, (reason, count)) in dropped
            .iter_mut()
            .zip(HeartbeatDrop::ALL.iter().zip(&c.dropped))
        {
            *slot = (reason.name(), count.load(Ordering::Relaxed));
        }
        HeartbeatStats {
            sent: c.sent.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            dropped,
        }
    }

    /// The address the socket is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// The peer's authentic, fresh hellos. Dropping it stops the path.
pub struct HeartbeatEvents {
    hellos: mpsc::Receiver<(Fingerprint, Vec<u8>)>,
}

impl HeartbeatEvents {
    /// The next hello frame from the peer, with the (pinned) key that signed it; `None` once
    /// the path has stopped. Cancel-safe.
    pub async fn recv(&mut self) -> Option<(Fingerprint, Vec<u8>)> {
        self.hellos.recv().await
    }
}

/// Binds the socket (a bind error is returned here) and runs the path in a task of the current
/// tokio runtime until the returned [`HeartbeatEvents`] is dropped.
pub fn spawn_heartbeat(
    config: HeartbeatConfig,
) -> Result<(HeartbeatSender, HeartbeatEvents), LinkError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| LinkError::NoRuntime)?;
    let mut salt = [0; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| LinkError::Config("the OS random number generator failed".to_string()))?;
    let seal = HeartbeatSeal::new(
        &config.identity,
        config.pins,
        config.max_age,
        u64::from_be_bytes(salt),
    )?;
    let bind_error = |source| LinkError::Bind {
        addr: config.listen,
        source,
    };
    let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    let socket = {
        let _entered = runtime.enter();
        UdpSocket::from_std(socket).map_err(bind_error)?
    };
    let local_addr = socket.local_addr().map_err(bind_error)?;
    let (queue, outgoing) = mpsc::channel(SEND_QUEUE);
    let (hellos_tx, hellos) = mpsc::channel(RECEIVE_QUEUE);
    let counters = Arc::new(Counters::default());
    info!(listen = %local_addr, peer = %config.peer, "heartbeat path starting");
    runtime.spawn(run(
        socket,
        config.peer,
        seal,
        outgoing,
        hellos_tx,
        counters.clone(),
    ));
    Ok((
        HeartbeatSender {
            queue,
            counters,
            local_addr,
        },
        HeartbeatEvents { hellos },
    ))
}

async fn run(
    socket: UdpSocket,
    peer: SocketAddr,
    mut seal: HeartbeatSeal,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    hellos: mpsc::Sender<(Fingerprint, Vec<u8>)>,
    counters: Arc<Counters>,
) {
    let origin = Instant::now();
    let now_us = || origin.elapsed().as_micros() as u64;
    let mut buf = vec![0; RECEIVE_BUFFER];
    let mut logged: [Option<Instant>; 5] = [None; 5];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                match seal.open(now_us(), &buf[..len]) {
                    Ok((key, hello)) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        let _ = hellos.try_send((key, hello.to_vec()));
                    }
                    Err(drop) => {
                        let index = HeartbeatDrop::ALL.iter().position(|d| *d == drop).unwrap_or(0);
                        counters.dropped[index].fetch_add(1, Ordering::Relaxed);
                        // The first datagrams of an exchange are stale by design: not worth a
                        // warning. Forged ones are, at most once a second per reason.
                        if matches!(drop, HeartbeatDrop::Stale | HeartbeatDrop::Replayed) {
                            debug!(%from, "heartbeat dropped: {}", drop.name());
                        } else if logged[index].is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
                            logged[index] = Some(Instant::now());
                            warn!(%from, "heartbeat dropped: {}", drop.name());
                        }
                    }
                }
            }
            hello = outgoing.recv() => {
                let Some(hello) = hello else { break };
                let datagram = seal.seal(now_us(), &hello);
                match socket.send_to(&datagram, peer).await {
                    Ok(_) => counters.sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.send_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            () = hellos.closed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failoverd_wire::heartbeat::HEARTBEAT_FIXED_LEN;

    const AGE: Duration = Duration::from_millis(150);

    fn pair() -> (HeartbeatSeal, HeartbeatSeal, Identity) {
        let (a, b) = (Identity::generate(), Identity::generate());
        let sa = HeartbeatSeal::new(&a, b.fingerprint(), AGE, 11).expect("a");
        let sb = HeartbeatSeal::new(&b, a.fingerprint(), AGE, 22).expect("b");
        (sa, sb, a)
    }

    /// One exchange each way: each side learns the other's challenge.
    fn handshake(a: &mut HeartbeatSeal, b: &mut HeartbeatSeal, now: u64) {
        assert_eq!(
            b.open(now, &a.seal(now, HELLO)).map(|(_, hello)| hello),
            Err(HeartbeatDrop::Stale)
        );
        let from_b = b.seal(now, HELLO);
        assert_eq!(
            a.open(now, &from_b).map(|(_, hello)| hello),
            Ok(HELLO),
            "b echoes a's challenge"
        );
    }

    const HELLO: &[u8] = &[b'F', b'O', 1, 1, 0, 0, 0, 8];

    #[test]
    fn an_exchange_makes_heartbeats_count_both_ways() {
        let (mut a, mut b, _) = pair();
        handshake(&mut a, &mut b, 1_000);
        assert_eq!(
            b.open(2_000, &a.seal(2_000, HELLO)).map(|(_, hello)| hello),
            Ok(HELLO)
        );
    }

    #[test]
    fn a_replayed_or_held_back_heartbeat_does_not_count() {
        let (mut a, mut b, _) = pair();
        handshake(&mut a, &mut b, 1_000);
        let old = a.seal(2_000, HELLO);
        assert_eq!(b.open(2_000, &old).map(|(_, hello)| hello), Ok(HELLO));
        // The same datagram again: a duplicate.
        assert_eq!(
            b.open(3_000, &old).map(|(_, hello)| hello),
            Err(HeartbeatDrop::Replayed)
        );
        // Recorded, and replayed after the peer died: it echoes a challenge too old.
        let recorded = a.seal(10_000, HELLO);
        let late = 1_000 + AGE.as_micros() as u64 + 1;
        assert_eq!(
            b.open(late, &recorded).map(|(_, hello)| hello),
            Err(HeartbeatDrop::Stale)
        );
        // The control: the same datagram in time counts.
        let (mut a, mut b, _) = pair();
        handshake(&mut a, &mut b, 1_000);
        let in_time = a.seal(10_000, HELLO);
        assert_eq!(
            b.open(1_000 + AGE.as_micros() as u64, &in_time)
                .map(|(_, hello)| hello),
            Ok(HELLO)
        );
    }

    #[test]
    fn a_replayed_old_datagram_does_not_spoil_what_we_echo() {
        let (mut a, mut b, _) = pair();
        handshake(&mut a, &mut b, 1_000);
        let old = a.seal(1_500, HELLO);
        handshake(&mut a, &mut b, 200_000);
        assert_eq!(
            b.open(200_100, &old).map(|(_, hello)| hello),
            Err(HeartbeatDrop::Stale)
        );
        // b still echoes a's newest challenge, so a counts b's next heartbeat (echoing the
        // replayed one's, it would be stale there).
        assert_eq!(
            a.open(200_200, &b.seal(200_200, HELLO))
                .map(|(_, hello)| hello),
            Ok(HELLO)
        );
    }

    #[test]
    fn forged_heartbeats_are_dropped() {
        let (mut a, mut b, _) = pair();
        handshake(&mut a, &mut b, 1_000);
        // Another host with its own key, echoing a's challenge as seen on the wire.
        let mallory = Identity::generate();
        let mut m = HeartbeatSeal::new(&mallory, a_fingerprint(&a), AGE, 33).expect("m");
        m.peer = b.peer;
        assert_eq!(
            a.open(2_000, &m.seal(2_000, HELLO)).map(|(_, hello)| hello),
            Err(HeartbeatDrop::WrongKey)
        );
        // b's own datagram with one bit of the hello flipped.
        let mut tampered = b.seal(2_000, HELLO);
        tampered[HEARTBEAT_FIXED_LEN + 2] ^= 1;
        assert_eq!(
            a.open(2_000, &tampered).map(|(_, hello)| hello),
            Err(HeartbeatDrop::BadSignature)
        );
        let mut truncated = b.seal(2_000, HELLO);
        truncated.pop();
        assert_eq!(
            a.open(2_000, &truncated).map(|(_, hello)| hello),
            Err(HeartbeatDrop::Malformed)
        );
        // The control: b's datagram unchanged counts.
        assert_eq!(
            a.open(2_000, &b.seal(2_000, HELLO)).map(|(_, hello)| hello),
            Ok(HELLO)
        );
    }

    /// Issue 11: with two pins (the peer's key being rotated) heartbeats signed by either key
    /// count, each reported with its key; a third key is dropped.
    #[test]
    fn either_pinned_key_is_heard_and_named() {
        let (a, old, new, third) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let pins = Pins::new(&[old.fingerprint(), new.fingerprint()]).expect("two pins");
        for (salt, peer) in [(1, &old), (2, &new), (3, &third)] {
            let mut sa = HeartbeatSeal::new(&a, pins, AGE, 10 + salt).expect("a");
            let mut sp = HeartbeatSeal::new(peer, a.fingerprint(), AGE, 20 + salt).expect("peer");
            // The peer learns a's challenge, then answers it.
            let _ = sp.open(1_000, &sa.seal(1_000, HELLO));
            let datagram = sp.seal(1_100, HELLO);
            let heard = sa.open(1_100, &datagram);
            if salt == 3 {
                assert_eq!(heard, Err(HeartbeatDrop::WrongKey));
            } else {
                assert_eq!(heard, Ok((peer.fingerprint(), HELLO)));
            }
        }
    }

    fn a_fingerprint(a: &HeartbeatSeal) -> Fingerprint {
        spki_fingerprint(&a.spki)
    }

    #[test]
    fn a_restarted_peer_is_heard_again_after_one_exchange() {
        let (mut a, mut b, a_identity) = pair();
        handshake(&mut a, &mut b, 1_000);
        // a restarts: new salt, nothing to echo.
        let b_pin = spki_fingerprint(&b.spki);
        let mut a2 = HeartbeatSeal::new(&a_identity, b_pin, AGE, 44).expect("a2");
        assert_eq!(
            b.open(5_000, &a2.seal(5_000, HELLO))
                .map(|(_, hello)| hello),
            Err(HeartbeatDrop::Stale)
        );
        assert_eq!(
            a2.open(5_000, &b.seal(5_000, HELLO))
                .map(|(_, hello)| hello),
            Err(HeartbeatDrop::Stale)
        );
        assert_eq!(
            b.open(5_100, &a2.seal(5_100, HELLO))
                .map(|(_, hello)| hello),
            Ok(HELLO)
        );
        assert_eq!(
            a2.open(5_200, &b.seal(5_200, HELLO))
                .map(|(_, hello)| hello),
            Ok(HELLO)
        );
    }
}
