//! A container's names, read from its runtime's own files on this node —
//! no API server, no runtime socket.
//!
//! Where each runtime keeps what we read (paths below the node's root;
//! default state directories only, a runtime started with another `root`
//! or `state` directory is not found, and its containers keep only what
//! their cgroup path says):
//!
//! | file | runtime | what is read |
//! | --- | --- | --- |
//! | `/run/containerd/io.containerd.runtime.v2.task/<ns>/<id>/config.json` | containerd (namespace `moby`: docker) | OCI bundle `annotations` |
//! | `/run/containerd/runc/<ns>/<id>/state.json` | containerd (`moby`: docker) | runc state `config.labels` (the annotations, as `key=value`) |
//! | `/run/docker/runtime-runc/moby/<id>/state.json` | docker | runc state `config.labels` |
//! | `/run/runc/<id>/state.json` | runc (no manager) | runc state `config.labels` |
//! | `/run/containers/storage/overlay-containers/<id>/userdata/config.json`, same under `/var/lib/containers/storage/` | cri-o (has `io.kubernetes.cri-o.*` annotations) or podman | OCI bundle `annotations` |
//! | `/var/lib/docker/containers/<id>/config.v2.json` | docker | `Name` (the container's name) |
//!
//! Kubernetes names come from the annotations kubelet's runtimes write:
//! `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`,
//! `io.kubernetes.container.name` (CRI-O, dockershim) or
//! `io.kubernetes.cri.sandbox-name`, `io.kubernetes.cri.sandbox-namespace`,
//! `io.kubernetes.cri.container-name` (containerd's CRI plugin). Podman
//! keeps names in its database, which is not read: a podman container
//! has its id and runtime only.
//!
//! Files are opened without following a final symlink and read up to
//! [`MAX_FILE_BYTES`]; anything unreadable or malformed is "not found".

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest state file read (an OCI config is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// What a runtime's files say about one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeState {
    /// The runtime whose files these are.
    pub runtime: Option<&'static str>,
    /// OCI annotations (or runc labels) of the container.
    pub annotations: BTreeMap<String, String>,
    /// The name the runtime gives the container (docker's `Name`).
    pub name: Option<String>,
}

