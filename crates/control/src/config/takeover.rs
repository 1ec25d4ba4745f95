//! `[takeover]` and `[vrrp]`: who decides which node forwards, and the VRRP group with its
//! instances and trackers (each read in `vrrp`).

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::node::NodeSection;
use super::source::Source;
use super::table::header;
use super::table::{takeover, track_interface, track_route, vrrp};
use super::values::{int, interface_name, ip_net, millis, required};
use super::vrrp::{
    InstanceDefaults, InstanceSpans, RawInstance, RawTrackInterface, RawTrackRoute, RawTrackScript,
    TrackInterface, TrackRoute, TrackScript, VrrpInstanceSection, check_instance_against_others,
};
use crate::protocol::TakeoverKind;

/// `[takeover]`: who decides which node forwards, and so what moves the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeoverSection {
    /// `mode`.
    pub mode: TakeoverKind,
}

/// `[vrrp]` with its instances and trackers. All instances of a node form one group: they
/// move together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpSection {
    /// `preempt_delay_ms`: once ready, wait this long before
    /// preempting a lower-priority master.
    pub preempt_delay: Duration,
    /// `announce_repeat`: gratuitous ARPs / unsolicited neighbour
    /// advertisements per address on becoming master.
    pub announce_repeat: u32,
    /// `announce_interval_ms`: the time between those.
    pub announce_interval: Duration,
    /// `peer_check`: adverts that the failoverd peer's state contradicts (it
    /// says over the failover link that it is not master) are ignored (docs/TAKEOVER.md,
    /// "Threats").
    pub peer_check: bool,
    /// `silent_intervals` (0: never): after this many master-down
    /// intervals with no master heard on one instance while the group follows a master on
    /// another network, the failover link decides which node acts (docs/TAKEOVER.md).
    pub silent_intervals: u32,
    /// `[[vrrp.instance]]`: the virtual routers (at least one with `takeover.mode = "vrrp"`).
    pub instances: Vec<VrrpInstanceSection>,
    /// `[[vrrp.track_interface]]`.
    pub track_interfaces: Vec<TrackInterface>,
    /// `[[vrrp.track_route]]`.
    pub track_routes: Vec<TrackRoute>,
    /// `[[vrrp.track_script]]`.
    pub track_scripts: Vec<TrackScript>,
}

