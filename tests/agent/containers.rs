//! Identity on every sample: real containers started by runc (Debian's
//! runc, a busybox-static root file system) in cgroups named the way
//! docker, containerd, CRI-O, podman, systemd-nspawn and Kubernetes name
//! them, with Kubernetes annotations in their OCI config; a process moved
//! into a docker-named cgroup of a cgroup v1 hierarchy only; and a host
//! process. Their rows, in CSV and Parquet, carry the right container id,
//! runtime, names and pod, and the host process none.
//!
//! runc joins every hierarchy, v1 and v2, with the literal `cgroupsPath`;
//! its state (`/run/runc/<id>/state.json`, with the annotations as labels)
//! is what the agent reads for names. One more container is run by a real
//! containerd (its runc shim writes the OCI bundle where containerd does
//! on a node). Every container, daemon and cgroup directory made is
//! removed when the test ends, passing or not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::support::*;

const UID: &str = "11111111-2222-3333-4444-555555555555";
const UID2: &str = "99999999-8888-7777-6666-555555555555";

/// A 64-hex container id that differs by `n`.
fn container_id(n: u8) -> String {
    format!("{n:02x}{}", &"c0ffee".repeat(11)[..62])
}

/// A busybox-static root file system at `rootfs`.
fn make_rootfs(rootfs: &Path) {
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(dir)).expect("make the rootfs");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (apt install busybox-static; ./dev.sh test does)");
    for tool in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
}

/// A runc container, killed and deleted (with its cgroups) on drop.
struct Container {
    id: String,
    cgroup: String,
    _bundle: tempfile::TempDir,
    pid: u32,
}

impl Container {
    fn start(id: &str, cgroup: &str, annotations: Value) -> Container {
        let bundle = scratch();
        // Remove leftovers of an earlier, killed run of this test.
        let _ = runc(&["delete", "--force", id]);
        make_rootfs(&bundle.path().join("rootfs"));
        let out = runc(&["spec", "--bundle", &bundle.path().to_string_lossy()]);
        assert!(
            out.status.success(),
            "runc spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config_path = bundle.path().join("config.json");
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["sleep", "1000"]);
        config["linux"]["cgroupsPath"] = json!(cgroup);
        config["annotations"] = annotations;
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut container = Container {
            id: id.to_string(),
            cgroup: cgroup.to_string(),
            _bundle: bundle,
            pid: 0,
        };
        // runc run -d hands its stdio to the container: never a pipe.
        let status = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(container._bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run runc (apt install runc; ./dev.sh test does)");
        assert!(
            status.success(),
            "runc run {id} in {cgroup} failed: {status}"
        );
        let out = runc(&["state", id]);
        let state: Value = serde_json::from_slice(&out.stdout).expect("runc state JSON");
        container.pid = state["pid"].as_u64().expect("container pid") as u32;
        container
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = runc(&["kill", &self.id, "KILL"]);
        let _ = runc(&["delete", "--force", &self.id]);
        remove_cgroup(&self.cgroup);
    }
}

fn runc(args: &[&str]) -> std::process::Output {
    Command::new("runc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run runc (apt install runc; ./dev.sh test does)")
}

/// Every hierarchy's directory of `cgroup`: each v1 controller's and
/// cgroup2's (hybrid), or the one cgroup2 tree.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    dirs
}

/// `rmdir` `cgroup` and its empty parents in every hierarchy.
fn remove_cgroup(cgroup: &str) {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    for hierarchy in hierarchies() {
        for depth in (1..=parts.len()).rev() {
            let _ = std::fs::remove_dir(hierarchy.join(parts[..depth].join("/")));
        }
    }
}

/// A host `sleep`, killed on drop.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Sleeper {
    Sleeper(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep"),
    )
}

/// A process in a docker-named cgroup of the v1 `name=systemd` hierarchy
/// only (its cgroup v2 place unchanged): its identity is in v1 alone.
struct V1Only {
    sleeper: Sleeper,
    cgroup: String,
}

