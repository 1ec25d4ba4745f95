//! Rolling upgrade: frames of every released protocol version, as that version emitted them,
//! must decode field by field; frames of a newer minor version (appended fields, longer
//! records, unknown sections and kinds) must decode with the extra skipped.
//!
//! `tests/golden/v<major>.<minor>/<message>.hex` holds each message kind of a release, 16
//! bytes per line in hex, `#` lines are comments. A new release adds its own directory; none is
//! ever changed.

use std::net::IpAddr;

use failoverd_wire::{
    BackupType, BatchFlags, BatchWriter, Chunk, ConfigOffer, ConfigSyncKind, ConfigSyncMessage,
    ConfigVersions, DIGEST_BUCKETS, Goodbye, GoodbyeReason, HEADER_LEN, Hello, HelloFlags,
    HelperName, Message, NodeId, ProtocolVersion, RECORD_LEN, Role, SectionKind, SeqAdj,
    SessionKey, SessionOp, SessionRecord, SyncOutcome, SyncResult, SyncState, TcpInfo, TcpState,
    TransferHeader, TransferPurpose, TransferUnit, Tuple, UnitHash, UnitId, UnitKind, UnitState,
    VERSION, digest,
};

fn golden(version: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/golden/{version}/{name}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect()
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The two records in the 1.0 session batch and digest.
fn records() -> (SessionRecord, SessionRecord) {
    let v4 = SessionRecord {
        key: SessionKey {
            zone: 7,
            l4proto: 6,
            orig: Tuple {
                src: addr("10.0.0.1"),
                dst: addr("192.0.2.10"),
                src_port: 40000,
                dst_port: 21,
            },
        },
        reply: Tuple {
            src: addr("192.0.2.10"),
            dst: addr("198.51.100.1"),
            src_port: 21,
            dst_port: 61000,
        },
        owner: NodeId(0x1111_2222),
        mark: 0xdead_beef,
        status: 0x1be,
        timeout_secs: 431_999,
        tcp: TcpInfo {
            state: TcpState::ESTABLISHED,
            wscale_orig: 7,
            wscale_reply: 8,
            flags_orig: 0x23,
            flags_reply: 0x2b,
        },
        seq_adj: [
            SeqAdj {
                correction_pos: 1000,
                offset_before: -3,
                offset_after: 5,
            },
            SeqAdj {
                correction_pos: 2000,
                offset_before: 4,
                offset_after: -6,
            },
        ],
        labels: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x80],
        helper: HelperName::new("ftp").unwrap(),
    };
    let v6 = SessionRecord {
        key: SessionKey {
            zone: 0,
            l4proto: 17,
            orig: Tuple {
                src: addr("2001:db8::1"),
                dst: addr("2001:db8::53"),
                src_port: 5353,
                dst_port: 53,
            },
        },
        reply: Tuple {
            src: addr("2001:db8::53"),
            dst: addr("2001:db8::1"),
            src_port: 53,
            dst_port: 5353,
        },
        owner: NodeId(0x1111_2222),
        mark: 0,
        status: 0x8,
        timeout_secs: 30,
        tcp: TcpInfo::default(),
        seq_adj: Default::default(),
        labels: [0; 16],
        helper: HelperName::NONE,
    };
    (v4, v6)
}

/// The hello in the 1.0 files; a 1.0 sender has no minor, which reads as 0.
fn hello_1_0() -> Hello {
    Hello {
        pair_id: 7,
        node_id: 0x1111_2222,
        priority: 200,
        backup_type: BackupType::SYMMETRIC,
        state: SyncState::Synchronization,
        role: Role::Active,
        flags: HelloFlags(HelloFlags::READY | HelloFlags::PREEMPT | HelloFlags::RESYNC),
        epoch: 0x0102_0304,
        hello_interval_ms: 50,
        dead_interval_ms: 150,
        tx_stamp: 1_234_567_890,
        echo_stamp: 1_234_000_000,
        resync_epoch: 0x0a0b_0c0d,
        protocol_minor: 0,
        applied: None,
    }
}