impl RuntimeState {
    fn annotation(&self, keys: &[&str]) -> Option<&str> {
        keys.iter()
            .find_map(|key| self.annotations.get(*key))
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// Kubernetes pod name.
    pub fn pod_name(&self) -> Option<&str> {
        self.annotation(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"])
    }

    /// Kubernetes namespace of the pod.
    pub fn pod_namespace(&self) -> Option<&str> {
        self.annotation(&[
            "io.kubernetes.pod.namespace",
            "io.kubernetes.cri.sandbox-namespace",
        ])
    }

    /// Kubernetes pod UID.
    pub fn pod_uid(&self) -> Option<&str> {
        self.annotation(&["io.kubernetes.pod.uid", "io.kubernetes.cri.sandbox-uid"])
    }

    /// The container's name: its name in the pod for Kubernetes, else the
    /// runtime's name for it.
    pub fn container_name(&self) -> Option<&str> {
        self.annotation(&[
            "io.kubernetes.container.name",
            "io.kubernetes.cri.container-name",
        ])
        .or(self.name.as_deref().filter(|name| !name.is_empty()))
    }
}

/// The state directories of the runtimes, below a root (`/` on a node; a
/// scratch directory in tests).
#[derive(Debug, Clone)]
pub struct StateDirs {
    root: PathBuf,
}

impl StateDirs {
    /// The node's own directories.
    pub fn node() -> StateDirs {
        StateDirs::under(Path::new("/"))
    }

    pub fn under(root: &Path) -> StateDirs {
        StateDirs {
            root: root.to_path_buf(),
        }
    }

    /// What the runtimes' files say about container `id` (64 hex digits;
    /// anything else is never looked up), or None when no runtime has it.
    pub fn lookup(&self, id: &str) -> Option<RuntimeState> {
        if !super::cgroup_path::is_container_id(id) {
            return None;
        }
        let mut state = self.containerd(id).or_else(|| self.runc(id)).or_else(|| {
            ["run/containers/storage", "var/lib/containers/storage"]
                .iter()
                .find_map(|dir| {
                    let path = format!("{dir}/overlay-containers/{id}/userdata/config.json");
                    let annotations = bundle_annotations(&self.read_json(&path)?);
                    let crio = annotations
                        .keys()
                        .any(|k| k.starts_with("io.kubernetes.cri-o."));
                    Some(RuntimeState {
                        runtime: Some(if crio { "cri-o" } else { "podman" }),
                        annotations,
                        name: None,
                    })
                })
        })?;
        if state.runtime == Some("docker") {
            let path = format!("var/lib/docker/containers/{id}/config.v2.json");
            state.name = self.read_json(&path).as_ref().and_then(docker_name);
        }
        Some(state)
    }

    /// containerd's bundle, in any of its namespaces.
    fn containerd(&self, id: &str) -> Option<RuntimeState> {
        let tasks = self
            .root
            .join("run/containerd/io.containerd.runtime.v2.task");
        let namespaces = std::fs::read_dir(tasks).ok()?;
        namespaces.flatten().find_map(|ns| {
            let ns = ns.file_name();
            let ns = ns.to_str()?;
            let path =
                format!("run/containerd/io.containerd.runtime.v2.task/{ns}/{id}/config.json");
            Some(RuntimeState {
                runtime: Some(containerd_runtime(ns)),
                annotations: bundle_annotations(&self.read_json(&path)?),
                name: None,
            })
        })
    }

    /// runc's state file, where containerd, docker or a user put runc's root.
    fn runc(&self, id: &str) -> Option<RuntimeState> {
        let mut candidates = Vec::new();
        if let Ok(namespaces) = std::fs::read_dir(self.root.join("run/containerd/runc")) {
            for ns in namespaces.flatten() {
                if let Some(ns) = ns.file_name().to_str() {
                    candidates.push((
                        format!("run/containerd/runc/{ns}/{id}/state.json"),
                        containerd_runtime(ns),
                    ));
                }
            }
        }
        candidates.push((
            format!("run/docker/runtime-runc/moby/{id}/state.json"),
            "docker",
        ));
        candidates.push((format!("run/runc/{id}/state.json"), "runc"));
        candidates.into_iter().find_map(|(path, runtime)| {
            Some(RuntimeState {
                runtime: Some(runtime),
                annotations: runc_labels(&self.read_json(&path)?),
                name: None,
            })
        })
    }

    /// The JSON file at `relative` below the root, if it is a regular file
    /// (no final symlink) of at most MAX_FILE_BYTES that parses.
    fn read_json(&self, relative: &str) -> Option<Value> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.root.join(relative))
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut text = Vec::new();
        file.take(MAX_FILE_BYTES).read_to_end(&mut text).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

fn containerd_runtime(namespace: &str) -> &'static str {
    if namespace == "moby" {
        "docker"
    } else {
        "containerd"
    }
}

/// `annotations` of an OCI runtime config (config.json).
pub fn bundle_annotations(config: &Value) -> BTreeMap<String, String> {
    string_map(config.get("annotations"))
}

/// The annotations runc keeps in its state.json, as `config.labels`
/// (`"key=value"` strings; runc adds `bundle=<dir>`).
pub fn runc_labels(state: &Value) -> BTreeMap<String, String> {
    let labels = state
        .get("config")
        .and_then(|c| c.get("labels"))
        .and_then(Value::as_array);
    labels
        .into_iter()
        .flatten()
        .filter_map(|label| {
            let (key, value) = label.as_str()?.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

/// docker's container name (config.v2.json `Name`, without its `/`).
pub fn docker_name(config: &Value) -> Option<String> {
    let name = config.get("Name")?.as_str()?.trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_string())
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f2a9c0e0d1e2f4f2a9c0e0d1e2f4f2a9c0e0d1e2f4f2a9c0e0d1e2f4f2a9c0e";

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn containerd_cri_bundle() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"ociVersion":"1.0.2","annotations":{
                "io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.container-name":"pg",
                "io.kubernetes.cri.sandbox-name":"db-1",
                "io.kubernetes.cri.sandbox-namespace":"prod",
                "io.kubernetes.cri.sandbox-uid":"99999999-8888-7777-6666-555555555555"}}"#,
        );
        let state = StateDirs::under(root.path()).lookup(ID).unwrap();
        assert_eq!(state.runtime, Some("containerd"));
        assert_eq!(state.container_name(), Some("pg"));
        assert_eq!(state.pod_name(), Some("db-1"));
        assert_eq!(state.pod_namespace(), Some("prod"));
        assert_eq!(
            state.pod_uid(),
            Some("99999999-8888-7777-6666-555555555555")
        );
    }