impl V1Only {
    fn start(cgroup: &str) -> V1Only {
        let hierarchy = Path::new("/sys/fs/cgroup/systemd");
        assert!(
            hierarchy.join("cgroup.procs").exists(),
            "this test needs the cgroup v1 name=systemd hierarchy at {} (a hybrid host)",
            hierarchy.display()
        );
        let sleeper = sleeper();
        let moved = V1Only {
            sleeper,
            cgroup: cgroup.to_string(),
        };
        let dir = hierarchy.join(cgroup.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("make the v1 cgroup");
        std::fs::write(dir.join("cgroup.procs"), moved.sleeper.0.id().to_string())
            .expect("move the process into the v1 cgroup");
        moved
    }
}

impl Drop for V1Only {
    fn drop(&mut self) {
        let _ = self.sleeper.0.kill();
        let _ = self.sleeper.0.wait();
        remove_cgroup(&self.cgroup);
    }
}

const IDENTITY: &str =
    "container_id, container_runtime, container_name, pod_name, pod_namespace, pod_uid";

/// The identity columns of process `pid`'s rows in `table` (one distinct
/// combination expected), as text with NULL shown as "-".
fn identity_of(dir: &Path, table: &str, pid: u32) -> Vec<String> {
    let rows = query(
        dir,
        &format!("SELECT DISTINCT host, {IDENTITY} FROM {table} WHERE tgid = {pid}"),
    );
    assert_eq!(rows.len(), 1, "process {pid} in {table}: {rows:?}");
    let row = &rows[0];
    let host = row["host"].as_str().unwrap_or("");
    assert!(!host.is_empty(), "no host on the rows of {pid}");
    IDENTITY
        .split(", ")
        .map(|c| row[c].as_str().unwrap_or("-").to_string())
        .collect()
}

#[test]
fn container_rows_carry_their_container_and_pod() {
    require_root();
    let _serial = exclusive();
    let pod = UID.replace('-', "_");
    let pod2 = UID2.replace('-', "_");
    let k8s = |pod: &str, ns: &str, name: &str| {
        json!({"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": ns,
               "io.kubernetes.container.name": name, "io.kubernetes.pod.uid": UID})
    };
    // (cgroup path, annotations, expected identity)
    let ids: Vec<String> = (1..=7).map(container_id).collect();
    let cases = [
        (
            format!("/kubepods/burstable/pod{UID}/{}", ids[0]),
            k8s("web-0", "default", "app"),
            [&ids[0], "runc", "app", "web-0", "default", UID],
        ),
        (
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod2}.slice/cri-containerd-{}.scope",
                ids[1]
            ),
            json!({"io.kubernetes.cri.container-type": "container",
                   "io.kubernetes.cri.container-name": "pg",
                   "io.kubernetes.cri.sandbox-name": "db-1",
                   "io.kubernetes.cri.sandbox-namespace": "prod"}),
            [&ids[1], "containerd", "pg", "db-1", "prod", UID2],
        ),
        (
            format!("/kubepods.slice/kubepods-pod{pod}.slice/crio-{}.scope", ids[2]),
            k8s("cache-2", "infra", "redis"),
            [&ids[2], "cri-o", "redis", "cache-2", "infra", UID],
        ),
        (
            format!("/docker/{}", ids[3]),
            json!({}),
            [&ids[3], "docker", "-", "-", "-", "-"],
        ),
        (
            format!("/system.slice/docker-{}.scope", ids[4]),
            json!({}),
            [&ids[4], "docker", "-", "-", "-", "-"],
        ),
        (
            format!("/machine.slice/libpod-{}.scope", ids[5]),
            json!({}),
            [&ids[5], "podman", "-", "-", "-", "-"],
        ),
        (
            "/machine.slice/systemd-nspawn@web\\x2d1.service/payload".to_string(),
            json!({}),
            ["web-1", "systemd-nspawn", "web-1", "-", "-", "-"],
        ),
    ];
    let mut containers = Vec::new();
    for (i, (cgroup, annotations, _)) in cases.iter().enumerate() {
        // runc's name for the container is the id its cgroup path names.
        let name = ids.get(i).filter(|_| i < 6).cloned();
        let name = name.unwrap_or_else(|| "taskscope-test-nspawn".to_string());
        containers.push(Container::start(&name, cgroup, annotations.clone()));
    }
    let pids: Vec<u32> = containers.iter().map(|c| c.pid).collect();
    let v1_id = &ids[6];
    let v1_only = V1Only::start(&format!("/docker/{v1_id}"));
    let v1_pid = v1_only.sleeper.0.id();
    let placed = std::fs::read_to_string(format!("/proc/{v1_pid}/cgroup")).unwrap();
    assert!(
        placed.contains(&format!(":name=systemd:/docker/{v1_id}\n"))
            && !placed.contains("0::/docker/"),
        "the v1-only process should be in /docker/<id> in name=systemd only: {placed}"
    );
    let host = sleeper();
    let host_pid = host.0.id();

    let scratch = scratch();
    let out = scratch.path().join("out");
    let mut agent = AgentRun::new().output(&out).duration(2).args([
        "-a",
        "--format",
        "csv,parquet",
        "--stacks",
        "none",
    ]);
    for pid in pids.iter().chain([&v1_pid, &host_pid]) {
        agent = agent.args(["-p".to_string(), pid.to_string()]);
    }
    assert_success(&agent.run());
    drop(containers);
    drop(v1_only);

    for table in [
        "read_csv('samples/*/*/*.csv.zst')",
        "read_parquet('samples/*/*/*.parquet')",
    ] {
        for (pid, (cgroup, _, want)) in pids.iter().zip(&cases) {
            assert_eq!(
                query(
                    &out,
                    &format!("SELECT DISTINCT cgroup FROM {table} WHERE tgid = {pid}")
                )
                .first()
                .and_then(|row| row["cgroup"].as_str().map(str::to_string)),
                Some(cgroup.clone()),
                "the v2 path of {pid}"
            );
            let got = identity_of(&out, table, *pid);
            assert_eq!(got, want.map(str::to_string), "{cgroup} in {table}");
        }
        assert_eq!(
            identity_of(&out, table, v1_pid),
            [v1_id.as_str(), "docker", "-", "-", "-", "-"].map(str::to_string),
            "v1-only process in {table}"
        );
        assert_eq!(
            identity_of(&out, table, host_pid),
            ["-"; 6].map(str::to_string),
            "host process in {table}"
        );
    }
}

