//! The arrays of tables of `[vrrp]`: `[[vrrp.instance]]` (the virtual routers) and the
//! trackers `[[vrrp.track_interface]]`, `[[vrrp.track_route]]`, `[[vrrp.track_script]]`.

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use super::table::expected;
use super::table::{instance, track_script};
use super::values::{
    RawList, argv, blame, family_name, int, int_or, interface_name, ip_net, is_broadcast,
    is_link_local_v6, line_of, millis, peer_address, required, simple_name,
};

/// The defaults an instance inherits.
pub(super) struct InstanceDefaults {
    pub priority: u8,
    pub preempt: bool,
    pub advert_ms: i64,
}

/// `[[vrrp.instance]]`: one VRRPv3 virtual router (RFC 5798).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstanceSection {
    /// `name`: unique; letters, digits, `_` and `-`.
    pub name: String,
    /// `interface`: where advertisements go and the addresses are added.
    pub interface: String,
    /// `vrid`: unique per interface and family.
    pub vrid: u8,
    /// `priority` (default `node.priority`).
    pub priority: u8,
    /// `advert_interval_ms` (default `vrrp.advert_interval_ms`).
    pub advert_interval: Duration,
    /// `addresses`: 1..=255 virtual addresses with their prefix length, all of one family;
    /// for IPv6 the first is link-local (RFC 5798 5.2.9).
    pub addresses: Vec<IpNet>,
    /// `accept`: the master answers for its virtual addresses.
    pub accept: bool,
    /// `preempt` (default `node.preempt`).
    pub preempt: bool,
    /// `unicast_peers` (default none: multicast): adverts go to these, of the instance's family.
    pub unicast_peers: Vec<IpAddr>,
    /// `source`: the adverts' source address, of the instance's family; `None`: the
    /// interface's first address of the family (IPv6: its link-local address).
    pub source: Option<IpAddr>,
    /// `vmac`: a virtual MAC on a macvlan over the interface.
    pub vmac: bool,
}

impl VrrpInstanceSection {
    /// Whether the instance is IPv6 (its addresses are all of one family, and there is at
    /// least one).
    pub fn is_ipv6(&self) -> bool {
        self.addresses
            .first()
            .is_some_and(|net| net.addr().is_ipv6())
    }
}

/// `[[vrrp.track_interface]]`: the group's priority falls by `weight` while the interface is
/// down; weight 0 means fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    /// `name`: the interface.
    pub name: String,
    /// `weight` (0: fault).
    pub weight: u8,
}

/// `[[vrrp.track_route]]`: a route to exactly this prefix must exist in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRoute {
    /// `destination`: the prefix (no host bits set).
    pub destination: IpNet,
    /// `weight` (0: fault).
    pub weight: u8,
}

