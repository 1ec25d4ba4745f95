//! The human output, checked line by line.

use std::collections::BTreeMap;

use failoverd_control::protocol::{
    BackendKind, BackupMode, EventKind, EventView, FailoverRole, FailoverState, Family, HooksView,
    LinkState, NodeId, NodeInfo, Replication, RoutingState, RoutingView, TrackKind, VrrpDropsView,
    VrrpPeerState, VrrpState,
};

use super::*;

fn sample_peer() -> PeerInfo {
    PeerInfo {
        address: "192.0.2.2:7701".into(),
        link: LinkState::Up,
        node_id: Some(NodeId(0x2000_abcd)),
        state: Some(FailoverState::Synchronization),
        role: Some(FailoverRole::Standby),
        priority: Some(90),
        ready: Some(true),
        last_hello_ms_ago: Some(12),
        rtt_us: Some(180),
        incompatibility: None,
        protocol: Some("1.1".into()),
        hello_interval_ms: Some(50),
        dead_interval_ms: Some(150),
        timer_mismatch: None,
    }
}

fn sample_status() -> Status {
    Status {
        node: NodeInfo {
            name: "fw-a".into(),
            node_id: NodeId(0x1000_abcd),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            pair_id: 1,
            priority: 100,
            backup: BackupMode::Symmetric,
            preempt: true,
            backend: BackendKind::Memory,
        },
        state: FailoverState::Synchronization,
        state_since_ms: 12_345,
        role: FailoverRole::Active,
        ready: true,
        not_ready: vec![],
        peer: Some(sample_peer()),
        sessions: SessionCounts {
            total: 1200,
            owned: 800,
            peer_owned: 400,
            pending_changes: 0,
            in_flight_batches: 1,
        },
        replication: Replication {
            epoch: 3,
            bulk_sent: true,
            bulk_received: true,
            lag_p50_us: 120,
            lag_p99_us: 800,
            lag_max_us: 2100,
            lag_samples: 1234,
            peer_buffered_bytes: 0,
        },
        counters: BTreeMap::from([
            ("hellos_sent".to_string(), 1234),
            ("batches_received".to_string(), 12),
            ("malformed_frames".to_string(), 0),
        ]),
        uptime_ms: 3_723_000,
        takeover: TakeoverStatus::default(),
        heartbeat: None,
    }
}

fn sample_instance() -> VrrpInstanceView {
    VrrpInstanceView {
        name: "lan".into(),
        interface: "lan".into(),
        vrid: 51,
        family: Family::Ipv4,
        state: VrrpState::Master,
        priority: 200,
        configured_priority: 200,
        advert_interval_ms: 50,
        master_address: Some("10.0.1.2".into()),
        master_priority: Some(200),
        addresses: vec!["10.0.1.1/24".into()],
        holds_addresses: true,
        unicast_peers: vec![],
        adverts_sent: 123,
        adverts_received: 4,
        malformed_dropped: 0,
        became_master: 1,
        port_hears: true,
        ..VrrpInstanceView::default()
    }
}

fn sample_takeover() -> TakeoverStatus {
    TakeoverStatus {
        mode: TakeoverKind::Vrrp,
        group: Some(VrrpGroupView {
            state: VrrpState::Master,
            reason: "master down timer expired on lan".into(),
            ready_to_preempt: true,
            not_preempting: None,
            maintenance: false,
            peer_check: true,
            peer: VrrpPeerState::NotMaster,
            silent_intervals: 3,
            priority_penalty: 0,
            fault: None,
            instances: vec![
                sample_instance(),
                VrrpInstanceView {
                    name: "lan6".into(),
                    vrid: 7,
                    family: Family::Ipv6,
                    master_address: Some("fe80::2".into()),
                    addresses: vec!["fe80::1/64".into(), "2001:db8::1/64".into()],
                    adverts_sent: 1,
                    ..sample_instance()
                },
            ],
            tracks: vec![
                TrackView {
                    kind: TrackKind::Interface,
                    name: "wan".into(),
                    up: true,
                    weight: 0,
                },
                TrackView {
                    kind: TrackKind::Route,
                    name: "0.0.0.0/0".into(),
                    up: true,
                    weight: 50,
                },
            ],
        }),
        routing: Some(RoutingView {
            state: RoutingState::Active,
            last_error: None,
        }),
        hooks: Some(HooksView {
            last: Some("on_active exited 0 after 12 ms".into()),
        }),
    }
}

