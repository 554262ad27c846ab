//! The `samples` table: one row per sampled thread per tick.
//!
//! A row is a plain struct of the values its columns read ([`SampleRow`]);
//! the writer fills it from a sample and the names it resolved, so this
//! table knows nothing of how a sample was taken.

use super::{opt_int, opt_text, Column, ColumnType, Table, Value};
use crate::store::thread_state::ThreadState;
use crate::store::wait_class::WaitClass;

/// The `samples` table.
pub struct Samples;

/// One row of `samples`: every value its columns read.
#[derive(Debug, Clone, Copy)]
pub struct SampleRow<'a> {
    /// Time of the tick, microseconds since the epoch (UTC).
    pub ts_us: i64,
    pub weight_us: u64,
    pub tid: u32,
    pub tgid: u32,
    pub comm: &'a str,
    /// Empty when unknown.
    pub exe: &'a str,
    pub user: &'a str,
    pub state: ThreadState,
    pub state_since_us: Option<u64>,
    pub cpu: u32,
    /// Name of the syscall the thread is in, when it has one.
    pub syscall: Option<&'static str>,
    /// Number of that syscall; None when not in a syscall.
    pub syscall_nr: Option<i32>,
    pub syscall_us: Option<u64>,
    /// The six arguments, when known.
    pub syscall_args: Option<[u64; 6]>,
    pub syscall_seq: Option<u64>,
    /// `major:minor` of the request in flight; None without one.
    pub io_dev: Option<&'a str>,
    pub io_op: Option<&'static str>,
    pub io_bytes: Option<u32>,
    pub io_us: Option<u64>,
    pub io_seq: Option<u32>,
    /// Empty when unknown.
    pub cgroup: &'a str,
    pub kfunc: Option<&'a str>,
    pub kstack_id: Option<i64>,
    pub ustack_id: Option<i64>,
    /// What the thread's time goes to (`store::wait_class`).
    pub wait_class: WaitClass,
    /// `state_since_us` or `syscall_us` counts from before the agent
    /// started (a lower bound).
    pub since_lower_bound: bool,
    /// `syscall_us` is a lower bound (None without `syscall_us`).
    pub syscall_us_lower_bound: Option<bool>,
    /// Host name of the agent (issue 17).
    pub host: &'a str,
    /// Container and pod of the thread; empty when none or unknown.
    pub container: ContainerIdentity<'a>,
    /// Who woke it and who holds what it waits for (issue 13).
    pub wait: WaitColumns<'a>,
    /// What its syscall's fd names (issue 13); empty when none or unknown.
    pub target: FileTarget<'a>,
    /// Title of its process: argv[0] as the process left it (issue 13).
    pub proc_title: &'a str,
}

/// The waker and blocker of a row's thread (None / empty when unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitColumns<'a> {
    pub waker_tid: Option<u32>,
    pub waker_comm: &'a str,
    pub blocker_tid: Option<u32>,
    pub blocker_kind: Option<&'static str>,
}

/// What a sample's syscall works on: the file its fd names and, for a
/// socket, the connection (issue 13). Empty when not in a fd syscall or
/// not known for sure.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileTarget<'a> {
    pub file: Option<&'a str>,
    /// Position of that file (paths only).
    pub file_pos: Option<i64>,
    /// For a TCP, UDP or unix socket of the agent's network namespace:
    /// the connection as sock_diag showed it at most a second before.
    pub socket: Option<SocketRow<'a>>,
}

/// A socket's connection (`sock_*`, `tcp_*` columns).
#[derive(Debug, Clone, Copy)]
pub struct SocketRow<'a> {
    pub proto: &'static str,
    pub local: &'a str,
    pub remote: &'a str,
    pub state: &'static str,
    pub srtt_us: Option<u32>,
    pub cwnd: Option<u32>,
    pub retrans: Option<u32>,
    /// Unix sockets: the one process holding the socket at the other end.
    pub peer_pid: Option<u32>,
    pub peer_comm: &'a str,
}

/// Who a row's thread belongs to (empty strings when not in a container,
/// or not known).
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerIdentity<'a> {
    pub container_id: &'a str,
    pub container_runtime: &'a str,
    pub container_name: &'a str,
    pub pod_name: &'a str,
    pub pod_namespace: &'a str,
    pub pod_uid: &'a str,
}

