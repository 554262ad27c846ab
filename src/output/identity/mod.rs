//! Who a thread belongs to: its container (id, runtime, name) and, for
//! Kubernetes, its pod (name, namespace, UID) — the identity columns of
//! `samples`.
//!
//! Runs on the writer thread, inside the enricher's prepare phase, never
//! on the sampling tick. A container is recognized from its cgroup path
//! (`cgroup_path`, pure parsing) and named from its runtime's own files on
//! this node (`runtime_state`); the result is cached per cgroup path.
//!
//! The design decision: identity comes from whichever hierarchy the
//! runtime used. The cgroup v2 path (the `cgroup` column) is tried first;
//! when it names no container and cgroup v1 hierarchies are mounted
//! (v1-only and hybrid hosts, where a process may sit at `/` in cgroup2),
//! the process's `/proc/<pid>/cgroup` is read once per process image and
//! cgroup, and the first v1 path that names a container is used. So a
//! process that moves between v1 cgroups without changing its cgroup v2
//! id or executing keeps its first identity.
//!
//! Empty, never wrong: a path that only might be a container gives
//! nothing, a runtime whose files are not found leaves the names empty
//! (looked up again at most every [`RETRY_INTERVAL`], since a runtime may
//! write its files after the container's first process runs).

pub mod cgroup_path;
pub mod runtime_state;

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::store::schema::ContainerIdentity;
use runtime_state::StateDirs;

/// Entries per cache before it is cleared.
const CACHE_LIMIT: usize = 65_536;
/// Minimum time between two lookups of a container whose runtime's files
/// were not found.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// The identity of one container, as its rows show it (empty = unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub container_id: Box<str>,
    pub container_runtime: Box<str>,
    pub container_name: Box<str>,
    pub pod_name: Box<str>,
    pub pod_namespace: Box<str>,
    pub pod_uid: Box<str>,
}

impl Identity {
    /// The row's view.
    pub fn row(&self) -> ContainerIdentity<'_> {
        ContainerIdentity {
            container_id: &self.container_id,
            container_runtime: &self.container_runtime,
            container_name: &self.container_name,
            pod_name: &self.pod_name,
            pod_namespace: &self.pod_namespace,
            pod_uid: &self.pod_uid,
        }
    }
}

/// The identity of the container at cgroup `path`, with names from
/// `state`; None for a path that names no container.
pub fn resolve(path: &str, state: &StateDirs) -> Option<(Identity, bool)> {
    let container = cgroup_path::parse(path)?;
    let found = state.lookup(&container.id);
    let complete = found.is_some() || container.runtime == Some("systemd-nspawn");
    let found = found.unwrap_or_default();
    let runtime = container.runtime.or(found.runtime).unwrap_or("");
    let name = if container.runtime == Some("systemd-nspawn") {
        Some(container.id.as_str())
    } else {
        found.container_name()
    };
    let pod_uid = container.pod_uid.as_deref().or(found.pod_uid());
    let identity = Identity {
        container_id: container.id.as_str().into(),
        container_runtime: runtime.into(),
        container_name: name.unwrap_or("").into(),
        pod_name: found.pod_name().unwrap_or("").into(),
        pod_namespace: found.pod_namespace().unwrap_or("").into(),
        pod_uid: pod_uid.unwrap_or("").into(),
    };
    Some((identity, complete))
}

struct Entry {
    identity: Option<Identity>,
    /// When to look the runtime's files up again (None: never).
    retry_at: Option<Instant>,
}

impl Entry {
    /// Whether to look the runtime's files up again.
    fn due(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() >= at)
    }
}

/// Identities cached per cgroup path, and the v1 path of each process
/// whose cgroup v2 path names no container.
pub struct Identities {
    state: StateDirs,
    /// cgroup v1 hierarchies are mounted: read /proc/<pid>/cgroup.
    v1: bool,
    /// How long a container whose runtime's files were not found waits
    /// before they are looked up again.
    retry_interval: Duration,
    by_path: FxHashMap<Box<str>, Entry>,
    /// (tgid, exe_id, cgroup v2 id) → the v1 path naming its container.
    by_process: FxHashMap<(u32, u64, u64), Option<Box<str>>>,
    /// The process `prepare` saw last: the threads of a process usually
    /// come one after another, and need it once.
    last: Option<(u32, u64, u64)>,
}

