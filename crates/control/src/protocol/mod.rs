//! The control protocol between the daemon and `failoverctl`: JSON lines over a Unix socket.
//!
//! A client writes one [`Request`] object per line and reads one [`Response`] per line, in
//! order; a connection may carry several requests. A request names its command in `cmd`:
//!
//! ```text
//! {"cmd":"status"}
//! {"ok":true,"data":{"node":{"name":"fw-a",...},...}}
//! {"cmd":"sessions","filter":{"proto":"tcp","owner":"peer"},"limit":100}
//! {"ok":true,"data":{"total":1200,"matched":400,"sessions":[...]}}
//! {"cmd":"frobnicate"}
//! {"ok":false,"error":"bad request: unknown variant `frobnicate`, ..."}
//! ```
//!
//! The data types (in the submodules, re-exported here) are the `data` of successful
//! responses. Their field names are a stable contract (`failoverctl --json` prints them as they
//! are, and scripts rely on them): fields are added, never renamed or removed, so clients must
//! ignore fields they do not know. The reference is in this crate's `README.md`.
//!
//! Values from a closed set (states, roles, modes, kinds) are enums here, each serialized as
//! the same string as before they were types. A value this version does not know, from a
//! newer daemon, fails to parse: `failoverctl` then says it does not understand the daemon's
//! data, and `failoverctl --json` (which prints the data as sent) still shows it.

use serde::{Deserialize, Serialize};

pub use config_sync::{
    ConfigDiff, ConfigSyncMode, ConfigSyncOutcome, ConfigSyncPart, ConfigSyncReply,
    ConfigSyncState, ConfigSyncStatus, ConfigUnitDiff, ConfigUnitKind, ConfigUnitState,
    ConfigUnitView, ConfigVersionsView, hash_hex, unified_diff,
};
pub use events::{EventKind, EventList, EventView, MaintenanceDone, SwitchoverDone};
pub use failoverd_wire::NodeId;
pub use sessions::{
    Family, Generated, OwnerFilter, Proto, SESSIONS_PER_PIECE, SessionFilter, SessionList,
    SessionView, TupleView,
};
pub use status::{
    BackendKind, BackupMode, FailoverRole, FailoverState, HeartbeatInfo, LinkState, NodeInfo,
    PeerInfo, Replication, SessionCounts, Status,
};
pub use takeover::{
    HooksView, RoutingState, RoutingView, TakeoverKind, TakeoverStatus, TrackKind, TrackView,
    VrrpDropsView, VrrpGroupView, VrrpInstanceView, VrrpPeerState, VrrpState,
};

/// An enum whose variants are names in the JSON: each variant serializes as its name, which
/// [`name`](FailoverState::name) and `Display` give too, so human output and JSON agree, and
/// compares equal to it; a name this version does not know is refused.
macro_rules! names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// The name used in JSON and in human output.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )*
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        // Code that checks a value against the JSON name (tests reading `failoverctl --json`)
        // reads the same with the type.
        impl PartialEq<&str> for $name {
            fn eq(&self, name: &&str) -> bool {
                self.name() == *name
            }
        }
    };
}

mod config_sync;
mod events;
mod sessions;
mod status;
mod takeover;

/// A node id in JSON: 8 hex digits, as its `Display`.
mod node_id_hex {
    use failoverd_wire::NodeId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(id: &NodeId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<NodeId, D::Error> {
        parse(&String::deserialize(deserializer)?)
    }

    fn parse<E: Error>(text: &str) -> Result<NodeId, E> {
        if text.len() != 8 {
            return Err(E::custom(format!("node id {text:?} is not 8 hex digits")));
        }
        u32::from_str_radix(text, 16)
            .map(NodeId)
            .map_err(|_| E::custom(format!("node id {text:?} is not 8 hex digits")))
    }

    /// The same for an optional id: `null` when absent.
    pub(super) mod option {
        use failoverd_wire::NodeId;
        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            id: &Option<NodeId>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match id {
                Some(id) => serializer.collect_str(id),
                None => serializer.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<NodeId>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|text| super::parse(&text))
                .transpose()
        }
    }
}

