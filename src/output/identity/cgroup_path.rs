//! Which container a cgroup path belongs to, from the path alone: pure
//! parsing of the names container managers give their cgroups.
//!
//! The innermost component that names a container wins (a container's
//! own sub-cgroups, such as `init.scope` or nspawn's `payload`, and
//! nested containers resolve to the innermost container). Only names that
//! cannot mean anything else are taken: a bare or prefixed id must be 64
//! lowercase hex digits, so a path that merely looks like a container's
//! gives no identity rather than a wrong one.
//!
//! | pattern (cgroupfs driver / systemd driver) | runtime |
//! | --- | --- |
//! | `/docker/<id>` / `…/docker-<id>.scope` | docker |
//! | `…/cri-containerd-<id>.scope` | containerd |
//! | `…/crio-<id>` / `…/crio-<id>.scope` | cri-o |
//! | `…/libpod-<id>` / `…/libpod-<id>.scope` | podman |
//! | `…/systemd-nspawn@<name>.service` | systemd-nspawn (id = machine name) |
//! | `/kubepods/…/pod<uid>/<id>` | from the runtime's state (`runtime_state`) |
//!
//! Kubernetes pods are recognized in both drivers' names: `pod<uid>` and
//! `kubepods-<qos>-pod<uid with _ for ->.slice`.

/// What a cgroup path says about its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupContainer {
    /// The runtime's container id (64 hex digits), or the machine name of
    /// an nspawn container.
    pub id: String,
    /// The runtime, when the name says which; None for a bare id.
    pub runtime: Option<&'static str>,
    /// UID of the Kubernetes pod the container is in, if any.
    pub pod_uid: Option<String>,
}

/// The container that cgroup `path` (as in `/proc/<pid>/cgroup`) belongs
/// to, or None.
pub fn parse(path: &str) -> Option<CgroupContainer> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (index, id, runtime) = components.iter().enumerate().rev().find_map(|(i, name)| {
        let parent = i.checked_sub(1).map(|p| components[p]);
        container_of(name, parent).map(|(id, runtime)| (i, id, runtime))
    })?;
    let pod_uid = components[..index].iter().rev().find_map(|c| pod_uid(c));
    Some(CgroupContainer {
        id,
        runtime,
        pod_uid,
    })
}

/// The container named by one path component (`parent` is the one above).
fn container_of(name: &str, parent: Option<&str>) -> Option<(String, Option<&'static str>)> {
    const SCOPES: &[(&str, &str)] = &[
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ];
    for &(prefix, runtime) in SCOPES {
        if let Some(rest) = name.strip_prefix(prefix) {
            let id = rest.strip_suffix(".scope").unwrap_or(rest);
            // docker-<id> without .scope is not a name docker uses.
            let scope_only = prefix == "docker-" || prefix == "cri-containerd-";
            if is_container_id(id) && (!scope_only || rest.ends_with(".scope")) {
                return Some((id.to_string(), Some(runtime)));
            }
        }
    }
    if let Some(machine) = name
        .strip_prefix("systemd-nspawn@")
        .and_then(|rest| rest.strip_suffix(".service"))
    {
        let machine = unescape_unit(machine)?;
        return (!machine.is_empty()).then_some((machine, Some("systemd-nspawn")));
    }
    if is_container_id(name) {
        match parent {
            Some("docker") => return Some((name.to_string(), Some("docker"))),
            Some(parent) if pod_uid(parent).is_some() => return Some((name.to_string(), None)),
            _ => {}
        }
    }
    None
}

/// The pod UID a component names: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid(component: &str) -> Option<String> {
    let uid = if let Some(slice) = component.strip_suffix(".slice") {
        let rest = slice.strip_prefix("kubepods-")?;
        let (_, uid) = rest.rsplit_once("pod")?;
        uid.replace('_', "-")
    } else {
        component.strip_prefix("pod")?.to_string()
    };
    is_uuid(&uid).then_some(uid)
}