#[test]
fn durations() {
    assert_eq!(millis(0), "0 ms");
    assert_eq!(millis(850), "850 ms");
    assert_eq!(millis(12_345), "12.3 s");
    assert_eq!(millis(312_000), "5 min 12 s");
    assert_eq!(millis(7_500_000), "2 h 05 min");
    assert_eq!(millis(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
    assert_eq!(micros(180), "180 µs");
    assert_eq!(micros(2100), "2.1 ms");
    assert_eq!(micros(1_250_000), "1.25 s");
}

#[test]
fn status_is_aligned_and_skips_zero_counters() {
    let text = status(&sample_status());
    let expected = format!(
            "\
node          fw-a (1000abcd)  state synchronization (12.3 s)  role active  ready yes
pair          1  backup symmetric  priority 100  preempt yes
fingerprint   sha256:{}
uptime        1 h 02 min
peer          192.0.2.2:7701  link up  node 2000abcd  state synchronization  role standby  priority 90  ready yes
              last hello 12 ms ago  rtt 180 µs
sessions      1200 total  800 owned  400 peer-owned  0 pending changes  1 batches in flight  (memory table)
replication   epoch 3  bulk sent yes  bulk received yes
lag           p50 120 µs  p99 800 µs  max 2.1 ms  (1234 samples)
counters      batches_received    12
              hellos_sent       1234
",
            "ab".repeat(32)
        );
    assert_eq!(text, expected);
}

#[test]
fn status_of_a_lonely_node() {
    let mut s = sample_status();
    s.state = FailoverState::Independence;
    s.ready = false;
    s.not_ready = vec!["no bulk sync from the peer yet".into()];
    s.peer = Some(PeerInfo {
        link: LinkState::Down,
        node_id: None,
        state: None,
        role: None,
        priority: None,
        ready: None,
        last_hello_ms_ago: None,
        rtt_us: None,
        incompatibility: Some("peer is in pair 2, we are in pair 1".into()),
        ..sample_peer()
    });
    s.replication.lag_samples = 0;
    s.counters.clear();
    let text = status(&s);
    assert!(
        text.contains("ready no\nnot ready     no bulk sync from the peer yet\n"),
        "{text}"
    );
    assert!(text.contains("\npeer          192.0.2.2:7701  link down\n              incompatible: peer is in pair 2"), "{text}");
    assert!(text.contains("\nlag           no samples yet\n"), "{text}");
    assert!(!text.contains("counters"), "{text}");
}

#[test]
fn status_shows_the_heartbeat_path_and_why_it_holds_the_node_standby() {
    let mut s = sample_status();
    s.role = FailoverRole::Standby;
    s.heartbeat = Some(HeartbeatInfo {
        address: "198.51.100.2:7702".into(),
        state: LinkState::Up,
        peer_role: Some(FailoverRole::Active),
        peer_state: Some(FailoverState::Independence),
        last_heard_ms_ago: Some(20),
        holds_standby: true,
    });
    let text = status(&s);
    assert!(
            text.contains("rtt 180 µs\nheartbeat     198.51.100.2:7702  up  peer active  state independence  last heard 20 ms ago\n              standby: the failover link is down but the peer is heard on the heartbeat path\nsessions"),
            "{text}"
        );
}

#[test]
fn status_with_vrrp() {
    let mut s = sample_status();
    s.takeover = sample_takeover();
    let text = status(&s);
    let block = "\
takeover      vrrp  group master (master down timer expired on lan)
              ready to preempt yes  maintenance off  priority penalty 0  peer check on (peer not-master)  silent networks: the link decides after 3 intervals
instances     lan   on lan  vrid 51  ipv4  master  priority 200  master 10.0.1.2 (200)  holds 10.0.1.1/24                adverts every 50 ms: 123 sent 4 received 0 malformed  port hears
              lan6  on lan  vrid 7   ipv6  master  priority 200  master fe80::2 (200)   holds fe80::1/64 2001:db8::1/64  adverts every 50 ms: 1 sent 4 received 0 malformed    port hears
tracks        interface  wan        up  fault while down
              route      0.0.0.0/0  up  priority -50 while down
routing       FRR active
hooks         on_active exited 0 after 12 ms
";
    // After the peer, before the sessions.
    assert!(
        text.contains(&format!("rtt 180 µs\n{block}sessions      1200 total")),
        "{text}"
    );
}

#[test]
fn status_with_vrrp_held_back() {
    let mut s = sample_status();
    let mut takeover = sample_takeover();
    let group = takeover.group.as_mut().unwrap();
    group.state = VrrpState::Backup;
    group.reason = "maintenance on".into();
    group.ready_to_preempt = false;
    group.not_preempting = Some("the peer's sessions are not all here yet".into());
    group.maintenance = true;
    group.peer_check = false;
    group.priority_penalty = 50;
    group.fault = Some("interface wan is down".into());
    group.tracks.truncate(1);
    group.tracks[0].up = false;
    group.instances = vec![VrrpInstanceView {
        state: VrrpState::Backup,
        priority: 150,
        master_address: None,
        master_priority: None,
        addresses: (1..=5).map(|i| format!("10.0.1.{i}/24")).collect(),
        holds_addresses: false,
        unicast_peers: vec!["10.0.1.3".into()],
        malformed_dropped: 3,
        dropped: VrrpDropsView {
            ttl: 2,
            unknown_peer: 1,
            ..VrrpDropsView::default()
        },
        answers_limited: 40,
        port_hears: false,
        silent_for: 4,
        peer_silent: Some(false),
        peer_hears: Some(true),
        ..sample_instance()
    }];
    takeover.routing = Some(RoutingView {
        state: RoutingState::Standby,
        last_error: Some("vtysh exited 1".into()),
    });
    takeover.hooks = Some(HooksView { last: None });
    s.takeover = takeover;
    let text = status(&s);
    let block = "\
takeover      vrrp  group backup (maintenance on)
              ready to preempt no  maintenance on  priority penalty 50  peer check off  silent networks: the link decides after 3 intervals
              not preempting: the peer's sessions are not all here yet
              fault: interface wan is down
instances     lan  on lan  vrid 51  ipv4  backup  priority 150 (200 configured)  master unknown  not holding 10.0.1.1/24 10.0.1.2/24 +3 more  adverts every 50 ms: 123 sent 4 received 3 malformed  port hears nothing, no master for 4 intervals; peer: hears a master or is master, port hears  2 TTL, 1 unknown peer, 40 answers limited  unicast to 10.0.1.3
tracks        interface  wan  down  fault while down
routing       FRR standby  last error: vtysh exited 1
hooks         none run yet
";
    assert!(text.contains(block), "{text}");
}

#[test]
fn status_of_election_with_routing() {
    let mut s = sample_status();
    assert!(!status(&s).contains("takeover"));
    s.takeover.routing = Some(RoutingView {
        state: RoutingState::Active,
        last_error: None,
    });
    let text = status(&s);
    assert!(
        text.contains("\ntakeover      election\nrouting       FRR active\nsessions "),
        "{text}"
    );
}

#[test]
fn peer_rows() {
    let mut p = sample_peer();
    p.rtt_us = None;
    assert_eq!(
        peer(&p),
        "\
address       192.0.2.2:7701
link          up
node          2000abcd
state         synchronization
role          standby
priority      90
ready         yes
last hello    12 ms ago
rtt           -
protocol      1.1
hello         50 ms
dead          150 ms
"
    );
}

#[test]
fn timer_mismatch_shows_in_peer_and_status() {
    let warning =
        "hello timers differ: hello 50 ms, dead 150 ms here, hello 200 ms, dead 600 ms on the peer";
    let mut p = sample_peer();
    p.hello_interval_ms = Some(200);
    p.dead_interval_ms = Some(600);
    p.timer_mismatch = Some(warning.into());
    let text = peer(&p);
    assert!(
        text.contains(&format!(
            "hello         200 ms\ndead          600 ms\ntimers        {warning}\n"
        )),
        "{text}"
    );
    let mut s = sample_status();
    s.peer = Some(p);
    let text = status(&s);
    assert!(
        text.contains(&format!("rtt 180 µs\n              warning: {warning}\n")),
        "{text}"
    );
    s.peer = Some(sample_peer());
    assert!(
        !status(&s).contains("warning"),
        "no warning without a mismatch"
    );
}

#[test]
fn session_table() {
    let view = |proto: &str, local: bool, src: &str, dst: &str, state: Option<&str>| SessionView {
        proto: proto.to_string().try_into().unwrap(),
        family: Family::Ipv4,
        orig: TupleView {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport: 80,
        },
        reply: TupleView {
            src: dst.parse().unwrap(),
            dst: src.parse().unwrap(),
            sport: 80,
            dport: 40000,
        },
        owner: NodeId(if local { 0x1000_abcd } else { 0x2000_abcd }),
        local,
        zone: 0,
        mark: 0,
        status: 0,
        timeout: 120,
        tcp_state: state.map(Into::into),
        helper: None,
        labels: None,
    };
    let mut list = SessionList {
        total: 10,
        matched: 2,
        sessions: vec![
            view("tcp", true, "10.0.0.1", "192.0.2.80", Some("ESTABLISHED")),
            view("udp", false, "2001:db8::1", "2001:db8::2", None),
        ],
    };
    assert_eq!(
            sessions(&list),
            "\
PROTO  ORIGINAL                                 REPLY                                    OWNER     STATE        TIMEOUT
tcp    10.0.0.1:40000 -> 192.0.2.80:80          192.0.2.80:80 -> 10.0.0.1:40000          local     ESTABLISHED  120 s
udp    [2001:db8::1]:40000 -> [2001:db8::2]:80  [2001:db8::2]:80 -> [2001:db8::1]:40000  2000abcd  -            120 s
2 of 2 matching sessions (10 in the table)
"
        );
    list.matched = 5;
    list.sessions[1].mark = 16;
    list.sessions[1].helper = Some("ftp".into());
    let text = sessions(&list);
    assert!(text.contains("TIMEOUT  EXTRA\n"), "{text}");
    assert!(text.contains("120 s    mark 0x10 helper ftp\n"), "{text}");
    assert!(text.ends_with("2 of 5 matching sessions (10 in the table); --limit 0 shows all\n"));
    list.sessions.clear();
    assert_eq!(sessions(&list), "no matching sessions (10 in the table)\n");
}

#[test]
fn event_lines() {
    let event = |at_ms, kind, message: &str| EventView {
        at_ms,
        kind,
        from: None,
        to: None,
        reason: None,
        message: message.into(),
    };
    let list = EventList {
        events: vec![
            event(
                1_000,
                EventKind::State,
                "state silence -> independence: silence timer expired",
            ),
            event(
                12_345,
                EventKind::BulkReceived,
                "bulk sync of 10 peer sessions applied",
            ),
        ],
    };
    assert_eq!(
        events(&list),
        " 1.000 s  state          state silence -> independence: silence timer expired\n\
             12.345 s  bulk-received  bulk sync of 10 peer sessions applied\n"
    );
    assert_eq!(events(&EventList { events: vec![] }), "no events\n");
}

/// Config-sync kinds are longer than the others: the message column moves right for them only.
#[test]
fn config_sync_event_lines() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../control/tests/golden/events_config.json");
    let list: EventList = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        events(&list),
        "  1.002 s  config-status   config sync waiting -> preparing: the peer is in Synchronization
  1.010 s  config-status   config sync preparing -> synchronizing-all: 2 units differ
  1.250 s  config-sent     the peer applied the full sync of 2 units
 61.000 s  config-failed   the peer failed to apply nftables inet filter: Error: Could not process rule: No such file or directory; nothing changed
 90.000 s  config-drift    comparison 1 of 3: nftables inet filter differs on the peer
120.500 s  config-applied  applied the source's incremental sync of 1 unit
"
    );
}

#[test]
fn small_outputs() {
    let c = SessionCounts {
        total: 1200,
        owned: 800,
        peer_owned: 400,
        pending_changes: 0,
        in_flight_batches: 0,
    };
    assert_eq!(
        counts(&c),
        "total              1200\nowned               800\npeer-owned          400\n\
             pending changes       0\nin-flight batches     0\n"
    );
    let g = Generated {
        created: 10,
        table_full: 0,
    };
    assert_eq!(generated(&g), "created 10 sessions\n");
    let g = Generated {
        created: 8,
        table_full: 2,
    };
    assert_eq!(
        generated(&g),
        "created 8 sessions; 2 not created: the table is full\n"
    );
    let done = SwitchoverDone {
        message: "handed over".into(),
    };
    assert_eq!(switchover(&done), "handed over\n");
    let done = MaintenanceDone {
        message: "maintenance on".into(),
    };
    assert_eq!(maintenance(&done), "maintenance on\n");
}
