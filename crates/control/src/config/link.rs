//! `[link]`: the failover link, and the heartbeat path beside it.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use failoverd_wire::{Fingerprint, Pins};
use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use super::table::expected;
use super::table::link;
use super::values::{blame, int, millis};
use crate::protocol::TakeoverKind;

/// `[link]`: the failover link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSection {
    /// `listen`: the address this node accepts the failover link on.
    pub listen: SocketAddr,
    /// `peer`: the peer's failover-link address.
    pub peer: SocketAddr,
    /// `peer_key`: the fingerprints the peer's key may have (one, or two while the peer's key
    /// is rotated); nothing else is trusted.
    pub peer_key: Pins,
    /// `reconnect_min_ms`: the first delay before dialling again.
    pub reconnect_min: Duration,
    /// `reconnect_max_ms`: the delay doubles up to this.
    pub reconnect_max: Duration,
    /// `heartbeat_listen` and `heartbeat_peer` (none by default): a second path for hellos, over
    /// another network than the failover link (election mode only).
    pub heartbeat: Option<HeartbeatSection>,
}

/// The heartbeat path: the hellos, signed with the node's key, as UDP datagrams over another
/// network than the failover link (a traffic interface), so that with `takeover.mode =
/// "election"` a cut failover link alone does not make both nodes active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSection {
    /// `heartbeat_listen`: the UDP address this node receives the peer's heartbeats on.
    pub listen: SocketAddr,
    /// `heartbeat_peer`: the peer's heartbeat address, on another network than `link.peer`.
    pub peer: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    listen: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    peer_key: Option<Spanned<RawPins>>,
    reconnect_min_ms: Option<Spanned<i64>>,
    reconnect_max_ms: Option<Spanned<i64>>,
    heartbeat_listen: Option<Spanned<String>>,
    heartbeat_peer: Option<Spanned<String>>,
}

/// `link.peer_key`: one fingerprint, or a list (validated to one or two).
#[derive(Deserialize)]
#[serde(untagged, expecting = "a fingerprint string or a list of at most two")]
pub(super) enum RawPins {
    One(String),
    List(Vec<String>),
}

impl RawLink {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
        mode: TakeoverKind,
    ) -> Result<LinkSection, ConfigError> {
        let listen = self
            .listen
            .ok_or_else(|| source.missing("link", "listen", Some(span)))?;
        let peer = self
            .peer
            .ok_or_else(|| source.missing("link", "peer", Some(span)))?;
        let peer_key = self
            .peer_key
            .ok_or_else(|| source.missing("link", "peer_key", Some(span)))?;
        let listen_addr = address(source, "listen", &listen)?;
        let peer_addr = address(source, "peer", &peer)?;
        if peer_addr.ip().is_unspecified() {
            return Err(source.bad_value(
                "link",
                "peer",
                &peer.span(),
                "must be the peer's own address, not the unspecified address",
            ));
        }
        if peer_addr == listen_addr {
            return Err(source.bad_value(
                "link",
                "peer",
                &peer.span(),
                "must differ from link.listen: it is the other node's address",
            ));
        }
        let bad_key = |problem: String| {
            source.bad_value(
                "link",
                "peer_key",
                &peer_key.span(),
                format!("{problem}; must be {}", expected("link", "peer_key")),
            )
        };
        let keys = match peer_key.get_ref() {
            RawPins::One(text) => vec![
                text.parse::<Fingerprint>()
                    .map_err(|err| bad_key(err.to_string()))?,
            ],
            RawPins::List(texts) => texts
                .iter()
                .map(|text| {
                    text.parse::<Fingerprint>()
                        .map_err(|err| bad_key(format!("{text:?}: {err}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let key = Pins::new(&keys).map_err(|err| bad_key(err.to_string()))?;
        let min = int(
            source,
            &link::RECONNECT_MIN_MS,
            self.reconnect_min_ms.as_ref(),
        )?;
        let max = int(
            source,
            &link::RECONNECT_MAX_MS,
            self.reconnect_max_ms.as_ref(),
        )?;
        if max.value < min.value {
            return Err(blame(&max, &min).relation_error(
                source,
                format!(
                    "link.reconnect_max_ms ({}) must be at least link.reconnect_min_ms ({})",
                    max.value, min.value
                ),
            ));
        }
        let heartbeat = match (self.heartbeat_listen, self.heartbeat_peer) {
            (None, None) => None,
            (Some(_), None) => return Err(source.missing("link", "heartbeat_peer", Some(span))),
            (None, Some(_)) => {
                return Err(source.missing("link", "heartbeat_listen", Some(span)));
            }
            (Some(listen), Some(peer)) => {
                if mode != TakeoverKind::Election {
                    return Err(source.bad_value(
                        "link",
                        "heartbeat_listen",
                        &listen.span(),
                        format!(
                            "the heartbeat path is used only with takeover.mode = \"election\", and the mode is \"{}\": the VRRP adverts on the traffic networks already tell a live peer from a dead one; remove link.heartbeat_listen and link.heartbeat_peer",
                            mode.name()
                        ),
                    ));
                }
                let heartbeat_listen = address(source, "heartbeat_listen", &listen)?;
                let heartbeat_peer = address(source, "heartbeat_peer", &peer)?;
                let problem = if heartbeat_peer.ip().is_unspecified() {
                    Some("must be the peer's own address, not the unspecified address")
                } else if heartbeat_peer == heartbeat_listen {
                    Some("must differ from link.heartbeat_listen: it is the other node's address")
                } else if heartbeat_peer.ip() == peer_addr.ip() {
                    Some(
                        "must be another address of the peer than link.peer's: a heartbeat path over the failover link's own network is cut with it",
                    )
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(source.bad_value("link", "heartbeat_peer", &peer.span(), problem));
                }
                Some(HeartbeatSection {
                    listen: heartbeat_listen,
                    peer: heartbeat_peer,
                })
            }
        };
        Ok(LinkSection {
            listen: listen_addr,
            peer: peer_addr,
            peer_key: key,
            reconnect_min: millis(min.value),
            reconnect_max: millis(max.value),
            heartbeat,
        })
    }
}

/// A socket address of a `[link]` key.
fn address(
    source: &Source<'_>,
    key: &str,
    raw: &Spanned<String>,
) -> Result<SocketAddr, ConfigError> {
    let bad = |problem: &str| {
        source.bad_value(
            "link",
            key,
            &raw.span(),
            format!("{problem}; must be {}", expected("link", key)),
        )
    };
    let addr: SocketAddr = raw
        .get_ref()
        .parse()
        .map_err(|_| bad("not an IP address and port (host names are not resolved)"))?;
    if addr.port() == 0 {
        return Err(bad("port 0 cannot be dialled"));
    }
    Ok(addr)
}