#[test]
fn v1_0_hello_decodes_field_by_field() {
    let bytes = golden("v1.0", "hello");
    let Ok(Message::Hello(hello)) = Message::parse(&bytes) else {
        panic!("not a hello")
    };
    assert_eq!(hello.pair_id, 7);
    assert_eq!(hello.node_id, 0x1111_2222);
    assert_eq!(hello.priority, 200);
    assert_eq!(hello.backup_type, BackupType::SYMMETRIC);
    assert_eq!(hello.state, SyncState::Synchronization);
    assert_eq!(hello.role, Role::Active);
    assert!(hello.flags.has(HelloFlags::READY));
    assert!(!hello.flags.has(HelloFlags::YIELDING));
    assert!(hello.flags.has(HelloFlags::PREEMPT));
    assert!(hello.flags.has(HelloFlags::RESYNC));
    assert_eq!(hello.epoch, 0x0102_0304);
    assert_eq!(hello.hello_interval_ms, 50);
    assert_eq!(hello.dead_interval_ms, 150);
    assert_eq!(hello.tx_stamp, 1_234_567_890);
    assert_eq!(hello.echo_stamp, 1_234_000_000);
    assert_eq!(hello.resync_epoch, 0x0a0b_0c0d);
    assert_eq!(hello.protocol_minor, 0, "a 1.0 hello has no minor");
    assert_eq!(
        ProtocolVersion::of_hello(&hello),
        ProtocolVersion { major: 1, minor: 0 }
    );
    assert_eq!(hello, hello_1_0());
}

#[test]
fn v1_0_goodbye_ack_settings_and_digest_decode_field_by_field() {
    let Ok(Message::Goodbye(goodbye)) = Message::parse(&golden("v1.0", "goodbye")) else {
        panic!("not a goodbye")
    };
    assert_eq!(
        goodbye,
        Goodbye {
            reason: GoodbyeReason::Shutdown
        }
    );

    let Ok(Message::Ack(ack)) = Message::parse(&golden("v1.0", "ack")) else {
        panic!("not an ack")
    };
    assert_eq!(ack.epoch, 0x0102_0304);
    assert_eq!(ack.received, 42);
    assert_eq!(ack.applied, 40);

    let bytes = golden("v1.0", "settings");
    let Ok(Message::Settings(settings)) = Message::parse(&bytes) else {
        panic!("not settings")
    };
    assert_eq!(
        settings.entries().collect::<Vec<_>>(),
        [("nf_conntrack_max", 262_144), ("nf_conntrack_tcp_loose", 0)]
    );

    let bytes = golden("v1.0", "digest");
    let Ok(Message::Digest(view)) = Message::parse(&bytes) else {
        panic!("not a digest")
    };
    let (v4, v6) = records();
    assert_eq!(view.round(), 9);
    assert_eq!(view.buckets(), digest([&v4, &v6]));
    assert_eq!(
        view.buckets().iter().filter(|&&b| b != 0).count(),
        2,
        "two records in two buckets of {DIGEST_BUCKETS}"
    );
}

#[test]
fn v1_0_session_batch_with_every_op_kind_decodes_field_by_field() {
    let bytes = golden("v1.0", "session_batch");
    let Ok(Message::SessionBatch(batch)) = Message::parse(&bytes) else {
        panic!("not a session batch")
    };
    assert_eq!(batch.epoch(), 0x0102_0304);
    assert_eq!(batch.seq(), 1);
    assert!(batch.flags().has(BatchFlags::BULK_BEGIN));
    assert!(!batch.flags().has(BatchFlags::BULK_END));
    let sections: Vec<_> = batch.sections().collect();
    let kinds: Vec<_> = sections.iter().map(|s| (s.kind, s.count)).collect();
    assert_eq!(
        kinds,
        [
            (SectionKind::Upsert, 2),
            (SectionKind::Remove, 1),
            (SectionKind::RemoveAny, 1)
        ]
    );
    let ops: Vec<_> = sections
        .iter()
        .flat_map(|s| s.ops())
        .map(Result::unwrap)
        .collect();
    let [
        SessionOp::Upsert(v4),
        SessionOp::Upsert(v6),
        SessionOp::Remove { key, owner },
        SessionOp::RemoveAny { key: any },
    ] = &ops[..]
    else {
        panic!("ops {ops:?}")
    };
    let (want_v4, want_v6) = records();
    // Field by field, so a difference names the field.
    assert_eq!(v4.key.zone, 7);
    assert_eq!(v4.key.l4proto, 6);
    assert_eq!(v4.key.orig.src, addr("10.0.0.1"));
    assert_eq!(v4.key.orig.dst, addr("192.0.2.10"));
    assert_eq!((v4.key.orig.src_port, v4.key.orig.dst_port), (40000, 21));
    assert_eq!(v4.reply.src, addr("192.0.2.10"));
    assert_eq!(v4.reply.dst, addr("198.51.100.1"), "NAT: the reply tuple");
    assert_eq!((v4.reply.src_port, v4.reply.dst_port), (21, 61000));
    assert_eq!(v4.owner, NodeId(0x1111_2222));
    assert_eq!(v4.mark, 0xdead_beef);
    assert_eq!(v4.status, 0x1be);
    assert_eq!(v4.timeout_secs, 431_999);
    assert_eq!(v4.tcp.state, TcpState::ESTABLISHED);
    assert_eq!((v4.tcp.wscale_orig, v4.tcp.wscale_reply), (7, 8));
    assert_eq!((v4.tcp.flags_orig, v4.tcp.flags_reply), (0x23, 0x2b));
    assert_eq!(v4.seq_adj[0].correction_pos, 1000);
    assert_eq!(
        (v4.seq_adj[0].offset_before, v4.seq_adj[0].offset_after),
        (-3, 5)
    );
    assert_eq!(v4.seq_adj[1].correction_pos, 2000);
    assert_eq!(
        (v4.seq_adj[1].offset_before, v4.seq_adj[1].offset_after),
        (4, -6)
    );
    assert_eq!(v4.labels[15], 0x80);
    assert_eq!(v4.helper.as_str(), "ftp");
    assert_eq!(v4, &want_v4);
    assert!(v6.key.is_ipv6());
    assert_eq!(v6.key.orig.src, addr("2001:db8::1"));
    assert_eq!(v6.helper.as_str(), "");
    assert_eq!(v6, &want_v6);
    assert_eq!((key, owner), (&want_v6.key, &NodeId(0x1111_2222)));
    assert_eq!(any, &want_v4.key);
}

