//! Import checks sizes and free space before writing: an archive that does
//! not fit on a small tmpfs, or whose manifest understates an entry's size,
//! is refused before anything is written and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A tmpfs of `size` mounted at `<scratch>/small`, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(scratch: &Path, size: &str) -> SmallFs {
        let path = scratch.join("small");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .unwrap();
        assert!(mounted.success(), "cannot mount a small tmpfs");
        SmallFs(path)
    }

    fn used(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.0).unwrap();
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// An archive laid out like export's, holding `samples/.../x.csv.zst` of
/// `size` zero bytes, with a manifest that says it has `says` bytes.
fn zeros_archive(path: &Path, size: u64, says: u64) {
    use sha2::Digest;
    use std::io::{Read, Write};
    let name = "samples/date=2026-11-22/hour=13/h-20261122T130000Z.csv.zst";
    let mut hasher = sha2::Sha256::new();
    let mut zeros = std::io::repeat(0).take(size);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = zeros.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha256: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = serde_json::json!({
        "taskscope_export": 1, "created": "2026-11-22 14:00:00.000000", "host": "h",
        "kernel": "6.18", "agent_version": "0.1.0", "agent_commit": "x",
        "window": {"from": "2026-11-22 13:00:00.000000", "to": "2026-11-22 14:00:00.000000"},
        "data": null, "hosts": ["h"], "frequency_hz": [1], "format": "copy",
        "tables": {"samples": {"rows": 1, "files": 1, "bytes": says}},
        "files": [{"path": name, "table": "samples", "format": "csv", "rows": 1,
                   "bytes": says, "sha256": sha256, "first_ts": null, "last_ts": null}],
    })
    .to_string();
    let file = std::fs::File::create(path).unwrap();
    let encoder = zstd::stream::write::Encoder::new(file, 3).unwrap();
    let mut builder = tar::Builder::new(encoder);
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(
            &mut header,
            format!("bomb/{name}"),
            std::io::repeat(0).take(size),
        )
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "bomb/manifest.json", manifest.as_bytes())
        .unwrap();
    builder
        .into_inner()
        .unwrap()
        .finish()
        .unwrap()
        .flush()
        .unwrap();
}

/// Import of a tiny archive holding a 512 MiB entry (zstd-compressed
/// zeros) into a 16 MiB file system: whether the manifest lies about the
/// size or tells it, the import is refused before anything is written; so
/// is an 8 MiB entry that would fit but that the manifest says is 100
/// bytes
/// (the file system's use, watched while it runs, stays flat) and leaves
/// nothing behind.
#[test]
fn import_checks_sizes_and_free_space_before_writing() {
    require_root();
    let scratch = scratch();
    let small = SmallFs::mount(scratch.path(), "16m");
    let big = 512u64 << 20;
    let lying = scratch.path().join("lying.tar.zst");
    let lying_big = scratch.path().join("lying-big.tar.zst");
    let honest = scratch.path().join("honest.tar.zst");
    zeros_archive(&lying, 8 << 20, 100);
    zeros_archive(&lying_big, big, 100);
    zeros_archive(&honest, big, big);
    let archive_size = std::fs::metadata(&honest).unwrap().len();
    assert!(
        archive_size < 1 << 20,
        "the archive is small ({archive_size} bytes)"
    );
    let baseline = small.used();
    for (archive, needle) in [
        (
            &lying,
            "the archive holds 8388608 bytes, the manifest says 100",
        ),
        (&lying_big, "needs 512.0 MiB"),
        (&honest, "needs 512.0 MiB"),
    ] {
        let dest = small.0.join("out");
        let child = Command::new(AGENT)
            .args([
                "import",
                archive.to_str().unwrap(),
                "--dir",
                dest.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut peak = 0;
        let mut child = child;
        while child.try_wait().unwrap().is_none() {
            peak = peak.max(small.used());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            peak <= baseline + (64 << 10),
            "the import wrote {} bytes before refusing",
            peak - baseline
        );
        assert!(
            files_under(&small.0).is_empty(),
            "left behind: {:?}",
            files_under(&small.0)
        );
        assert_eq!(std::fs::read_dir(&small.0).unwrap().count(), 0);
    }
}