/// `takeover.mode`'s default, from the key table.
impl Default for TakeoverKind {
    fn default() -> Self {
        takeover::MODE.default_enum()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTakeover {
    mode: Option<Spanned<TakeoverKind>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrp {
    advert_interval_ms: Option<Spanned<i64>>,
    preempt_delay_ms: Option<Spanned<i64>>,
    announce_repeat: Option<Spanned<i64>>,
    announce_interval_ms: Option<Spanned<i64>>,
    peer_check: Option<bool>,
    silent_intervals: Option<Spanned<i64>>,
    #[serde(default)]
    instance: Vec<Spanned<RawInstance>>,
    #[serde(default)]
    track_interface: Vec<Spanned<RawTrackInterface>>,
    #[serde(default)]
    track_route: Vec<Spanned<RawTrackRoute>>,
    #[serde(default)]
    track_script: Vec<Spanned<RawTrackScript>>,
}

impl RawTakeover {
    pub(super) fn validate(self) -> (TakeoverSection, Option<Range<usize>>) {
        match self.mode {
            Some(mode) => (
                TakeoverSection {
                    mode: *mode.get_ref(),
                },
                Some(mode.span()),
            ),
            None => (
                TakeoverSection {
                    mode: TakeoverKind::default(),
                },
                None,
            ),
        }
    }
}

impl RawVrrp {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        node: &NodeSection,
        mode: TakeoverKind,
        mode_span: Option<&Range<usize>>,
    ) -> Result<VrrpSection, ConfigError> {
        let advert = int(
            source,
            &vrrp::ADVERT_INTERVAL_MS,
            self.advert_interval_ms.as_ref(),
        )?;
        let delay = int(
            source,
            &vrrp::PREEMPT_DELAY_MS,
            self.preempt_delay_ms.as_ref(),
        )?;
        let repeat = int(
            source,
            &vrrp::ANNOUNCE_REPEAT,
            self.announce_repeat.as_ref(),
        )?;
        let announce = int(
            source,
            &vrrp::ANNOUNCE_INTERVAL_MS,
            self.announce_interval_ms.as_ref(),
        )?;
        let silent = int(
            source,
            &vrrp::SILENT_INTERVALS,
            self.silent_intervals.as_ref(),
        )?;
        match mode {
            TakeoverKind::Election => {
                let given = [
                    ("vrrp.instance", self.instance.first().map(Spanned::span)),
                    (
                        "vrrp.track_interface",
                        self.track_interface.first().map(Spanned::span),
                    ),
                    (
                        "vrrp.track_route",
                        self.track_route.first().map(Spanned::span),
                    ),
                    (
                        "vrrp.track_script",
                        self.track_script.first().map(Spanned::span),
                    ),
                ];
                if let Some((table, Some(span))) =
                    given.into_iter().find(|(_, span)| span.is_some())
                {
                    return Err(source.error(
                        &span,
                        Some(table.to_string()),
                        None,
                        format!(
                            "VRRP instances and trackers are used only with takeover.mode = \"vrrp\", and the mode is \"election\"{}; set takeover.mode = \"vrrp\" or remove the {} sections",
                            if mode_span.is_none() { " (the default)" } else { "" },
                            header(table),
                        ),
                    ));
                }
            }
            TakeoverKind::Vrrp if self.instance.is_empty() => {
                return Err(source.error(
                    mode_span.unwrap_or(&(0..0)),
                    Some("takeover.mode".to_string()),
                    Some("\"vrrp\"".to_string()),
                    "needs at least one [[vrrp.instance]]: the virtual router(s) whose mastership makes this node active",
                ));
            }
            TakeoverKind::Vrrp => {}
        }
        let inherited = InstanceDefaults {
            priority: node.priority,
            preempt: node.preempt,
            advert_ms: advert.value,
        };
        let mut instances: Vec<VrrpInstanceSection> = Vec::new();
        let mut spans: Vec<InstanceSpans> = Vec::new();
        for raw in self.instance {
            let span = raw.span();
            let (instance, here) = raw.into_inner().validate(source, &span, &inherited)?;
            check_instance_against_others(source, &instance, &here, &instances, &spans)?;
            instances.push(instance);
            spans.push(here);
        }
        let mut track_interfaces: Vec<TrackInterface> = Vec::new();
        for raw in self.track_interface {
            const TABLE: &str = "vrrp.track_interface";
            let span = raw.span();
            let raw = raw.into_inner();
            let name = required(source, TABLE, "name", raw.name, &span)?;
            let track = TrackInterface {
                name: interface_name(source, TABLE, "name", &name)?,
                // Invariant: `int` checked the range.
                weight: int(source, &track_interface::WEIGHT, raw.weight.as_ref())?.value as u8,
            };
            if let Some(other) = track_interfaces.iter().find(|t| t.name == track.name) {
                return Err(source.bad_value(
                    TABLE,
                    "name",
                    &name.span(),
                    format!(
                        "interface {} is already tracked; track each once",
                        other.name
                    ),
                ));
            }
            track_interfaces.push(track);
        }
        let mut track_routes: Vec<TrackRoute> = Vec::new();
        for raw in self.track_route {
            const TABLE: &str = "vrrp.track_route";
            let span = raw.span();
            let raw = raw.into_inner();
            let destination = required(source, TABLE, "destination", raw.destination, &span)?;
            let net = ip_net(source, TABLE, "destination", &destination)?;
            if net.trunc() != net {
                return Err(source.bad_value(
                    TABLE,
                    "destination",
                    &destination.span(),
                    format!(
                        "has host bits set; a route's destination is a prefix: did you mean \"{}\"?",
                        net.trunc()
                    ),
                ));
            }
            if track_routes.iter().any(|t| t.destination == net) {
                return Err(source.bad_value(
                    TABLE,
                    "destination",
                    &destination.span(),
                    "is already tracked; track each route once",
                ));
            }
            track_routes.push(TrackRoute {
                destination: net,
                // Invariant: `int` checked the range.
                weight: int(source, &track_route::WEIGHT, raw.weight.as_ref())?.value as u8,
            });
        }
        let mut track_scripts: Vec<TrackScript> = Vec::new();
        for raw in self.track_script {
            let span = raw.span();
            let script = raw.into_inner().validate(source, &span, &track_scripts)?;
            track_scripts.push(script);
        }
        Ok(VrrpSection {
            preempt_delay: millis(delay.value),
            // Invariant: `int` checked the ranges.
            announce_repeat: repeat.value as u32,
            announce_interval: millis(announce.value),
            peer_check: self
                .peer_check
                .unwrap_or_else(|| vrrp::PEER_CHECK.default_bool()),
            // Invariant: `int` checked the range.
            silent_intervals: silent.value as u32,
            instances,
            track_interfaces,
            track_routes,
            track_scripts,
        })
    }
}
