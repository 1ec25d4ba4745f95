//! Takeover: who forwards, and what moves the traffic when that changes (docs/TAKEOVER.md).
//!
//! - [`vrrp`]: the VRRP task, driving the core's VRRP group with the sockets of `net`;
//! - [`track`]: tracked interfaces, routes and scripts, lowering the group's priority;
//! - [`frr`]: FRR follows the role (OSPF cost);
//! - [`hooks`]: commands run on role changes;
//! - [`history`]: what they all did, for `failoverctl events`;
//! - [`command`]: how those commands run (timeouts, output to the log);
//! - `accept`: accept mode off, as an nftables table.

#[cfg(target_os = "linux")]
mod accept;
pub mod command;
pub mod frr;
pub mod history;
pub mod hooks;
#[cfg(target_os = "linux")]
pub mod track;
#[cfg(target_os = "linux")]
pub mod vrrp;

use failoverd_control::config::Config;
use failoverd_control::protocol::{RoutingState, TakeoverKind, TakeoverStatus, VrrpGroupView};
use failoverd_core::TakeoverReason;
use failoverd_core::vrrp::PeerView;
use failoverd_core::wire::VrrpReport;
use failoverd_wire::Role;
use tokio::sync::oneshot;

/// What the VRRP group tells the driver.
pub enum TakeoverNews {
    /// Its mastership changed: this node forwards (`true`) or not, and why.
    Forwarding(bool, TakeoverReason),
    /// What its instances hear, for the peer (`Node::set_vrrp_report`).
    Report(VrrpReport),
}

/// What moves the traffic for one node: the VRRP task (mode `vrrp`), FRR and hooks. The driver
/// tells it the core's role changes and readiness; in mode `vrrp` it tells the driver who
/// forwards.
#[derive(Default)]
pub struct Takeover {
    mode: TakeoverKind,
    #[cfg(target_os = "linux")]
    vrrp: Option<vrrp::VrrpHandle>,
    frr: Option<frr::Frr>,
    hooks: Option<hooks::Hooks>,
    /// The readiness last told to the VRRP task.
    ready: Option<bool>,
    /// The peer's group as last told to the VRRP task.
    vrrp_peer: Option<PeerView>,
    /// The peer's VRRP report last told to the VRRP task.
    peer_report: Option<Option<VrrpReport>>,
    history: history::TakeoverHistory,
}

