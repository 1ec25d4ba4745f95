//! The session-sync engine, one half per direction.

pub(crate) mod apart;
pub(crate) mod hold;
pub(crate) mod inbound;
pub(crate) mod outbound;

/// A TCP session from 10.0.0.1 port `i` to 192.0.2.1:80, for the sync engine's tests.
#[cfg(test)]
pub(crate) fn test_record(i: u16, owner: failoverd_wire::NodeId) -> failoverd_wire::SessionRecord {
    use failoverd_wire::{HelperName, SessionKey, SessionRecord, TcpInfo, Tuple};
    let orig = Tuple {
        src: "10.0.0.1".parse().unwrap(),
        dst: "192.0.2.1".parse().unwrap(),
        src_port: i,
        dst_port: 80,
    };
    SessionRecord {
        key: SessionKey {
            zone: 0,
            l4proto: 6,
            orig,
        },
        reply: Tuple {
            src: orig.dst,
            dst: orig.src,
            src_port: 80,
            dst_port: i,
        },
        owner,
        mark: 0,
        status: 0,
        timeout_secs: 100,
        tcp: TcpInfo::default(),
        seq_adj: Default::default(),
        labels: [0; 16],
        helper: HelperName::NONE,
    }
}
