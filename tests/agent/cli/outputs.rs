//! Where the output directory may be and what named outputs may replace:
//! a symlinked, world-writable or unwritable output directory is refused
//! (and the message says how to make it safe), one in /tmp is created and
//! used, and the files a user names (`--output`, export archives) replace
//! only regular files.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::*;

use super::{assert_nothing_written, assert_one_line_error};

#[test]
fn symlinked_output_dir_is_refused() {
    require_root();
    let scratch = scratch();
    let target = scratch.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = scratch.path().join("link");
    symlink(&target, &link).unwrap();
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        link.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 1, "is a symlink");
    assert_nothing_written(&target);
}

#[test]
fn world_writable_output_dir_is_refused() {
    require_root();
    let scratch = scratch();
    let open = scratch.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        open.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 1, "writable by other users");
    assert_safe_advice(&out);
    assert_nothing_written(&open);
    // Creating a new output directory inside it is refused as well.
    let inside = open.join("out");
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        inside.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 1, "writable by other users");
    assert_safe_advice(&out);
    assert!(!inside.exists());
}

/// The advice names a directory of its own, and never changes a shared
/// one (`chmod go-w /tmp` would break the machine).
fn assert_safe_advice(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/var/lib/taskscope") && !stderr.contains("chmod"),
        "{stderr}"
    );
}

#[test]
fn unwritable_output_dir() {
    require_root();
    let scratch = scratch();
    let readonly = scratch.path().join("ro");
    std::fs::create_dir(&readonly).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,mode=0755,size=1m", "none"])
        .arg(&readonly)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a read-only tmpfs failed");
    let out_dir = readonly.join("out");
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    let _ = Command::new("umount").arg(&readonly).status();
    assert_one_line_error(&out, 1, "cannot write to");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    assert!(!out_dir.exists());
}

/// `--output-dir /tmp/NAME`: created by root in the sticky, root-owned
/// /tmp, which others cannot rename or remove it from, and written to. A
/// name someone else made first is refused.
#[test]
fn output_dir_in_tmp_is_created_and_used() {
    require_root();
    let _serial = exclusive();
    let name = format!("/tmp/taskscope-test-sticky-{}", std::process::id());
    let out_dir = Path::new(&name);
    let _ = std::fs::remove_dir_all(out_dir);
    let run = AgentRun::new()
        .args(["-F", "10"])
        .duration("2s")
        .output(Path::new(&name))
        .run();
    let meta = std::fs::symlink_metadata(out_dir);
    let files = files_under(out_dir);
    let _ = std::fs::remove_dir_all(out_dir);
    assert_success(&run);
    let meta = meta.expect("the output directory exists");
    use std::os::unix::fs::MetadataExt;
    assert!(meta.is_dir());
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o755));
    assert!(files.iter().any(|f| f.starts_with("samples")), "{files:?}");

    // Another user's directory at the name is not the agent's.
    std::fs::create_dir(out_dir).unwrap();
    std::os::unix::fs::chown(out_dir, Some(65534), Some(65534)).unwrap();
    let out = taskscope(&["run", "--duration", "1", "--no-pin", "--output-dir", &name]);
    let _ = std::fs::remove_dir_all(out_dir);
    assert_one_line_error(&out, 1, "is owned by uid 65534");
    assert_safe_advice(&out);
}

/// What a user-named path holds, for "left as it was" checks.
fn kind_of(path: &Path) -> String {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(path).expect("stat");
    let t = meta.file_type();
    let kind = if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else {
        "file"
    };
    format!("{kind} {:x}", meta.rdev())
}

/// Read a FIFO on another thread while a command writes to it.
fn read_fifo(fifo: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || std::fs::read(fifo).expect("read the FIFO"))
}