impl Takeover {
    /// Starts what `config` asks for. Must be called within a tokio runtime.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let history = history::TakeoverHistory::default();
        let frr = config.routing.as_ref().map(|routing| {
            let frr = frr::Frr::new(routing, history.clone());
            frr.start();
            frr
        });
        let hooks = (config.hooks.on_active.is_some() || config.hooks.on_standby.is_some())
            .then(|| hooks::Hooks::new(&config.hooks, &config.node.name, history.clone()));
        #[cfg(target_os = "linux")]
        let vrrp = match config.takeover.mode {
            TakeoverKind::Vrrp => Some(vrrp::spawn(&config.vrrp, history.clone()).await?),
            TakeoverKind::Election => None,
        };
        #[cfg(not(target_os = "linux"))]
        if config.takeover.mode == TakeoverKind::Vrrp {
            anyhow::bail!("takeover.mode = \"vrrp\" needs Linux");
        }
        Ok(Self {
            mode: config.takeover.mode,
            #[cfg(target_os = "linux")]
            vrrp,
            frr,
            hooks,
            ready: None,
            vrrp_peer: None,
            peer_report: None,
            history,
        })
    }

    /// What the takeover parts did, oldest first.
    pub fn history(&self) -> Vec<history::HistoryEntry> {
        self.history.entries()
    }

    /// The core's role changed from `from` to `to` because of `reason`: FRR and the hooks
    /// follow.
    pub fn role_changed(&self, from: Role, to: Role, reason: &str) {
        if let Some(frr) = &self.frr {
            frr.role_changed(to == Role::Active);
        }
        if let Some(hooks) = &self.hooks {
            hooks.role_changed(from, to, reason);
        }
    }

    /// The core's readiness, told to the VRRP group when it changes (it gates preemption).
    pub fn set_ready(&mut self, ready: bool) {
        if self.ready == Some(ready) {
            return;
        }
        self.ready = Some(ready);
        #[cfg(target_os = "linux")]
        if let Some(vrrp) = &self.vrrp {
            let _ = vrrp.requests.send(vrrp::VrrpRequest::Ready(ready));
        }
    }

    /// The peer's group as the failover link says ([`failoverd_core::Node::vrrp_peer`]), told
    /// to the VRRP group when it changes, which cross-checks adverts with it.
    pub fn set_vrrp_peer(&mut self, peer: PeerView) {
        if self.vrrp_peer == Some(peer) {
            return;
        }
        self.vrrp_peer = Some(peer);
        #[cfg(target_os = "linux")]
        if let Some(vrrp) = &self.vrrp {
            let _ = vrrp.requests.send(vrrp::VrrpRequest::Peer(peer));
        }
    }

    /// What the peer's VRRP instances hear (its last report over the failover link), told to
    /// the VRRP group when it changes.
    pub fn set_peer_report(&mut self, report: Option<&VrrpReport>) {
        if self.peer_report.as_ref().map(Option::as_ref) == Some(report) {
            return;
        }
        self.peer_report = Some(report.cloned());
        #[cfg(target_os = "linux")]
        if let Some(vrrp) = &self.vrrp {
            let _ = vrrp
                .requests
                .send(vrrp::VrrpRequest::PeerReport(report.cloned()));
        }
    }

    /// The next news of the VRRP group (a mastership change or a report for the peer); never
    /// resolves without one.
    pub async fn news(&mut self) -> Option<TakeoverNews> {
        #[cfg(target_os = "linux")]
        if let Some(vrrp) = &mut self.vrrp {
            return vrrp.news.recv().await.map(|news| match news {
                vrrp::VrrpNews::Forwarding { master, reason } => {
                    TakeoverNews::Forwarding(master, reason)
                }
                vrrp::VrrpNews::Report(report) => TakeoverNews::Report(report),
            });
        }
        std::future::pending().await
    }

    /// Switchover: the VRRP group hands mastership over (the core has checked the peer is
    /// ready). Without VRRP there is nothing to do: the core's election moves the role. The
    /// future does not borrow `self`.
    pub fn hand_over(&self) -> impl Future<Output = Result<(), String>> + use<> {
        #[cfg(target_os = "linux")]
        let answer = self.vrrp.as_ref().map(|vrrp| {
            let (reply, answer) = oneshot::channel();
            let _ = vrrp.requests.send(vrrp::VrrpRequest::HandOver(reply));
            answer
        });
        #[cfg(not(target_os = "linux"))]
        let answer: Option<oneshot::Receiver<Result<(), String>>> = None;
        async move {
            match answer {
                Some(answer) => answer
                    .await
                    .unwrap_or_else(|_| Err("the VRRP task stopped".into())),
                None => Ok(()),
            }
        }
    }

    /// Maintenance mode (VRRP only).
    pub fn set_maintenance(&self, on: bool) -> Result<(), String> {
        #[cfg(target_os = "linux")]
        if let Some(vrrp) = &self.vrrp {
            let _ = vrrp.requests.send(vrrp::VrrpRequest::Maintenance(on));
            return Ok(());
        }
        let _ = on;
        Err("maintenance mode needs takeover.mode = \"vrrp\"".to_string())
    }

    /// `status.takeover`, once the VRRP task answered; the future does not borrow `self`.
    pub fn status(&self) -> impl Future<Output = TakeoverStatus> + use<> {
        let mut status = TakeoverStatus {
            mode: self.mode,
            group: None,
            routing: self.frr.as_ref().map(frr::Frr::view),
            hooks: self.hooks.as_ref().map(hooks::Hooks::view),
        };
        let group: Option<oneshot::Receiver<VrrpGroupView>> = {
            #[cfg(target_os = "linux")]
            {
                self.vrrp.as_ref().map(|vrrp| {
                    let (reply, answer) = oneshot::channel();
                    let _ = vrrp.requests.send(vrrp::VrrpRequest::View(reply));
                    answer
                })
            }
            #[cfg(not(target_os = "linux"))]
            None
        };
        async move {
            if let Some(group) = group {
                status.group = group.await.ok();
            }
            status
        }
    }

    /// Leaving: the VRRP group sends priority 0 and removes its addresses, and FRR gets the
    /// standby cost set before the process ends (within its timeout).
    pub async fn shutdown(&self) {
        if let Some(frr) = &self.frr {
            let deadline = tokio::time::Instant::now() + frr.timeout();
            while frr.view().state == RoutingState::Applying
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        #[cfg(target_os = "linux")]
        if let Some(vrrp) = &self.vrrp {
            let (done, wait) = oneshot::channel();
            if vrrp
                .requests
                .send(vrrp::VrrpRequest::Shutdown(done))
                .is_ok()
            {
                let _ = wait.await;
            }
        }
    }
}