/// A command from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// This node's state; answered with [`Status`].
    Status,
    /// The peer as this node sees it; answered with [`PeerInfo`].
    Peer,
    /// Sessions in the table; answered with [`SessionList`].
    Sessions {
        /// Which sessions; all when absent.
        #[serde(default)]
        filter: SessionFilter,
        /// At most this many; all when absent.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Session counts; answered with [`SessionCounts`].
    SessionsCount,
    /// Creates synthetic local sessions (memory backend only): for trying failoverd out and
    /// for tests. Answered with [`Generated`].
    SessionsGenerate {
        /// How many.
        count: u32,
    },
    /// Recent events, oldest first; answered with [`EventList`].
    Events {
        /// At most this many of the newest; all kept ones when absent.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Hands the active role to the peer; answered with [`SwitchoverDone`].
    Switchover,
    /// Turns maintenance on or off (`{"cmd":"maintenance","on":true}`); answered with
    /// [`MaintenanceDone`]. A VRRP node in maintenance steps down and stays backup.
    Maintenance {
        /// On (true) or off (false).
        on: bool,
    },
    /// Configuration sync: mode, status, units and counters; answered with
    /// [`ConfigSyncStatus`].
    ConfigStatus,
    /// The difference between this node's and the peer's read-backs of every unit; answered
    /// with [`ConfigDiff`].
    ConfigDiff,
    /// A full configuration sync to the peer, now (this node must be the source, in
    /// Synchronization); answered with [`ConfigSyncReply`].
    ConfigSync,
}

impl Request {
    /// The command's name, as in `cmd`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Peer => "peer",
            Request::Sessions { .. } => "sessions",
            Request::SessionsCount => "sessions-count",
            Request::SessionsGenerate { .. } => "sessions-generate",
            Request::Events { .. } => "events",
            Request::Switchover => "switchover",
            Request::Maintenance { .. } => "maintenance",
            Request::ConfigStatus => "config-status",
            Request::ConfigDiff => "config-diff",
            Request::ConfigSync => "config-sync",
        }
    }

    /// Whether only root, the daemon's own user or the `control.group` may run the command:
    /// those that change the daemon's state, the session list, which shows the connections
    /// crossing the firewall (the kernel lists its conntrack table to `CAP_NET_ADMIN` only),
    /// and the configuration diff, which shows the synced rules and files. Any local user may
    /// run the others.
    pub fn privileged(&self) -> bool {
        match self {
            Request::Status
            | Request::Peer
            | Request::SessionsCount
            | Request::Events { .. }
            | Request::ConfigStatus => false,
            Request::Sessions { .. }
            | Request::SessionsGenerate { .. }
            | Request::Switchover
            | Request::Maintenance { .. }
            | Request::ConfigDiff
            | Request::ConfigSync => true,
        }
    }
}

/// The answer to one request: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ResponseRepr", try_from = "ResponseRepr")]
pub enum Response {
    /// The command succeeded; the data type depends on the command.
    Ok(serde_json::Value),
    /// The command failed; the message is for the operator.
    Error(String),
}

impl Response {
    /// A successful response carrying `data`.
    pub fn ok(data: &impl Serialize) -> Response {
        match serde_json::to_value(data) {
            Ok(value) => Response::Ok(value),
            // Only maps with non-string keys fail to serialize; no protocol type has one.
            Err(err) => Response::Error(format!("internal error: cannot encode response: {err}")),
        }
    }

    /// A failed response.
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error(message.into())
    }
}

/// The JSON shape of [`Response`]: a flag and either field, which an enum cannot express
/// directly with serde's attributes.
#[derive(Serialize, Deserialize)]
struct ResponseRepr {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Response> for ResponseRepr {
    fn from(response: Response) -> Self {
        match response {
            Response::Ok(data) => Self {
                ok: true,
                data: Some(data),
                error: None,
            },
            Response::Error(error) => Self {
                ok: false,
                data: None,
                error: Some(error),
            },
        }
    }
}

impl TryFrom<ResponseRepr> for Response {
    type Error = &'static str;