/// `flamegraph -o`, `export -o` and `import --dir` as root: a symlink, a
/// directory, a socket or a block device is never replaced or written
/// through; a character device (a `mknod` twin of /dev/null) and a FIFO
/// are written in place and stay what they were; an existing file is
/// replaced only with --force. No temporary file is left behind.
#[test]
fn user_named_outputs_replace_only_regular_files() {
    require_root();
    let scratch = scratch();
    let data = scratch.path().join("data");
    {
        let _serial = exclusive();
        let run = AgentRun::new()
            .args(["--all", "-F", "10"])
            .duration(2)
            .output(&data)
            .limit(Duration::from_secs(60))
            .run();
        assert_success(&run);
    }
    let place = scratch.path().join("place");
    std::fs::create_dir(&place).unwrap();
    let at = |name: &str| place.join(name);
    let victim = at("victim");
    std::fs::write(&victim, b"precious").unwrap();
    symlink(&victim, at("link.svg")).unwrap();
    symlink(&victim, at("link.tar.zst")).unwrap();
    std::fs::create_dir(at("somedir")).unwrap();
    symlink(at("somedir"), at("dirlink")).unwrap();
    let mknod = |name: &str, args: &[&str]| {
        let status = Command::new("mknod")
            .arg(at(name))
            .args(args)
            .status()
            .expect("mknod");
        assert!(status.success(), "mknod {name}");
    };
    mknod("null", &["c", "1", "3"]);
    mknod("disk", &["b", "7", "250"]);
    mknod("pipe", &["p"]);
    let _socket = std::os::unix::net::UnixListener::bind(at("sock")).unwrap();
    let before = |names: &[&str]| names.iter().map(|n| kind_of(&at(n))).collect::<Vec<_>>();
    let special = [
        "link.svg",
        "link.tar.zst",
        "somedir",
        "dirlink",
        "null",
        "disk",
        "pipe",
        "sock",
    ];
    let kinds = before(&special);

    let data_arg = data.to_str().unwrap();
    // `command` over the run's hour, written to `output`.
    let write = |command: &[&str], output: &Path, force: bool| {
        let mut args = command.to_vec();
        args.extend([
            "--dir",
            data_arg,
            "--since",
            "1h",
            "-o",
            output.to_str().unwrap(),
        ]);
        if force {
            args.push("--force");
        }
        taskscope(&args)
    };
    // Every sampled thread: a quiet machine may have had no thread on a
    // CPU at the run's 20 ticks.
    let flamegraph =
        |output: &Path, force: bool| write(&["flamegraph", "--all-states"], output, force);
    let export = |output: &Path, force: bool| write(&["export"], output, force);
    for force in [false, true] {
        for (name, needle) in [
            ("link.svg", "is a symlink"),
            ("somedir", "is a directory"),
            ("sock", "is a socket"),
            ("disk", "is a block device"),
        ] {
            assert_one_line_error(&flamegraph(&at(name), force), 1, needle);
        }
        for (name, needle) in [
            ("link.tar.zst", "is a symlink"),
            ("dirlink", "is a symlink"),
            ("sock", "is a socket"),
            ("disk", "is a block device"),
        ] {
            assert_one_line_error(&export(&at(name), force), 1, needle);
        }
    }
    // A device is written as it is (the twin of /dev/null swallows it).
    let out = flamegraph(&at("null"), false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = export(&at("null"), false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A FIFO is written as it is: its reader gets the graph, the archive.
    let reader = read_fifo(&at("pipe"));
    let out = flamegraph(&at("pipe"), false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = reader.join().unwrap();
    assert!(
        svg.starts_with(b"<?xml"),
        "the FIFO's reader got {:?}",
        &svg[..svg.len().min(40)]
    );
    let reader = read_fifo(&at("pipe"));
    let out = export(&at("pipe"), false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = reader.join().unwrap();
    assert!(
        archive.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "not a zstd stream"
    );
    assert_eq!(before(&special), kinds, "something special was replaced");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // An existing regular file: only with --force.
    let graph = at("graph.svg");
    std::fs::write(&graph, b"old graph").unwrap();
    assert_one_line_error(&flamegraph(&graph, false), 1, "--force");
    assert_eq!(std::fs::read(&graph).unwrap(), b"old graph");
    assert!(flamegraph(&graph, true).status.success());
    assert!(std::fs::read(&graph).unwrap().starts_with(b"<?xml"));
    let archive = at("a.tar.zst");
    std::fs::write(&archive, b"old archive").unwrap();
    assert_one_line_error(&export(&archive, false), 1, "--force");
    assert_eq!(std::fs::read(&archive).unwrap(), b"old archive");
    assert!(export(&archive, true).status.success());
    assert_ne!(std::fs::read(&archive).unwrap(), b"old archive");

    // import --dir: missing or an empty directory, nothing else.
    let import = |dir: &Path| {
        taskscope(&[
            "import",
            archive.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
        ])
    };
    std::fs::write(at("somedir/x"), b"x").unwrap();
    for (name, needle) in [
        ("dirlink", "is a symlink"),
        ("null", "a character device, not a directory"),
        ("pipe", "a FIFO, not a directory"),
        ("victim", "a regular file, not a directory"),
        ("somedir", "is not empty"),
    ] {
        assert_one_line_error(&import(&at(name)), 1, needle);
    }
    assert_eq!(before(&special), kinds, "something special was replaced");
    let empty = at("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = import(&empty);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(empty.join("manifest.json").is_file());
    let left: Vec<_> = std::fs::read_dir(&place)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