/// The 1.0 files are what this version emits for the same values, except the hello, which
/// since 1.1 appends its minor: the rest of the frame is byte for byte 1.0's, so a 1.0 reader
/// (which reads the first 48 bytes of a hello body) reads this version's hellos.
#[test]
fn this_version_emits_1_0_layouts_and_only_appends_to_the_hello() {
    let (v4, v6) = records();
    let mut writer = BatchWriter::new();
    writer.push(&SessionOp::Upsert(v4.clone()));
    writer.push(&SessionOp::Upsert(v6.clone()));
    writer.push(&SessionOp::Remove {
        key: v6.key,
        owner: NodeId(0x1111_2222),
    });
    writer.push(&SessionOp::RemoveAny { key: v4.key });
    let mut buf = Vec::new();
    writer.finish(0x0102_0304, 1, BatchFlags(BatchFlags::BULK_BEGIN), &mut buf);
    assert_eq!(buf, golden("v1.0", "session_batch"));

    let old = golden("v1.0", "hello");
    let mut new = Vec::new();
    Hello {
        protocol_minor: ProtocolVersion::CURRENT.minor,
        ..hello_1_0()
    }
    .emit(&mut new);
    assert_eq!(new[..4], old[..4], "magic, major, kind");
    assert_eq!(new[HEADER_LEN..old.len()], old[HEADER_LEN..], "1.0 fields");
    let minor = ProtocolVersion::CURRENT.minor.to_be_bytes();
    // 1.1: the minor and 2 reserved bytes; 1.3: nothing applied (epoch, 4 reserved, seq).
    let appended = [&minor[..], &[0; 2], &[0; 16]].concat();
    assert_eq!(new[old.len()..], appended[..]);
    assert_eq!(ProtocolVersion::CURRENT.major, VERSION);
}

/// What a message says, without the raw bytes a view keeps.
fn decoded(message: &Message<'_>) -> String {
    match message {
        Message::Settings(view) => format!("{:?}", view.entries().collect::<Vec<_>>()),
        Message::Digest(view) => format!("{} {:?}", view.round(), view.buckets()),
        other => format!("{other:?}"),
    }
}

/// Appends `extra` to a frame's body and fixes its length field.
fn with_appended(mut frame: Vec<u8>, extra: &[u8]) -> Vec<u8> {
    frame.extend_from_slice(extra);
    let len = frame.len() as u32;
    frame[4..8].copy_from_slice(&len.to_be_bytes());
    frame
}

/// A session batch as a later minor version might send it: each upsert record 8 bytes longer
/// (an appended field), then a section of a kind this version does not know.
fn future_batch(records: &[SessionRecord]) -> Vec<u8> {
    const EXTENDED: usize = RECORD_LEN + 8;
    let mut body = Vec::new();
    body.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    body.extend_from_slice(&[BatchFlags::BULK_BEGIN | BatchFlags::BULK_END, 0, 0, 0]);
    body.extend_from_slice(&1u64.to_be_bytes());
    body.extend_from_slice(&2u16.to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(EXTENDED as u16).to_be_bytes());
    body.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in records {
        let mut raw = [0xee; EXTENDED];
        record.emit(&mut raw);
        body.extend_from_slice(&raw);
    }
    body.extend_from_slice(&[77, 0]);
    body.extend_from_slice(&12u16.to_be_bytes());
    body.extend_from_slice(&2u32.to_be_bytes());
    body.extend_from_slice(&[0x5a; 24]);
    let mut frame = vec![b'F', b'O', VERSION, 3, 0, 0, 0, 0];
    frame.extend_from_slice(&body);
    with_appended(frame, &[])
}