impl Identities {
    pub fn new(state: StateDirs, v1: bool, retry_interval: Duration) -> Identities {
        Identities {
            state,
            v1,
            retry_interval,
            by_path: FxHashMap::default(),
            by_process: FxHashMap::default(),
            last: None,
        }
    }

    /// This node's runtimes and hierarchies.
    pub fn node() -> Identities {
        Identities::new(StateDirs::node(), cgroup_v1_mounted(), RETRY_INTERVAL)
    }

    /// A new tick's samples follow (lookups that are due are done again).
    pub fn new_tick(&mut self) {
        self.last = None;
    }

    /// Resolve what a sample of process `tgid` (image `exe_id`, cgroup v2
    /// `cgroup_id` at `v2_path`) needs; may read files.
    pub fn prepare(
        &mut self,
        tgid: u32,
        exe_id: u64,
        cgroup_id: u64,
        v2_path: &str,
        kthread: bool,
    ) {
        let key = (tgid, exe_id, cgroup_id);
        if self.last.replace(key) == Some(key) {
            return;
        }
        if self.by_path.len() >= CACHE_LIMIT || self.by_process.len() >= CACHE_LIMIT {
            self.by_path.clear();
            self.by_process.clear();
        }
        if self.ensure_path(v2_path) || !self.v1 || kthread {
            return;
        }
        let path = self
            .by_process
            .entry(key)
            .or_insert_with(|| v1_container_path(tgid));
        let Some(path) = path.as_deref() else {
            return;
        };
        // Copy the path (to look it up again) only when that is due.
        if self.by_path.get(path).is_some_and(|entry| !entry.due()) {
            return;
        }
        let path: Box<str> = path.into();
        self.ensure_path(&path);
    }

    /// Make sure `path` is cached (looked up again if due); whether it
    /// names a container.
    fn ensure_path(&mut self, path: &str) -> bool {
        let due = self.by_path.get(path).is_none_or(Entry::due);
        if due {
            let resolved = resolve(path, &self.state);
            let retry_at = match &resolved {
                Some((_, false)) => Some(Instant::now() + self.retry_interval),
                _ => None,
            };
            let entry = Entry {
                identity: resolved.map(|(identity, _)| identity),
                retry_at,
            };
            self.by_path.insert(path.into(), entry);
        }
        self.by_path
            .get(path)
            .is_some_and(|entry| entry.identity.is_some())
    }

    /// The identity resolved by `prepare` for the same arguments.
    pub fn get(&self, tgid: u32, exe_id: u64, cgroup_id: u64, v2_path: &str) -> Option<&Identity> {
        if let Some(identity) = self.identity_at(v2_path) {
            return Some(identity);
        }
        let path = self
            .by_process
            .get(&(tgid, exe_id, cgroup_id))?
            .as_deref()?;
        self.identity_at(path)
    }

    fn identity_at(&self, path: &str) -> Option<&Identity> {
        self.by_path.get(path)?.identity.as_ref()
    }
}

/// The first cgroup path of process `tgid` (v1 hierarchies, then v2) that
/// names a container.
fn v1_container_path(tgid: u32) -> Option<Box<str>> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    container_path_in(&text).map(Into::into)
}

/// In the text of `/proc/<pid>/cgroup` (`id:controllers:path` lines), the
/// first path that names a container.
pub fn container_path_in(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find(|path| cgroup_path::parse(path).is_some())
}

