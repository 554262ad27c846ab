//! Tests of the `samples` column list.
use super::*;
use crate::store::schema::{assert_values_agree, column_names, describe};

/// A row with every column filled, in a socket syscall.
fn full_row() -> SampleRow<'static> {
    SampleRow {
        ts_us: 1_795_352_645_000_123,
        weight_us: 50_000,
        tid: 4711,
        tgid: 4700,
        comm: "wal-writer",
        exe: "/usr/lib/postgresql/15/bin/postgres",
        user: "postgres",
        state: ThreadState::Disk,
        state_since_us: Some(1_234),
        cpu: 1,
        syscall: Some("recvfrom"),
        syscall_nr: Some(45),
        syscall_us: Some(987),
        syscall_args: Some([3, u64::MAX, 8192, 0, 1 << 47, 7]),
        syscall_seq: Some(99),
        io_dev: Some("254:1"),
        io_op: Some("WRITE"),
        io_bytes: Some(4096),
        io_us: Some(12),
        io_seq: Some(5),
        cgroup: "/system.slice/postgresql.service",
        kfunc: Some("io_schedule"),
        kstack_id: Some(-17),
        ustack_id: Some(18),
        wait_class: WaitClass::Net,
        since_lower_bound: true,
        syscall_us_lower_bound: Some(false),
        host: "db1",
        container: ContainerIdentity {
            container_id: "0123abcd",
            container_runtime: "podman",
            container_name: "pg",
            pod_name: "pod",
            pod_namespace: "ns",
            pod_uid: "uid",
        },
        wait: WaitColumns {
            waker_tid: Some(4712),
            waker_comm: "walwriter",
            blocker_tid: Some(4713),
            blocker_kind: Some("mutex"),
        },
        target: FileTarget {
            file: Some("socket:[1234]"),
            file_pos: Some(-1),
            socket: Some(SocketRow {
                proto: "tcp",
                local: "127.0.0.1:5432",
                remote: "127.0.0.1:40000",
                state: "ESTABLISHED",
                srtt_us: Some(40_000),
                cwnd: Some(10),
                retrans: Some(3),
                peer_pid: Some(4800),
                peer_comm: "psql",
            }),
        },
        proc_title: "postgres: walwriter",
    }
}

#[test]
fn straight_line_values_are_the_column_list() {
    let full = full_row();
    assert_values_agree::<Samples>(&full);
    // And with every optional part empty.
    let empty = SampleRow {
        exe: "",
        state: ThreadState::OnCpu,
        state_since_us: None,
        syscall: None,
        syscall_nr: None,
        syscall_us: None,
        syscall_args: None,
        syscall_seq: None,
        io_dev: None,
        io_op: None,
        io_bytes: None,
        io_us: None,
        io_seq: None,
        cgroup: "",
        kfunc: None,
        kstack_id: None,
        ustack_id: None,
        syscall_us_lower_bound: None,
        container: ContainerIdentity::default(),
        wait: WaitColumns::default(),
        target: FileTarget::default(),
        proc_title: "",
        ..full
    };
    assert_values_agree::<Samples>(&empty);
}

#[test]
fn issue_columns_are_present_in_order() {
    let names = column_names::<Samples>();
    let required = [
        "ts",
        "tid",
        "tgid",
        "comm",
        "exe",
        "user",
        "state",
        "state_since_us",
        "cpu",
        "syscall",
        "syscall_nr",
        "syscall_us",
        "syscall_arg0",
        "syscall_arg1",
        "syscall_arg2",
        "io_dev",
        "io_op",
        "io_bytes",
        "io_us",
        "cgroup",
        "weight_us",
        "wait_class",
    ];
    for name in required {
        assert!(names.contains(&name), "missing column {name}");
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate column names");
}

#[test]
fn every_column_is_described() {
    for c in Samples::columns() {
        assert!(!c.description.is_empty(), "{} has no description", c.name);
        assert!(
            !c.description.contains('|'),
            "{} breaks the markdown table",
            c.name
        );
    }
    let md = describe::<Samples>(true);
    assert!(md.contains("| `ts` | TIMESTAMP |"));
}