#[test]
fn a_reader_skips_what_a_newer_minor_adds() {
    let (v4, v6) = records();
    let frame = future_batch(&[v4.clone(), v6.clone()]);
    let Ok(Message::SessionBatch(batch)) = Message::parse(&frame) else {
        panic!("a newer batch does not parse")
    };
    let sections: Vec<_> = batch.sections().collect();
    assert_eq!(sections[0].record_len, RECORD_LEN + 8);
    let ops: Vec<_> = sections[0].ops().map(Result::unwrap).collect();
    assert_eq!(
        ops,
        [SessionOp::Upsert(v4), SessionOp::Upsert(v6)],
        "appended record bytes ignored"
    );
    assert_eq!(sections[1].kind, SectionKind::Unknown(77));
    assert_eq!(
        sections[1].ops().count(),
        0,
        "an unknown section yields no op"
    );
    assert_eq!(
        sections[1].count, 2,
        "but is seen, so the receiver counts it"
    );

    let mut hello = Vec::new();
    Hello {
        protocol_minor: ProtocolVersion::CURRENT.minor,
        ..hello_1_0()
    }
    .emit(&mut hello);
    let frames = ["goodbye", "ack", "settings", "digest"].map(|name| (name, golden("v1.0", name)));
    for (name, old) in [("hello", hello)].into_iter().chain(frames) {
        let longer = with_appended(old.clone(), &[0xa5; 12]);
        let (Ok(a), Ok(b)) = (Message::parse(&old), Message::parse(&longer)) else {
            panic!("{name} with appended fields does not parse")
        };
        assert_eq!(decoded(&a), decoded(&b), "{name}: appended bytes ignored");
    }
    let Ok(Message::Hello(hello)) =
        Message::parse(&with_appended(golden("v1.0", "hello"), &[0, 9]))
    else {
        panic!("not a hello")
    };
    assert_eq!(hello.protocol_minor, 0, "a minor needs its whole field");

    let unknown = [b'F', b'O', VERSION, 200, 0, 0, 0, 12, 1, 2, 3, 4];
    assert!(matches!(
        Message::parse(&unknown),
        Ok(Message::Unknown(200))
    ));
}

/// Control: what a reader must refuse still is refused, so the tests above can fail.
#[test]
fn another_major_and_a_broken_section_are_refused() {
    let mut other_major = golden("v1.0", "hello");
    other_major[2] = VERSION + 1;
    assert!(Message::parse(&other_major).is_err());
    let (v4, _) = records();
    let mut short = future_batch(&[v4]);
    // The upsert section claims a record shorter than 1.0's.
    short[HEADER_LEN + 20 + 2..HEADER_LEN + 20 + 4].copy_from_slice(&100u16.to_be_bytes());
    assert!(Message::parse(&short).is_err());
    let truncated = &golden("v1.0", "ack")[..HEADER_LEN + 20];
    assert!(Message::parse(truncated).is_err());
}