/// `[[vrrp.track_script]]`: a command run periodically; its exit status is the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    /// `name`: unique, shown in status and logs.
    pub name: String,
    /// `command`: argv, run without a shell; never empty.
    pub command: Vec<String>,
    /// `interval_ms`.
    pub interval: Duration,
    /// `timeout_ms` (at most `interval_ms`): then the command is killed
    /// and counts as a failure.
    pub timeout: Duration,
    /// `fall`: failures in a row that mark it down.
    pub fall: u32,
    /// `rise`: successes in a row that mark it up.
    pub rise: u32,
    /// `weight` (0: fault).
    pub weight: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    name: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    vrid: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
    advert_interval_ms: Option<Spanned<i64>>,
    addresses: Option<RawList>,
    accept: Option<bool>,
    preempt: Option<bool>,
    unicast_peers: Option<RawList>,
    source: Option<Spanned<String>>,
    vmac: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrackInterface {
    pub name: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrackRoute {
    pub destination: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrackScript {
    name: Option<Spanned<String>>,
    command: Option<RawList>,
    interval_ms: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    rise: Option<Spanned<i64>>,
    weight: Option<Spanned<i64>>,
}

/// What the cross-instance checks need to point at.
pub(super) struct InstanceSpans {
    pub name: Range<usize>,
    pub vrid: Range<usize>,
    pub addresses: Vec<Range<usize>>,
}

impl RawInstance {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
        inherited: &InstanceDefaults,
    ) -> Result<(VrrpInstanceSection, InstanceSpans), ConfigError> {
        const TABLE: &str = "vrrp.instance";
        let name = required(source, TABLE, "name", self.name, span)?;
        let interface = required(source, TABLE, "interface", self.interface, span)?;
        let vrid = required(source, TABLE, "vrid", self.vrid, span)?;
        let addresses = required(source, TABLE, "addresses", self.addresses, span)?;
        let checked_name = simple_name(source, &instance::NAME, &name, false)?;
        let checked_interface = interface_name(source, TABLE, "interface", &interface)?;
        // Required: read only when present, so the default is never used.
        let checked_vrid = int_or(source, &instance::VRID, Some(&vrid), 0)?;
        let priority = int_or(
            source,
            &instance::PRIORITY,
            self.priority.as_ref(),
            i64::from(inherited.priority),
        )?;
        let advert = int_or(
            source,
            &instance::ADVERT_INTERVAL_MS,
            self.advert_interval_ms.as_ref(),
            inherited.advert_ms,
        )?;
        let count = addresses.get_ref().len();
        if count == 0 || count > 255 {
            return Err(source.bad_value(
                TABLE,
                "addresses",
                &addresses.span(),
                format!(
                    "has {count} addresses; must be {}",
                    expected(TABLE, "addresses")
                ),
            ));
        }
        let mut nets: Vec<IpNet> = Vec::with_capacity(count);
        for raw in addresses.get_ref() {
            let net = ip_net(source, TABLE, "addresses", raw)?;
            let addr = net.addr();
            let bad = |problem: String| source.bad_value(TABLE, "addresses", &raw.span(), problem);
            if addr.is_unspecified()
                || addr.is_multicast()
                || addr.is_loopback()
                || is_broadcast(addr)
            {
                return Err(bad("must be a unicast address".to_string()));
            }
            if let Some(first) = nets.first()
                && first.addr().is_ipv6() != addr.is_ipv6()
            {
                return Err(bad(format!(
                    "is {} but the instance's first address ({first}) is {}; an instance's addresses are all one family (use another instance for the other family)",
                    family_name(addr.is_ipv6()),
                    family_name(first.addr().is_ipv6()),
                )));
            }
            if nets.iter().any(|other| other.addr() == addr) {
                return Err(bad("is listed twice".to_string()));
            }
            if nets.is_empty() && addr.is_ipv6() && !is_link_local_v6(addr) {
                return Err(bad(
                    "the first address of an IPv6 instance must be link-local (fe80::/10, RFC 5798 5.2.9), e.g. \"fe80::1/64\"; the others may be global".to_string(),
                ));
            }
            nets.push(net);
        }
        let ipv6 = nets[0].addr().is_ipv6();
        let mut unicast_peers: Vec<IpAddr> = Vec::new();
        for raw in self.unicast_peers.as_ref().map_or(&[][..], |l| l.get_ref()) {
            let peer = peer_address(source, TABLE, "unicast_peers", raw, ipv6)?;
            if unicast_peers.contains(&peer) {
                return Err(source.bad_value(
                    TABLE,
                    "unicast_peers",
                    &raw.span(),
                    "is listed twice",
                ));
            }
            unicast_peers.push(peer);
        }
        let source_addr = match &self.source {
            Some(raw) => {
                let addr = peer_address(source, TABLE, "source", raw, ipv6)?;
                if ipv6 && !is_link_local_v6(addr) {
                    return Err(source.bad_value(
                        TABLE,
                        "source",
                        &raw.span(),
                        "an IPv6 advert's source must be the interface's link-local address (fe80::/10, RFC 5798 5.1.2.1): receivers drop any other; unicast_peers may still be global addresses",
                    ));
                }
                Some(addr)
            }
            None => None,
        };
        let spans = InstanceSpans {
            name: name.span(),
            vrid: vrid.span(),
            addresses: addresses.get_ref().iter().map(Spanned::span).collect(),
        };
        Ok((
            VrrpInstanceSection {
                name: checked_name,
                interface: checked_interface,
                // Invariant: `int` checked the ranges.
                vrid: checked_vrid.value as u8,
                priority: priority.value as u8,
                advert_interval: millis(advert.value),
                addresses: nets,
                accept: self
                    .accept
                    .unwrap_or_else(|| instance::ACCEPT.default_bool()),
                preempt: self.preempt.unwrap_or(inherited.preempt),
                unicast_peers,
                source: source_addr,
                vmac: self.vmac.unwrap_or_else(|| instance::VMAC.default_bool()),
            },
            spans,
        ))
    }
}

/// Names, (interface, vrid, family) and addresses are unique across instances.
pub(super) fn check_instance_against_others(
    source: &Source<'_>,
    instance: &VrrpInstanceSection,
    here: &InstanceSpans,
    others: &[VrrpInstanceSection],
    spans: &[InstanceSpans],
) -> Result<(), ConfigError> {
    const TABLE: &str = "vrrp.instance";
    for (other, there) in others.iter().zip(spans) {
        if other.name == instance.name {
            return Err(source.bad_value(
                TABLE,
                "name",
                &here.name,
                format!(
                    "the instance on line {} has this name too; names must be unique",
                    line_of(source, &there.name)
                ),
            ));
        }
        if other.interface == instance.interface
            && other.vrid == instance.vrid
            && other.is_ipv6() == instance.is_ipv6()
        {
            return Err(source.bad_value(
                TABLE,
                "vrid",
                &here.vrid,
                format!(
                    "instance \"{}\" (line {}) has this vrid on interface {} for {} too; (interface, vrid, family) must be unique",
                    other.name,
                    line_of(source, &there.vrid),
                    other.interface,
                    family_name(other.is_ipv6()),
                ),
            ));
        }
        for (net, span) in instance.addresses.iter().zip(&here.addresses) {
            // A link-local address is one per link: the same one on two interfaces is two.
            let link_local = is_link_local_v6(net.addr());
            let same_scope = !link_local || other.interface == instance.interface;
            if same_scope && other.addresses.iter().any(|o| o.addr() == net.addr()) {
                return Err(source.bad_value(
                    TABLE,
                    "addresses",
                    span,
                    format!(
                        "{} is an address of instance \"{}\" too; a virtual address belongs to one instance",
                        net.addr(),
                        other.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl RawTrackScript {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
        others: &[TrackScript],
    ) -> Result<TrackScript, ConfigError> {
        const TABLE: &str = "vrrp.track_script";
        let name = required(source, TABLE, "name", self.name, span)?;
        let checked_name = simple_name(source, &track_script::NAME, &name, true)?;
        if others.iter().any(|other| other.name == checked_name) {
            return Err(source.bad_value(
                TABLE,
                "name",
                &name.span(),
                "another track script has this name; names must be unique",
            ));
        }
        let command = required(source, TABLE, "command", self.command, span)?;
        let command = argv(source, TABLE, "command", &command)?;
        let interval = int(
            source,
            &track_script::INTERVAL_MS,
            self.interval_ms.as_ref(),
        )?;
        let timeout = int_or(
            source,
            &track_script::TIMEOUT_MS,
            self.timeout_ms.as_ref(),
            interval.value,
        )?;
        if timeout.value > interval.value {
            return Err(blame(&timeout, &interval).relation_error(
                source,
                format!(
                    "{TABLE}.timeout_ms ({}) must be at most {TABLE}.interval_ms ({}): one run at a time",
                    timeout.value, interval.value
                ),
            ));
        }
        let fall = int(source, &track_script::FALL, self.fall.as_ref())?;
        let rise = int(source, &track_script::RISE, self.rise.as_ref())?;
        Ok(TrackScript {
            name: checked_name,
            command,
            interval: millis(interval.value),
            timeout: millis(timeout.value),
            // Invariant: `int` checked the ranges.
            fall: fall.value as u32,
            rise: rise.value as u32,
            // Invariant: `int` checked the range.
            weight: int(source, &track_script::WEIGHT, self.weight.as_ref())?.value as u8,
        })
    }
}
