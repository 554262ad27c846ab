//! A memory cgroup of its own for the agent under measurement, as systemd
//! gives a service: what `MemoryMax=` would count.
//!
//! A cgroup is charged more than the process's RSS: the kernel memory the
//! agent makes the kernel allocate (its BPF maps, whether mapped into the
//! process or not, task storage, slab for the /proc files it reads) and
//! the page cache of the files it writes and reads. Page cache is
//! reclaimed under a limit; anonymous and kernel memory are not (there is
//! no swap on these machines), so "hard" = anonymous + kernel is what a
//! limit must leave room for. cgroup v2 where the memory controller is
//! there, else v1.

use std::path::PathBuf;

/// One cgroup, removed (once empty) when dropped.
pub struct MemCgroup {
    dir: PathBuf,
    v2: bool,
}

/// Charges of a memory cgroup, KiB.
#[derive(Default, Clone, Copy)]
pub struct Charge {
    /// Everything charged: anonymous, page cache, kernel.
    pub total: u64,
    /// Anonymous + kernel: what a limit cannot reclaim.
    pub hard: u64,
    pub anon: u64,
    pub kernel: u64,
}

impl MemCgroup {
    /// A new cgroup `name` with no limit.
    pub fn create(name: &str) -> MemCgroup {
        let v2_root = PathBuf::from("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(v2_root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let dir = if v2 {
            // Children of the root get the controller only when the root
            // hands it down.
            let _ = std::fs::write(v2_root.join("cgroup.subtree_control"), "+memory");
            v2_root.join(name)
        } else {
            PathBuf::from("/sys/fs/cgroup/memory").join(name)
        };
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create the memory cgroup {}: {e}", dir.display()));
        MemCgroup { dir, v2 }
    }

    /// The `cgroup.procs` file a process writes "0" to, to join.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_else(|e| panic!("cannot read {file} of {}: {e}", self.dir.display()))
    }

    /// The file named `v2` or `v1`, for this cgroup's version.
    fn file(&self, v2: &'static str, v1: &'static str) -> &'static str {
        if self.v2 {
            v2
        } else {
            v1
        }
    }

    /// The value of `key` in a "key value" per line `file`.
    fn field(&self, file: &str, key: &str) -> Option<u64> {
        self.read(file).lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    }

    fn stat(&self, key: &str) -> Option<u64> {
        self.field("memory.stat", key)
    }

    /// What is charged now.
    pub fn charge(&self) -> Charge {
        let bytes = |s: String| s.trim().parse::<u64>().unwrap_or(0);
        let (total, anon, kernel) = if self.v2 {
            // `kernel` (Linux 5.18+) covers all kernel memory; before it,
            // its larger parts.
            let kernel = self.stat("kernel").unwrap_or_else(|| {
                [
                    "kernel_stack",
                    "pagetables",
                    "percpu",
                    "sock",
                    "slab",
                    "vmalloc",
                ]
                .iter()
                .filter_map(|f| self.stat(f))
                .sum()
            });
            (
                bytes(self.read("memory.current")),
                self.stat("anon").unwrap_or(0),
                kernel,
            )
        } else {
            (
                bytes(self.read("memory.usage_in_bytes")),
                self.stat("rss").unwrap_or(0),
                bytes(self.read("memory.kmem.usage_in_bytes")),
            )
        };
        Charge {
            total: total / 1024,
            hard: (anon + kernel) / 1024,
            anon: anon / 1024,
            kernel: kernel / 1024,
        }
    }

    /// Reclaim what the kernel can take back without killing anything:
    /// the page cache of the files the agent wrote and read, with the
    /// kernel memory that indexes it (radix-tree nodes, which `kernel`
    /// counts: it grew ~0.1 MiB/s with the files written). What is left
    /// is the floor a limit must leave room for.
    pub fn reclaim(&self) {
        let file = self.file("memory.reclaim", "memory.force_empty");
        let what = self.file("1G", "0");
        // v2 says EAGAIN when it could not reclaim all it was asked.
        let _ = std::fs::write(self.dir.join(file), what);
    }

    /// Limit the cgroup to `bytes` (`MemoryMax=`).
    pub fn limit(&self, bytes: u64) {
        let file = self.file("memory.max", "memory.limit_in_bytes");
        std::fs::write(self.dir.join(file), bytes.to_string())
            .unwrap_or_else(|e| panic!("cannot limit {}: {e}", self.dir.display()));
    }

    /// Processes the kernel killed for passing the limit.
    pub fn oom_kills(&self) -> u64 {
        let file = self.file("memory.events", "memory.oom_control");
        self.field(file, "oom_kill").unwrap_or(0)
    }

    /// The largest total charge so far, KiB.
    pub fn peak_kib(&self) -> u64 {
        let file = self.file("memory.peak", "memory.max_usage_in_bytes");
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