fn syscall_arg(row: &SampleRow<'_>, index: usize) -> Value<'static> {
    // Registers are shown as signed: fds and small values read naturally,
    // AT_FDCWD is -100, user-space pointers stay positive.
    match row.syscall_args {
        Some(args) => Value::Int(args[index] as i64),
        None => Value::Null,
    }
}

impl Table for Samples {
    type Row<'a> = SampleRow<'a>;
    const NAME: &'static str = "samples";
    const DESCRIPTION: &'static str = "One row per sampled thread per tick.";
    fn columns() -> &'static [Column<Self>] {
        SAMPLE_COLUMNS
    }
    fn for_each_value<'r, 'a>(row: &'r Self::Row<'a>, out: impl FnMut(Value<'r>)) {
        Self::each_value(row, out)
    }
}

columns!(
    Samples,
    SAMPLE_COLUMNS = [
        Column {
            name: "ts",
            ty: ColumnType::Timestamp,
            description: "Time of the tick (UTC, microseconds); the same for every row of one tick",
            value: |r| Value::Timestamp(r.ts_us),
        },
        Column { name: "tid", ty: ColumnType::Int64, description: "Thread id", value: |r| Value::Int(r.tid.into()) },
        Column {
            name: "tgid",
            ty: ColumnType::Int64,
            description: "Process id (thread group id)",
            value: |r| Value::Int(r.tgid.into()),
        },
        Column {
            name: "comm",
            ty: ColumnType::Text,
            description: "Thread name (task comm, at most 15 bytes)",
            value: |r| Value::Text(r.comm),
        },
        Column {
            name: "exe",
            ty: ColumnType::Text,
            description: "Path of the process's executable; empty for kernel threads and processes gone before lookup",
            value: |r| opt_text(r.exe),
        },
        Column {
            name: "user",
            ty: ColumnType::Text,
            description: "Effective user name (the uid when it has no name)",
            value: |r| Value::Text(r.user),
        },
        Column {
            name: "state",
            ty: ColumnType::Text,
            description: "ON_CPU, RUNQUEUE, SLEEP, DISK (uninterruptible with its own block request in flight), UNINTERRUPTIBLE (without one), IDLE, STOPPED, TRACED, ZOMBIE, DEAD, PARKED, NEW, FROZEN, RTLOCK_WAIT",
            value: |r| Value::Text(r.state.name()),
        },
        Column {
            name: "state_since_us",
            ty: ColumnType::Int64,
            description: "Time in the current state: since switch-in (ON_CPU), wakeup or preemption (RUNQUEUE), switch-out (others). For a wait that began before the agent started, a lower bound (since_lower_bound); empty when not known",
            value: |r| opt_int(r.state_since_us),
        },
        Column {
            name: "cpu",
            ty: ColumnType::Int64,
            description: "CPU the thread runs on, or last ran on",
            value: |r| Value::Int(r.cpu.into()),
        },
        Column {
            name: "syscall",
            ty: ColumnType::Text,
            description: "Name of the syscall the thread is in; empty when not in a syscall",
            value: |r| r.syscall.map_or(Value::Null, Value::Text),
        },
        Column {
            name: "syscall_nr",
            ty: ColumnType::Int64,
            description: "Number of that syscall",
            value: |r| r.syscall_nr.map_or(Value::Null, |nr| Value::Int(nr.into())),
        },
        Column {
            name: "syscall_us",
            ty: ColumnType::Int64,
            description: "Time in that syscall so far: exact with --syscalls exact; by default a lower bound counted from the switch-out or on-CPU sample that found the thread in it (syscall_us_lower_bound). For a syscall entered before the agent started, a lower bound (since_lower_bound)",
            value: |r| opt_int(r.syscall_us),
        },
        Column {
            name: "syscall_arg0",
            ty: ColumnType::Int64,
            description: "First syscall argument (signed 64-bit register value)",
            value: |r| syscall_arg(r, 0),
        },
        Column {
            name: "syscall_arg1",
            ty: ColumnType::Int64,
            description: "Second syscall argument",
            value: |r| syscall_arg(r, 1),
        },
        Column {
            name: "syscall_arg2",
            ty: ColumnType::Int64,
            description: "Third syscall argument",
            value: |r| syscall_arg(r, 2),
        },
        Column {
            name: "io_dev",
            ty: ColumnType::Text,
            description: "major:minor of the block device of the thread's request in flight",
            value: |r| r.io_dev.map_or(Value::Null, Value::Text),
        },
        Column {
            name: "io_op",
            ty: ColumnType::Text,
            description: "Operation of that request: READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES, ...",
            value: |r| r.io_op.map_or(Value::Null, Value::Text),
        },
        Column {
            name: "io_bytes",
            ty: ColumnType::Int64,
            description: "Size of that request in bytes",
            value: |r| r.io_bytes.map_or(Value::Null, |bytes| Value::Int(bytes.into())),
        },
        Column {
            name: "io_us",
            ty: ColumnType::Int64,
            description: "Age of that request (since it was queued)",
            value: |r| opt_int(r.io_us),
        },
        Column {
            name: "cgroup",
            ty: ColumnType::Text,
            description: "cgroup v2 path of the thread",
            value: |r| opt_text(r.cgroup),
        },
        Column {
            name: "weight_us",
            ty: ColumnType::Int64,
            description: "Thread time this row stands for: 1,000,000 / frequency",
            value: |r| Value::Int(r.weight_us as i64),
        },
        Column {
            name: "kfunc",
            ty: ColumnType::Text,
            description: "Innermost kernel function of the kernel stack outside the scheduler: where the thread waits (what wchan showed)",
            value: |r| r.kfunc.map_or(Value::Null, Value::Text),
        },
        Column {
            name: "kstack_id",
            ty: ColumnType::Int64,
            description: "Kernel stack of the thread (stacks.stack_id); empty when not captured",
            value: |r| r.kstack_id.map_or(Value::Null, Value::Int),
        },
        Column {
            name: "ustack_id",
            ty: ColumnType::Int64,
            description: "User stack of the thread (stacks.stack_id); empty when not captured and for kernel threads",
            value: |r| r.ustack_id.map_or(Value::Null, Value::Int),
        },
        Column {
            name: "syscall_seq",
            ty: ColumnType::Int64,
            description: "The thread's syscall number of that syscall (1, 2, ... since tracking began); empty when its entry was not seen. With --track syscalls, syscalls.seq",
            value: |r| opt_int(r.syscall_seq),
        },
        Column {
            name: "io_seq",
            ty: ColumnType::Int64,
            description: "The thread's request number of the request in flight. With --track io, iorq.seq",
            value: |r| r.io_seq.map_or(Value::Null, |seq| Value::Int(seq.into())),
        },
        Column {
            name: "wait_class",
            ty: ColumnType::Text,
            description: "What the thread's time goes to: CPU, RUNQUEUE, IO, LOCK, NET, IPC, TIMER, IDLE, PAGING, OTHER (rules: README, Wait classes)",
            value: |r| Value::Text(r.wait_class.name()),
        },
        Column {
            name: "since_lower_bound",
            ty: ColumnType::Bool,
            description: "true when state_since_us or syscall_us is a lower bound because the thread began that wait or syscall before the agent started: its start is taken from the scheduler's last-ran timestamp (see also syscall_us_lower_bound)",
            value: |r| Value::Bool(r.since_lower_bound),
        },
        // Identity (issue 17).
        Column {
            name: "host",
            ty: ColumnType::Text,
            description: "Host name of the agent as in the file names: the kernel's node name at start, characters other than letters, digits, . _ - replaced by _ (a rename shows after a restart)",
            value: |r| Value::Text(r.host),
        },
        Column {
            name: "container_id",
            ty: ColumnType::Text,
            description: "Id of the thread's container (64 hex digits; the machine name for systemd-nspawn), from its cgroup path in cgroup v2 or v1; empty outside containers and when not recognized",
            value: |r| opt_text(r.container.container_id),
        },
        Column {
            name: "container_runtime",
            ty: ColumnType::Text,
            description: "docker, containerd, cri-o, podman, systemd-nspawn or runc; empty when neither the cgroup path nor the runtime's files say",
            value: |r| opt_text(r.container.container_runtime),
        },
        Column {
            name: "container_name",
            ty: ColumnType::Text,
            description: "Name of the container: its name in the pod for Kubernetes, docker's name, the nspawn machine name; empty when unknown",
            value: |r| opt_text(r.container.container_name),
        },
        Column {
            name: "pod_name",
            ty: ColumnType::Text,
            description: "Kubernetes pod of the container, from the runtime's annotations on this node; empty when unknown",
            value: |r| opt_text(r.container.pod_name),
        },
        Column {
            name: "pod_namespace",
            ty: ColumnType::Text,
            description: "Kubernetes namespace of that pod",
            value: |r| opt_text(r.container.pod_namespace),
        },
        Column {
            name: "pod_uid",
            ty: ColumnType::Text,
            description: "Kubernetes UID of that pod, from the cgroup path or the annotations",
            value: |r| opt_text(r.container.pod_uid),
        },
        // Waker and blocker (issue 13).
        Column {
            name: "waker_tid",
            ty: ColumnType::Int64,
            description: "On ON_CPU and RUNQUEUE rows: the thread whose wakeup this thread runs (or waits for a CPU) after (sched_wakeup in the waker's context, or csd_queue_cpu when the wakeup is handed over to the wakee's CPU); empty when woken from an interrupt (timer, device, softirq), by a wakeup handed over by IPI on Linux < 6.6, or not seen. How long it then waited for a CPU: state_since_us of its RUNQUEUE rows",
            value: |r| r.wait.waker_tid.map_or(Value::Null, |tid| Value::Int(tid.into())),
        },
        Column {
            name: "waker_comm",
            ty: ColumnType::Text,
            description: "Thread name of waker_tid at the wakeup",
            value: |r| opt_text(r.wait.waker_comm),
        },
        Column {
            name: "blocker_tid",
            ty: ColumnType::Int64,
            description: "The thread holding the lock this one waits for: a pthread mutex (glibc's __owner, or a PI futex word; checked to be a live thread of the same process) or a kernel mutex or write-held rw-semaphore (its owner when this thread last went to sleep). Empty when not known, and for condition variables, semaphores and reader-held rw-semaphores, which have no owner (README, How blockers are found)",
            value: |r| r.wait.blocker_tid.map_or(Value::Null, |tid| Value::Int(tid.into())),
        },
        Column {
            name: "blocker_kind",
            ty: ColumnType::Text,
            description: "The lock it waits for, when recognized: pthread_mutex, pi_futex, mutex (kernel), rwsem_write, rwsem_read (kernel rw-semaphore taken for writing, reading)",
            value: |r| r.wait.blocker_kind.map_or(Value::Null, Value::Text),
        },
        // What the thread waits on (issue 13).
        Column {
            name: "file",
            ty: ColumnType::Text,
            description: "What the fd of a fd syscall (read/write families, fsync, fdatasync, ioctl, recv/send families, accept, connect, ...) names: a path, socket:[inode], pipe:[inode], anon_inode:[eventfd], ... as /proc/PID/fd shows it; empty when not in such a syscall, when the thread has not switched out in it (on a CPU), or when the fd no longer names the same file at write time",
            value: |r| r.target.file.map_or(Value::Null, Value::Text),
        },
        Column {
            name: "file_pos",
            ty: ColumnType::Int64,
            description: "Position (f_pos) of that file when the thread switched out in the syscall; paths only (pread/pwrite take their offset from syscall arguments instead)",
            value: |r| r.target.file_pos.map_or(Value::Null, Value::Int),
        },
        Column {
            name: "sock_proto",
            ty: ColumnType::Text,
            description: "For a file that is a socket: tcp, tcp6, udp, udp6 or unix (from sock_diag, at most a second old; empty for sockets of another network namespace than the agent's)",
            value: |r| r.target.socket.map_or(Value::Null, |s| Value::Text(s.proto)),
        },
        Column {
            name: "sock_local",
            ty: ColumnType::Text,
            description: "Local address:port of that socket ([v6]:port for IPv6); for a unix socket its bound path (@name for an abstract one), empty when unbound (an accepted connection shows its listener's path)",
            value: |r| r.target.socket.map_or(Value::Null, |s| Value::Text(s.local)),
        },
        Column {
            name: "sock_remote",
            ty: ColumnType::Text,
            description: "Remote address:port of that socket (0.0.0.0:0 when not connected); for a unix socket the bound path of its peer, empty when the peer is unbound",
            value: |r| r.target.socket.map_or(Value::Null, |s| Value::Text(s.remote)),
        },
        Column {
            name: "sock_state",
            ty: ColumnType::Text,
            description: "TCP state of that socket (ESTABLISHED, LISTEN, CLOSE_WAIT, ...); CONNECTED or UNCONNECTED for UDP; ESTABLISHED, LISTEN or UNCONNECTED for unix",
            value: |r| r.target.socket.map_or(Value::Null, |s| Value::Text(s.state)),
        },
        Column {
            name: "tcp_srtt_us",
            ty: ColumnType::Int64,
            description: "TCP only: smoothed round-trip time, microseconds (tcp_info.tcpi_rtt)",
            value: |r| r.target.socket.and_then(|s| s.srtt_us).map_or(Value::Null, |v| Value::Int(v.into())),
        },
        Column {
            name: "tcp_cwnd",
            ty: ColumnType::Int64,
            description: "TCP only: congestion window, segments",
            value: |r| r.target.socket.and_then(|s| s.cwnd).map_or(Value::Null, |v| Value::Int(v.into())),
        },
        Column {
            name: "tcp_retrans",
            ty: ColumnType::Int64,
            description: "TCP only: retransmitted segments over the connection's life",
            value: |r| r.target.socket.and_then(|s| s.retrans).map_or(Value::Null, |v| Value::Int(v.into())),
        },
        // Passive syscalls (issue 14).
        Column {
            name: "syscall_arg3",
            ty: ColumnType::Int64,
            description: "Fourth syscall argument (signed 64-bit register value)",
            value: |r| syscall_arg(r, 3),
        },
        Column {
            name: "syscall_arg4",
            ty: ColumnType::Int64,
            description: "Fifth syscall argument",
            value: |r| syscall_arg(r, 4),
        },
        Column {
            name: "syscall_arg5",
            ty: ColumnType::Int64,
            description: "Sixth syscall argument",
            value: |r| syscall_arg(r, 5),
        },
        Column {
            name: "syscall_us_lower_bound",
            ty: ColumnType::Bool,
            description: "true when syscall_us is a lower bound: the syscall's entry was not seen (the default, --syscalls passive, counts from the last switch-out or on-CPU sample that found the thread in it; or it began before the agent started); false when exact; empty without syscall_us",
            value: |r| r.syscall_us_lower_bound.map_or(Value::Null, Value::Bool),
        },
        // Which process is which (issue 13).
        Column {
            name: "proc_title",
            ty: ColumnType::Text,
            description: "Title of the thread's process: argv[0] as the process left it, which shows a title the process set for itself (postgres: walwriter, nginx: worker process) and never the arguments of a plain command line (mysql -pPASSWORD shows mysql); at most 128 bytes, control characters as \\xNN; read at most a second before; empty for kernel threads, zombies and processes not read yet (README, Process titles)",
            value: |r| opt_text(r.proc_title),
        },
        // Unix socket peers (issue 13).
        Column {
            name: "peer_pid",
            ty: ColumnType::Int64,
            description: "For a file that is a connected unix socket: the process holding the socket at its other end (sock_diag's peer inode, found in that process's /proc/PID/fd; checked at most a second before). Empty when unknown: the peer is gone, held by several processes (shared across fork or passed and still open), or in another network namespace (README, Unix socket peers)",
            value: |r| r.target.socket.and_then(|s| s.peer_pid).map_or(Value::Null, |v| Value::Int(v.into())),
        },
        Column {
            name: "peer_comm",
            ty: ColumnType::Text,
            description: "Name (comm of its main thread) of the peer_pid process when it was found",
            value: |r| r.target.socket.map_or(Value::Null, |s| opt_text(s.peer_comm)),
        },
    ]
);

#[cfg(test)]
mod tests;