/// 64 lowercase hex digits: the ids docker, containerd, CRI-O and podman
/// give containers.
pub fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A UUID as Kubernetes writes pod UIDs (8-4-4-4-12 hex digits).
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A systemd unit-name instance with its `\xNN` escapes undone; None if
/// the escapes are malformed or the result is not UTF-8.
fn unescape_unit(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = text.get(i + 2..i + 4)?;
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "d1ab0a8bbc3fa818fa6a776b066812632f269b677048fbe254925ec0b116febc";
    const UID: &str = "11111111-2222-3333-4444-555555555555";

    fn found(path: &str) -> (String, Option<&'static str>, Option<String>) {
        let c = parse(path).unwrap_or_else(|| panic!("no container in {path}"));
        (c.id, c.runtime, c.pod_uid)
    }

    #[test]
    fn docker_cgroupfs_and_systemd() {
        let want = (ID.to_string(), Some("docker"), None);
        assert_eq!(found(&format!("/docker/{ID}")), want);
        assert_eq!(found(&format!("/docker/{ID}/init.scope")), want);
        assert_eq!(found(&format!("/system.slice/docker-{ID}.scope")), want);
        // Docker in Docker: the innermost.
        let inner = "a".repeat(64);
        assert_eq!(found(&format!("/docker/{ID}/docker/{inner}")).0, inner);
    }

    #[test]
    fn kubernetes_cgroupfs_bare_id() {
        let path = format!("/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(found(&path), (ID.to_string(), None, Some(UID.to_string())));
        let guaranteed = format!("/kubepods/pod{UID}/{ID}");
        assert_eq!(found(&guaranteed).2.as_deref(), Some(UID));
        // The pod's own cgroup is no container.
        assert_eq!(parse(&format!("/kubepods/burstable/pod{UID}")), None);
    }

    #[test]
    fn containerd_systemd_driver() {
        let pod = UID.replace('-', "_");
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            found(&path),
            (ID.to_string(), Some("containerd"), Some(UID.to_string()))
        );
        let guaranteed =
            format!("/kubepods.slice/kubepods-pod{pod}.slice/cri-containerd-{ID}.scope");
        assert_eq!(found(&guaranteed).2.as_deref(), Some(UID));
    }

    #[test]
    fn crio_both_drivers() {
        let pod = UID.replace('-', "_");
        let systemd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod}.slice/crio-{ID}.scope"
        );
        assert_eq!(
            found(&systemd),
            (ID.to_string(), Some("cri-o"), Some(UID.to_string()))
        );
        let cgroupfs = format!("/kubepods/besteffort/pod{UID}/crio-{ID}");
        assert_eq!(found(&cgroupfs).1, Some("cri-o"));
        // conmon, the runtime's monitor, is no container.
        let conmon = format!("/kubepods.slice/kubepods-pod{pod}.slice/crio-conmon-{ID}.scope");
        assert_eq!(parse(&conmon), None);
    }

    #[test]
    fn podman_both_drivers() {
        let want = (ID.to_string(), Some("podman"), None);
        assert_eq!(found(&format!("/machine.slice/libpod-{ID}.scope")), want);
        assert_eq!(
            found(&format!("/machine.slice/libpod-{ID}.scope/container")),
            want
        );
        assert_eq!(found(&format!("/libpod_parent/libpod-{ID}")), want);
        assert_eq!(
            parse(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn systemd_nspawn() {
        let want = ("web".to_string(), Some("systemd-nspawn"), None);
        assert_eq!(
            found("/machine.slice/systemd-nspawn@web.service/payload"),
            want
        );
        assert_eq!(found("/machine.slice/systemd-nspawn@web.service"), want);
        assert_eq!(
            found("/machine.slice/systemd-nspawn@db\\x2d1.service/payload").0,
            "db-1"
        );
        assert_eq!(parse("/machine.slice/systemd-nspawn@bad\\x2.service"), None);
    }

    #[test]
    fn host_paths_have_none() {
        for path in [
            "/",
            "",
            "/system.slice/ssh.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/process_api/abc123def456",
            // Too short, upper case, or a bare id outside a pod or /docker.
            "/docker/abc123def456",
            &format!("/docker/{}", ID.to_uppercase()),
            &format!("/system.slice/{ID}"),
            &format!("/system.slice/docker-{ID}"),
            &format!("/kubepods/burstable/podnot-a-uid/{ID}"),
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }
}