/// Whether a cgroup v1 hierarchy is mounted (v1-only or hybrid host).
fn cgroup_v1_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| {
        text.lines().any(|line| {
            line.split_once(" - ")
                .and_then(|(_, right)| right.split_whitespace().next())
                == Some("cgroup")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const ID: &str = "cafe0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
    const UID: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn resolves_path_and_runtime_state() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(format!("run/runc/{ID}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("state.json"),
            r#"{"config":{"labels":["io.kubernetes.pod.name=web-0",
               "io.kubernetes.pod.namespace=default","io.kubernetes.container.name=app"]}}"#,
        )
        .unwrap();
        let state = StateDirs::under(root.path());
        let (identity, complete) =
            resolve(&format!("/kubepods/burstable/pod{UID}/{ID}"), &state).unwrap();
        assert!(complete);
        assert_eq!(&*identity.container_id, ID);
        assert_eq!(&*identity.container_runtime, "runc");
        assert_eq!(&*identity.container_name, "app");
        assert_eq!(&*identity.pod_name, "web-0");
        assert_eq!(&*identity.pod_namespace, "default");
        assert_eq!(&*identity.pod_uid, UID);
        // The path's runtime wins over the location of the files.
        let (identity, _) = resolve(&format!("/system.slice/docker-{ID}.scope"), &state).unwrap();
        assert_eq!(&*identity.container_runtime, "docker");
        // Without files: id and runtime only, to be looked up again.
        let empty = StateDirs::under(Path::new("/nonexistent"));
        let (identity, complete) = resolve(&format!("/docker/{ID}"), &empty).unwrap();
        assert!(!complete);
        assert_eq!(
            identity,
            Identity {
                container_id: ID.into(),
                container_runtime: "docker".into(),
                ..Identity::default()
            }
        );
        assert_eq!(resolve("/system.slice/ssh.service", &state), None);
    }

    #[test]
    fn nspawn_is_named_by_its_unit() {
        let empty = StateDirs::under(Path::new("/nonexistent"));
        let (identity, complete) =
            resolve("/machine.slice/systemd-nspawn@web.service/payload", &empty).unwrap();
        assert!(complete);
        assert_eq!(
            (&*identity.container_id, &*identity.container_name),
            ("web", "web")
        );
    }

    #[test]
    fn v1_paths_of_a_hybrid_host() {
        let text = format!("12:pids:/\n9:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n0::/\n");
        assert_eq!(
            container_path_in(&text),
            Some(format!("/kubepods/burstable/pod{UID}/{ID}").as_str())
        );
        assert_eq!(container_path_in("4:memory:/process_api\n0::/\n"), None);
    }

    #[test]
    fn names_written_after_the_first_lookup_are_found_later() {
        let root = tempfile::tempdir().unwrap();
        let path = format!("/kubepods/burstable/pod{UID}/{ID}");
        let retry = Duration::from_millis(50);
        let mut ids = Identities::new(StateDirs::under(root.path()), false, retry);
        ids.prepare(1, 1, 7, &path, false);
        let first = ids.get(1, 1, 7, &path).cloned().unwrap();
        assert_eq!((&*first.container_id, &*first.pod_name), (ID, ""));
        // The runtime writes its state after the container's first rows.
        let dir = root.path().join(format!("run/runc/{ID}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("state.json"),
            r#"{"config":{"labels":["io.kubernetes.pod.name=web-0"]}}"#,
        )
        .unwrap();
        ids.new_tick();
        ids.prepare(1, 1, 7, &path, false);
        assert_eq!(&*ids.get(1, 1, 7, &path).unwrap().pod_name, "", "too early");
        std::thread::sleep(retry * 2);
        ids.new_tick();
        ids.prepare(1, 1, 7, &path, false);
        assert_eq!(&*ids.get(1, 1, 7, &path).unwrap().pod_name, "web-0");
    }

    #[test]
    fn host_process_has_none() {
        let mut ids = Identities::node();
        let me = std::process::id();
        ids.prepare(me, 1, 1, "/", false);
        assert_eq!(ids.get(me, 1, 1, "/"), None);
        ids.prepare(2, 0, 1, "/", true);
        assert_eq!(ids.get(2, 0, 1, "/"), None);
    }
}