/// The config-sync messages of the 1.4 files, one of each sub-kind, by file name.
fn config_sync_1_4() -> [(&'static str, ConfigSyncMessage); 5] {
    let table = UnitId::new(UnitKind::Nftables, "inet filter").unwrap();
    let dir = UnitId::new(UnitKind::Files, "/etc/failoverd/sync").unwrap();
    let nat = UnitId::new(UnitKind::Nftables, "ip nat").unwrap();
    let hash = UnitHash(std::array::from_fn(|i| i as u8));
    let transfer = 0x0102_0304_0506_0708;
    [
        (
            "config_offer",
            ConfigSyncMessage::Offer(ConfigOffer {
                versions: ConfigVersions {
                    failoverd: "0.1.0".into(),
                    schema: 1,
                    backends: vec![
                        (UnitKind::Nftables, "nftables v1.0.9".into()),
                        (UnitKind::Files, "files 1".into()),
                    ],
                },
                source: true,
                auto: true,
                revision: 42,
                units: vec![
                    (table.clone(), UnitState::Present(hash)),
                    (dir.clone(), UnitState::Absent),
                    (nat.clone(), UnitState::Unreadable),
                ],
            }),
        ),
        (
            "config_transfer",
            ConfigSyncMessage::Transfer(TransferHeader {
                transfer,
                purpose: TransferPurpose::Readback,
                request: 7,
                units: vec![
                    TransferUnit {
                        id: table.clone(),
                        state: UnitState::Present(hash),
                        len: 300,
                    },
                    TransferUnit {
                        id: dir.clone(),
                        state: UnitState::Absent,
                        len: 0,
                    },
                ],
            }),
        ),
        (
            "config_chunk",
            ConfigSyncMessage::Chunk(Chunk {
                transfer,
                unit: 1,
                offset: 256,
                data: b"table inet filter {\n}\n".to_vec(),
            }),
        ),
        (
            "config_result",
            ConfigSyncMessage::Result(SyncResult {
                transfer,
                outcome: SyncOutcome::Failed,
                failed_unit: Some(0),
                reason: "Error: Could not process rule: No such file or directory".into(),
                readback: vec![(table.clone(), UnitState::Absent)],
            }),
        ),
        (
            "config_readback_request",
            ConfigSyncMessage::ReadbackRequest {
                request: 7,
                units: vec![table, dir],
            },
        ),
    ]
}

/// The config-sync message of a frame.
fn config_sync(frame: &[u8]) -> ConfigSyncMessage {
    match Message::parse(frame) {
        Ok(Message::ConfigSync(view)) => view.message(),
        other => panic!("not config sync: {other:?}"),
    }
}

#[test]
fn v1_4_config_sync_frames_decode_field_by_field() {
    let [offer, transfer, chunk, result, request] = config_sync_1_4().map(|(name, want)| {
        let got = config_sync(&golden("v1.4", name));
        assert_eq!(got, want, "{name}");
        got
    });
    let ConfigSyncMessage::Offer(offer) = offer else {
        panic!("not an offer")
    };
    assert_eq!(offer.versions.failoverd, "0.1.0");
    assert_eq!(offer.versions.schema, 1);
    assert_eq!(offer.versions.backends[0].1, "nftables v1.0.9");
    assert!(offer.source && offer.auto);
    assert_eq!(offer.revision, 42);
    assert_eq!(offer.units[0].0.name, "inet filter");
    assert!(matches!(offer.units[0].1, UnitState::Present(UnitHash(h)) if h[31] == 31));
    assert_eq!(offer.units[1].0.kind, UnitKind::Files);
    assert_eq!(offer.units[2].1, UnitState::Unreadable);
    let ConfigSyncMessage::Transfer(transfer) = transfer else {
        panic!("not a transfer")
    };
    assert_eq!(transfer.transfer, 0x0102_0304_0506_0708);
    assert_eq!(transfer.purpose, TransferPurpose::Readback);
    assert_eq!(transfer.request, 7);
    assert_eq!((transfer.units[0].len, transfer.units[1].len), (300, 0));
    let ConfigSyncMessage::Chunk(chunk) = chunk else {
        panic!("not a chunk")
    };
    assert_eq!((chunk.unit, chunk.offset), (1, 256));
    assert_eq!(chunk.data, b"table inet filter {\n}\n");
    let ConfigSyncMessage::Result(result) = result else {
        panic!("not a result")
    };
    assert_eq!(result.outcome, SyncOutcome::Failed);
    assert_eq!(result.failed_unit, Some(0));
    assert!(result.reason.starts_with("Error: Could not process rule"));
    let ConfigSyncMessage::ReadbackRequest { request, units } = request else {
        panic!("not a readback request")
    };
    assert_eq!((request, units.len()), (7, 2));
}

/// This version emits the 1.4 frames byte for byte, and reads them with a later minor's
/// appended bytes skipped.
#[test]
fn this_version_emits_the_1_4_config_sync_frames_and_skips_appended_bytes() {
    assert!(ProtocolVersion::CURRENT >= ProtocolVersion::CONFIG_SYNC);
    for (name, message) in config_sync_1_4() {
        let old = golden("v1.4", name);
        let mut new = Vec::new();
        message.emit(&mut new);
        assert_eq!(new, old, "{name}");
        let longer = with_appended(old, &[0xa5; 12]);
        assert_eq!(
            config_sync(&longer),
            message,
            "{name}: appended bytes ignored"
        );
    }
    let chunk = golden("v1.4", "config_chunk");
    let Ok(Message::ConfigSync(view)) = Message::parse(&chunk) else {
        panic!("not config sync")
    };
    assert_eq!(view.kind(), ConfigSyncKind::Chunk);
}