/// A containerd daemon with the default state directory (where the agent
/// looks: `/run/containerd`) and a private root and socket, and one
/// container it runs through its real runc shim; all stopped and removed
/// on drop.
struct Containerd {
    daemon: Child,
    socket: PathBuf,
    id: String,
    cgroup: String,
    _scratch: tempfile::TempDir,
}

impl Containerd {
    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr (apt install containerd; ./dev.sh test does)")
    }

    /// Start the daemon, then `ctr run` container `id` in `cgroup`.
    fn start(id: &str, cgroup: &str, annotations: &[(&str, &str)]) -> Containerd {
        let scratch = scratch();
        let socket = scratch.path().join("containerd.sock");
        let config = scratch.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"/run/containerd\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{}\"\n",
                scratch.path().join("root").display(),
                socket.display()
            ),
        )
        .unwrap();
        make_rootfs(&scratch.path().join("rootfs"));
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start containerd (apt install containerd; ./dev.sh test does)");
        let containerd = Containerd {
            daemon,
            socket,
            id: id.to_string(),
            cgroup: cgroup.to_string(),
            _scratch: scratch,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !containerd.ctr(&["version"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not answer on {} within 20 s",
                containerd.socket.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Leftovers of an earlier, killed run of this test.
        let _ = containerd.ctr(&["task", "kill", "--signal", "KILL", id]);
        let _ = containerd.ctr(&["task", "rm", "--force", id]);
        let _ = containerd.ctr(&["container", "rm", id]);
        let rootfs = containerd._scratch.path().join("rootfs");
        let mut args: Vec<String> = ["run", "--detach", "--rootfs", "--cgroup", cgroup]
            .map(String::from)
            .to_vec();
        for (key, value) in annotations {
            args.push("--annotation".into());
            args.push(format!("{key}={value}"));
        }
        let rootfs = rootfs.to_string_lossy().into_owned();
        args.extend([rootfs, id.into(), "/bin/sleep".into(), "1000".into()]);
        let out = containerd.ctr(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "ctr run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        containerd
    }

    /// The pid of the container's process (`ctr task ls`).
    fn pid(&self) -> u32 {
        let out = self.ctr(&["task", "ls"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(self.id.as_str()))
                    .then(|| fields.next()?.parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no task {} in:\n{text}", self.id))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.ctr(&["task", "kill", "--signal", "KILL", &self.id]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.ctr(&["task", "rm", &self.id]).status.success()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.ctr(&["task", "rm", "--force", &self.id]);
        let _ = self.ctr(&["container", "rm", &self.id]);
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        remove_cgroup(&self.cgroup);
    }
}

/// A container run by a real containerd (its shim and bundle): the agent
/// finds the bundle's config.json under
/// `/run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/` and its
/// CRI annotations.
#[test]
fn containerd_bundle_names_the_pod() {
    require_root();
    let _serial = exclusive();
    let id = container_id(0x51);
    let cgroup = format!("/kubepods/besteffort/pod{UID2}/{id}");
    let containerd = Containerd::start(
        &id,
        &cgroup,
        &[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.container-name", "pg"),
            ("io.kubernetes.cri.sandbox-name", "db-1"),
            ("io.kubernetes.cri.sandbox-namespace", "prod"),
        ],
    );
    let bundle = format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json");
    assert!(Path::new(&bundle).is_file(), "containerd wrote no {bundle}");
    let pid = containerd.pid();

    let scratch = scratch();
    let out = scratch.path().join("out");
    let agent = AgentRun::new().output(&out).duration(2).args([
        "-a",
        "--stacks",
        "none",
        "-p",
        &pid.to_string(),
    ]);
    assert_success(&agent.run());
    drop(containerd);
    assert_eq!(
        identity_of(&out, "read_csv('samples/*/*/*.csv.zst')", pid),
        [id.as_str(), "containerd", "pg", "db-1", "prod", UID2].map(str::to_string)
    );
}