    fn try_from(repr: ResponseRepr) -> Result<Self, &'static str> {
        match repr {
            ResponseRepr {
                ok: true,
                data: Some(data),
                ..
            } => Ok(Response::Ok(data)),
            ResponseRepr {
                ok: false,
                error: Some(error),
                ..
            } => Ok(Response::Error(error)),
            ResponseRepr { ok: true, .. } => Err("\"ok\":true without \"data\""),
            ResponseRepr { ok: false, .. } => Err("\"ok\":false without \"error\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `name` is the `cmd` a request is sent with.
    #[test]
    fn request_names_are_their_cmd() {
        for request in [
            Request::Status,
            Request::Peer,
            Request::Sessions {
                filter: SessionFilter::default(),
                limit: None,
            },
            Request::SessionsCount,
            Request::SessionsGenerate { count: 1 },
            Request::Events { limit: None },
            Request::Switchover,
            Request::Maintenance { on: true },
            Request::ConfigStatus,
            Request::ConfigDiff,
            Request::ConfigSync,
        ] {
            let json = serde_json::to_value(&request).unwrap();
            assert_eq!(json["cmd"], request.name(), "{request:?}");
        }
    }

    #[test]
    fn requests_have_a_stable_json_form() {
        let cases = [
            (Request::Status, json!({"cmd": "status"})),
            (Request::Peer, json!({"cmd": "peer"})),
            (Request::SessionsCount, json!({"cmd": "sessions-count"})),
            (
                Request::SessionsGenerate { count: 5 },
                json!({"cmd": "sessions-generate", "count": 5}),
            ),
            (
                Request::Events { limit: Some(3) },
                json!({"cmd": "events", "limit": 3}),
            ),
            (Request::Switchover, json!({"cmd": "switchover"})),
            (
                Request::Maintenance { on: true },
                json!({"cmd": "maintenance", "on": true}),
            ),
            (
                Request::Maintenance { on: false },
                json!({"cmd": "maintenance", "on": false}),
            ),
            (Request::ConfigStatus, json!({"cmd": "config-status"})),
            (Request::ConfigDiff, json!({"cmd": "config-diff"})),
            (Request::ConfigSync, json!({"cmd": "config-sync"})),
            (
                Request::Sessions {
                    filter: SessionFilter {
                        proto: Some("tcp".into()),
                        owner: Some(OwnerFilter::Peer),
                        ..SessionFilter::default()
                    },
                    limit: Some(100),
                },
                json!({"cmd": "sessions", "limit": 100, "filter": {
                    "proto": "tcp", "addr": null, "port": null, "owner": "peer", "family": null}}),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(serde_json::to_value(&request).unwrap(), expected);
            assert_eq!(
                serde_json::from_value::<Request>(expected).unwrap(),
                request
            );
        }
        // Optional fields may be left out.
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"sessions"}"#).unwrap(),
            Request::Sessions {
                filter: SessionFilter::default(),
                limit: None
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"events"}"#).unwrap(),
            Request::Events { limit: None }
        );
        // A misspelt filter must not silently match everything.
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"sessions","filter":{"protocol":"tcp"}}"#)
                .is_err()
        );
    }

    #[test]
    fn responses_have_a_stable_json_form() {
        let ok = Response::ok(&Generated {
            created: 3,
            table_full: 0,
        });
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(text, r#"{"ok":true,"data":{"created":3,"table_full":0}}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), ok);
        let err = Response::error("no peer");
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(text, r#"{"ok":false,"error":"no peer"}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), err);
        assert!(serde_json::from_str::<Response>(r#"{"ok":true}"#).is_err());
        assert!(serde_json::from_str::<Response>(r#"{"ok":false}"#).is_err());
    }
}