    #[test]
    fn docker_via_containerd_moby_and_its_name() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &format!("run/containerd/io.containerd.runtime.v2.task/moby/{ID}/config.json"),
            r#"{"annotations":{}}"#,
        );
        write(
            root.path(),
            &format!("var/lib/docker/containers/{ID}/config.v2.json"),
            r#"{"ID":"x","Name":"/web"}"#,
        );
        let state = StateDirs::under(root.path()).lookup(ID).unwrap();
        assert_eq!(state.runtime, Some("docker"));
        assert_eq!(state.container_name(), Some("web"));
        assert_eq!(state.pod_name(), None);
    }

    #[test]
    fn runc_state_labels() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &format!("run/runc/{ID}/state.json"),
            r#"{"id":"x","init_process_pid":1,"config":{"labels":[
                "io.kubernetes.pod.name=web-0","io.kubernetes.pod.namespace=default",
                "io.kubernetes.container.name=app","bundle=/tmp/b"]}}"#,
        );
        let state = StateDirs::under(root.path()).lookup(ID).unwrap();
        assert_eq!(state.runtime, Some("runc"));
        assert_eq!(state.container_name(), Some("app"));
        assert_eq!(state.pod_name(), Some("web-0"));
        assert_eq!(state.pod_namespace(), Some("default"));
        assert_eq!(
            state.annotations.get("bundle").map(String::as_str),
            Some("/tmp/b")
        );
    }

    #[test]
    fn crio_and_podman_storage() {
        let root = tempfile::tempdir().unwrap();
        let crio = format!("run/containers/storage/overlay-containers/{ID}/userdata/config.json");
        write(
            root.path(),
            &crio,
            r#"{"annotations":{"io.kubernetes.cri-o.Name":"k8s_app","io.kubernetes.pod.name":"web-0"}}"#,
        );
        let state = StateDirs::under(root.path()).lookup(ID).unwrap();
        assert_eq!(
            (state.runtime, state.pod_name()),
            (Some("cri-o"), Some("web-0"))
        );
        write(
            root.path(),
            &crio,
            r#"{"annotations":{"io.container.manager":"libpod"}}"#,
        );
        let state = StateDirs::under(root.path()).lookup(ID).unwrap();
        assert_eq!(
            (state.runtime, state.container_name()),
            (Some("podman"), None)
        );
    }

    #[test]
    fn unknown_malformed_or_symlinked_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let dirs = StateDirs::under(root.path());
        assert_eq!(dirs.lookup(ID), None);
        // Never a path outside the state directories.
        assert_eq!(dirs.lookup("../../etc"), None);
        write(
            root.path(),
            &format!("run/runc/{ID}/state.json"),
            "{not json",
        );
        assert_eq!(dirs.lookup(ID), None);
        let other = root.path().join("elsewhere.json");
        std::fs::write(
            &other,
            r#"{"config":{"labels":["io.kubernetes.pod.name=x"]}}"#,
        )
        .unwrap();
        std::fs::remove_file(root.path().join(format!("run/runc/{ID}/state.json"))).unwrap();
        std::os::unix::fs::symlink(
            &other,
            root.path().join(format!("run/runc/{ID}/state.json")),
        )
        .unwrap();
        assert_eq!(dirs.lookup(ID), None);
    }
}
