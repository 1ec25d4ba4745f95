//! The VRRP pair of the lab: both daemons with failoverd's own VRRP, and what their status says
//! about the group.

use std::time::Duration;

use failoverd_control::protocol::{Status, VrrpInstanceView};

use crate::daemon::{Daemon, DaemonOptions, wait_synchronized};
use crate::{Firewall, Lab, wait_until};

/// How often the pair's setup polls the addresses.
const POLL: Duration = Duration::from_millis(20);

/// The VRRP group's state ("none" without a group).
pub fn group_state(status: &Status) -> &str {
    status
        .takeover
        .group
        .as_ref()
        .map_or("none", |g| g.state.name())
}

/// Whether the status says its VRRP group is master; false without a group.
pub fn is_master(status: &Status) -> bool {
    group_state(status) == "master"
}

/// The status of the group's instance "lan" (the lab's LAN).
pub fn lan(status: &Status) -> VrrpInstanceView {
    let group = status.takeover.group.as_ref().expect("a VRRP group");
    group
        .instances
        .iter()
        .find(|i| i.name == "lan")
        .expect("instance lan")
        .clone()
}

/// Both daemons with VRRP (A priority 200, B 100); waits until A is master holding the
/// addresses, B backup, both synchronized and ready.
pub fn vrrp_pair(lab: &Lab, options: &DaemonOptions) -> (Daemon, Daemon) {
    vrrp_pair_with(lab, options, options)
}

/// [`vrrp_pair`] with different options for A and B.
pub fn vrrp_pair_with(lab: &Lab, a: &DaemonOptions, b: &DaemonOptions) -> (Daemon, Daemon) {
    let mut a = lab.spawn_daemon(Firewall::A, a);
    let mut b = lab.spawn_daemon(Firewall::B, b);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    a.wait_for("A is VRRP master", Duration::from_secs(5), is_master);
    wait_until(
        "A holds the addresses",
        Duration::from_secs(5),
        POLL,
        || lab.only_holder(Firewall::A),
    );
    (a, b)
}
