//! `[routing]` and `[hooks]`: what moves the traffic besides VRRP (FRR's OSPF costs, and
//! commands run on role changes); both work in either takeover mode.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use super::table::{hooks, routing};
use super::values::{RawList, argv, blame, int, interface_list, millis};

/// `[routing]`: FRR; the active node advertises the better OSPF cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSection {
    /// `vtysh`: the argv prefix that reaches FRR; never empty.
    pub vtysh: Vec<String>,
    /// `ospf_interfaces`: `ip ospf cost` is set on these.
    pub ospf_interfaces: Vec<String>,
    /// `ospf6_interfaces`: `ipv6 ospf6 cost` is set on these. At least one of the two lists
    /// is not empty.
    pub ospf6_interfaces: Vec<String>,
    /// `active_cost`.
    pub active_cost: u16,
    /// `standby_cost`: more than `active_cost`.
    pub standby_cost: u16,
    /// `timeout_ms`: a vtysh call taking longer is killed.
    pub timeout: Duration,
}

/// `[hooks]`: commands run on role changes (argv, no shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksSection {
    /// `on_active`: run on becoming active; never an empty list.
    pub on_active: Option<Vec<String>>,
    /// `on_standby`: run on becoming standby; never an empty list.
    pub on_standby: Option<Vec<String>>,
    /// `timeout_ms`: then the command is killed.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    vtysh: Option<RawList>,
    ospf_interfaces: Option<RawList>,
    ospf6_interfaces: Option<RawList>,
    active_cost: Option<Spanned<i64>>,
    standby_cost: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    on_active: Option<RawList>,
    on_standby: Option<RawList>,
    timeout_ms: Option<Spanned<i64>>,
}

impl RawRouting {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
    ) -> Result<RoutingSection, ConfigError> {
        const TABLE: &str = "routing";
        let vtysh = match &self.vtysh {
            Some(raw) => argv(source, TABLE, "vtysh", raw)?,
            None => routing::VTYSH.default_list(),
        };
        let ospf = interface_list(
            source,
            TABLE,
            "ospf_interfaces",
            self.ospf_interfaces.as_ref(),
        )?;
        let ospf6 = interface_list(
            source,
            TABLE,
            "ospf6_interfaces",
            self.ospf6_interfaces.as_ref(),
        )?;
        if ospf.is_empty() && ospf6.is_empty() {
            let problem = "[routing] needs at least one interface in routing.ospf_interfaces or routing.ospf6_interfaces: where the OSPF cost follows the role";
            // At an empty list if the file has one, else at the table's header.
            let written = [
                ("ospf_interfaces", self.ospf_interfaces.as_ref()),
                ("ospf6_interfaces", self.ospf6_interfaces.as_ref()),
            ];
            return Err(
                match written
                    .iter()
                    .find_map(|(key, list)| Some((*key, (*list)?)))
                {
                    Some((key, list)) => source.bad_value(TABLE, key, &list.span(), problem),
                    None => source.error(
                        span,
                        Some("routing.ospf_interfaces".to_string()),
                        None,
                        problem,
                    ),
                },
            );
        }
        let active = int(source, &routing::ACTIVE_COST, self.active_cost.as_ref())?;
        let standby = int(source, &routing::STANDBY_COST, self.standby_cost.as_ref())?;
        if standby.value <= active.value {
            return Err(blame(&standby, &active).relation_error(
                source,
                format!(
                    "routing.standby_cost ({}) must be more than routing.active_cost ({}): the active node advertises the better (lower) cost",
                    standby.value, active.value
                ),
            ));
        }
        let timeout = int(source, &routing::TIMEOUT_MS, self.timeout_ms.as_ref())?;
        Ok(RoutingSection {
            vtysh,
            ospf_interfaces: ospf,
            ospf6_interfaces: ospf6,
            // Invariant: `int` checked the ranges.
            active_cost: active.value as u16,
            standby_cost: standby.value as u16,
            timeout: millis(timeout.value),
        })
    }
}

impl RawHooks {
    pub(super) fn validate(self, source: &Source<'_>) -> Result<HooksSection, ConfigError> {
        const TABLE: &str = "hooks";
        let command = |key: &str, raw: Option<&RawList>| {
            raw.map(|raw| argv(source, TABLE, key, raw)).transpose()
        };
        let timeout = int(source, &hooks::TIMEOUT_MS, self.timeout_ms.as_ref())?;
        Ok(HooksSection {
            on_active: command("on_active", self.on_active.as_ref())?,
            on_standby: command("on_standby", self.on_standby.as_ref())?,
            timeout: millis(timeout.value),
        })
    }
}
