//! Tracked objects (keepalived's `track_interface`, `track_script`, and routes): each is up or
//! down; the group's priority falls by the weights of those down, and one down with weight 0
//! is a fault (never master).

use std::collections::BTreeMap;
use std::time::Duration;

use failoverd_control::config::VrrpSection;
use failoverd_control::protocol::{EventKind, TrackKind, TrackView};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::net::{Netlink, watch_links};
use crate::takeover::command::ExternalCommand;
use crate::takeover::history::TakeoverHistory;

/// How often tracked routes are looked up (the kernel has no cheap per-route notification).
const ROUTE_POLL: Duration = Duration::from_secs(1);

/// The trackers' verdict for the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Sum of the weights of the objects down (at most 253).
    pub penalty: u8,
    /// The first object down with weight 0.
    pub fault: Option<String>,
    /// Every object, for status.
    pub tracks: Vec<TrackView>,
}

/// What is tracked: the configured objects, and every instance's own interface (an instance
/// whose interface is down can neither hear nor hold anything: fault, as in keepalived).
fn objects(config: &VrrpSection) -> Vec<TrackView> {
    let mut tracks: Vec<TrackView> = Vec::new();
    let interface = |name: &str, weight| TrackView {
        kind: TrackKind::Interface,
        name: name.to_string(),
        up: true,
        weight,
    };
    for instance in &config.instances {
        if !tracks.iter().any(|t| t.name == instance.interface) {
            tracks.push(interface(&instance.interface, 0));
        }
    }
    for track in &config.track_interfaces {
        match tracks.iter_mut().find(|t| t.name == track.name) {
            Some(existing) => existing.weight = track.weight,
            None => tracks.push(interface(&track.name, track.weight)),
        }
    }
    tracks.extend(config.track_routes.iter().map(|r| TrackView {
        kind: TrackKind::Route,
        name: r.destination.to_string(),
        up: true,
        weight: r.weight,
    }));
    tracks.extend(config.track_scripts.iter().map(|s| TrackView {
        kind: TrackKind::Script,
        name: s.name.clone(),
        up: true,
        weight: s.weight,
    }));
    tracks
}

fn verdict(tracks: Vec<TrackView>) -> Verdict {
    let down = tracks.iter().filter(|t| !t.up);
    let penalty = down
        .clone()
        .map(|t| u32::from(t.weight))
        .sum::<u32>()
        .min(253) as u8;
    let fault = down
        .clone()
        .find(|t| t.weight == 0)
        .map(|t| format!("{} {} is down", t.kind, t.name));
    Verdict {
        penalty,
        fault,
        tracks,
    }
}

/// Starts tracking; the first verdict (every object's current state) is in the receiver when
/// this returns.
pub async fn start(
    config: &VrrpSection,
    netlink: &Netlink,
    history: TakeoverHistory,
) -> anyhow::Result<watch::Receiver<Verdict>> {
    let mut tracks = objects(config);
    for track in tracks.iter_mut().filter(|t| t.kind == TrackKind::Interface) {
        track.up = netlink.link(&track.name).await?.up;
    }
    for (track, route) in tracks
        .iter_mut()
        .filter(|t| t.kind == TrackKind::Route)
        .zip(&config.track_routes)
    {
        let net = route.destination;
        track.up = netlink.route_exists(net.addr(), net.prefix_len()).await?;
    }
    let (verdicts, receiver) = watch::channel(verdict(tracks.clone()));
    let (updates, mut update_rx) =
        tokio::sync::mpsc::unbounded_channel::<(TrackKind, String, bool)>();

    let mut links = watch_links()?;
    let link_updates = updates.clone();
    tokio::spawn(async move {
        while let Some(change) = links.recv().await {
            if link_updates
                .send((TrackKind::Interface, change.name, change.up))
                .is_err()
            {
                break;
            }
        }
    });
    if !config.track_routes.is_empty() {
        // One task looks all tracked routes up, on a connection of its own.
        let (netlink, routes, route_updates) = (
            Netlink::connect()?,
            config.track_routes.clone(),
            updates.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ROUTE_POLL).await;
                for route in &routes {
                    let net = route.destination;
                    let up = match netlink.route_exists(net.addr(), net.prefix_len()).await {
                        Ok(up) => up,
                        Err(err) => {
                            warn!("route {net}: cannot look it up, counting it down: {err:#}");
                            false
                        }
                    };
                    if route_updates
                        .send((TrackKind::Route, net.to_string(), up))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    for script in config.track_scripts.clone() {
        let script_updates = updates.clone();
        tokio::spawn(async move {
            let command = ExternalCommand::new(
                format!("track_script {}", script.name),
                script.command.clone(),
                script.timeout,
            )
            // Every `interval`: the summary and output go to debug; a change of state is
            // logged below.
            .quiet();
            // Start as up; `fall` failures in a row make it down, `rise` successes up.
            let (mut up, mut streak) = (true, 0u32);
            loop {
                let ok = command.run().await.success();
                if ok == up {
                    streak = 0;
                } else {
                    streak += 1;
                    if streak >= if up { script.fall } else { script.rise } {
                        up = ok;
                        streak = 0;
                    }
                }
                if script_updates
                    .send((TrackKind::Script, script.name.clone(), up))
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(script.interval).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut state: BTreeMap<(TrackKind, String), bool> = tracks
            .iter()
            .map(|t| ((t.kind, t.name.clone()), t.up))
            .collect();
        while let Some((kind, name, up)) = update_rx.recv().await {
            let Some(current) = state.get_mut(&(kind, name.clone())) else {
                continue;
            };
            if *current == up {
                continue;
            }
            *current = up;
            let message = format!(
                "tracked {kind} {name} is {}",
                if up { "up" } else { "down" }
            );
            if up {
                info!("{message}");
            } else {
                warn!("{message}");
            }
            history.record(EventKind::Track, message);
            for track in &mut tracks {
                if track.kind == kind && track.name == name {
                    track.up = up;
                }
            }
            if verdicts.send(verdict(tracks.clone())).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(kind: TrackKind, name: &str, up: bool, weight: u8) -> TrackView {
        TrackView {
            kind,
            name: name.into(),
            up,
            weight,
        }
    }

    #[test]
    fn weights_add_up_and_weight_zero_is_a_fault() {
        let v = verdict(vec![
            track(TrackKind::Interface, "lan", true, 0),
            track(TrackKind::Script, "ping", false, 30),
            track(TrackKind::Route, "0.0.0.0/0", false, 20),
        ]);
        assert_eq!((v.penalty, v.fault), (50, None));
        let v = verdict(vec![
            track(TrackKind::Interface, "wan", false, 0),
            track(TrackKind::Script, "a", false, 200),
            track(TrackKind::Script, "b", false, 200),
        ]);
        assert_eq!(v.penalty, 253);
        assert_eq!(v.fault.as_deref(), Some("interface wan is down"));
    }
}
