//! Reading the settings file as the root agent trusts it: whoever can
//! edit it decides what the agent writes and deletes (`output-dir`,
//! `max-disk`), so it is read only if nobody else could have changed it
//! (`files::trust`, the rule the output directory follows too).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

/// Read the settings file, trusting it as the output directory is
/// trusted: whoever can edit it decides what the agent writes and deletes
/// (`output-dir`, `max-disk`), so it must be a regular file (not a
/// symlink) owned by root or the user running taskscope, writable by
/// nobody else, in directories only they can change
/// (`files::trust::check_ancestors`). It is checked through the descriptor
/// it is then read from.
pub fn read(path: &Path) -> Result<String> {
    use std::io::Read;
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    );
    let fd = match fd {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => bail!(
            "settings file {} is a symlink; taskscope runs as root and does not follow it \
             (give the real path)",
            path.display()
        ),
        Err(err) => {
            return Err(std::io::Error::from(err))
                .with_context(|| format!("cannot read settings file {}", path.display()))
        }
    };
    let st = rustix::fs::fstat(&fd)
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot read settings file {}", path.display()))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        bail!("settings file {} is not a regular file", path.display());
    }
    let euid = rustix::process::geteuid().as_raw();
    let owner = if st.st_uid == 0 { 0 } else { euid };
    let what = "settings file";
    crate::files::trust::check_private(path, st.st_uid, st.st_mode, owner, what).map_err(
        |err| {
            anyhow!(
            "{err:#}: taskscope runs as root and takes no settings from a file others can change"
        )
        },
    )?;
    crate::files::trust::check_ancestors(
        &format!("settings file {}", path.display()),
        path,
        "keep it where only root can change it (for example /etc/taskscope/)",
    )?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read settings file {}", path.display()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::cli::settings::tests::{file, run_args};
    use crate::cli::ParseFailure;

    #[test]
    fn missing_or_world_writable_files_are_refused() {
        let err = match run_args(&["run", "--config", "/nonexistent/taskscope.toml"]) {
            Err(ParseFailure::Settings(err)) => format!("{err:#}"),
            _ => panic!("accepted a missing file"),
        };
        assert!(err.starts_with("cannot read settings file /nonexistent/taskscope.toml"));
        let (_dir, path) = file("all = true\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = match run_args(&["run", "--config", &path]) {
            Err(ParseFailure::Settings(err)) => format!("{err:#}"),
            _ => panic!("accepted a world-writable file"),
        };
        assert!(err.contains("writable by other users"), "{err}");
    }

    /// The error for `path`, which must be refused.
    fn refused(path: &Path) -> String {
        match run_args(&["run", "--config", path.to_str().unwrap()]) {
            Err(ParseFailure::Settings(err)) => format!("{err:#}"),
            Err(ParseFailure::Clap(err)) => panic!("clap error: {err}"),
            Ok(_) => panic!("trusted {}", path.display()),
        }
    }

    #[test]
    fn files_others_can_change_are_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let set_mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let nobody = Some(rustix::fs::Uid::from_raw(65534));
        let base = tempfile::tempdir().unwrap();
        set_mode(base.path(), 0o755);
        let conf = base.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        let settings = conf.join("taskscope.toml");
        std::fs::write(&settings, "frequency = 7\n").unwrap();
        set_mode(&settings, 0o644);
        let trusted = |path: &Path| match run_args(&["run", "--config", path.to_str().unwrap()]) {
            Ok(run) => assert_eq!(run.frequency, 7),
            Err(ParseFailure::Settings(err)) => panic!("{err:#}"),
            Err(ParseFailure::Clap(err)) => panic!("{err}"),
        };
        trusted(&settings);
        // Group-writable.
        set_mode(&settings, 0o664);
        assert!(refused(&settings).contains("writable by other users"));
        set_mode(&settings, 0o644);
        // Owned by another user.
        rustix::fs::chown(&settings, nobody, None).unwrap();
        assert!(refused(&settings).contains("owned by uid 65534"));
        rustix::fs::chown(&settings, Some(rustix::fs::Uid::ROOT), None).unwrap();
        // A symlink to a good file.
        let link = base.path().join("link.toml");
        std::os::unix::fs::symlink(&settings, &link).unwrap();
        assert!(refused(&link).contains("is a symlink"));
        // Its directory writable by others, or owned by another user.
        set_mode(&conf, 0o777);
        let err = refused(&settings);
        assert!(err.contains("which other users can write to"), "{err}");
        set_mode(&conf, 0o775);
        assert!(refused(&settings).contains("which other users can write to"));
        set_mode(&conf, 0o755);
        rustix::fs::chown(&conf, nobody, None).unwrap();
        assert!(refused(&settings).contains("owned by uid 65534"));
        rustix::fs::chown(&conf, Some(rustix::fs::Uid::ROOT), None).unwrap();
        // Higher up: the rule holds for every ancestor.
        set_mode(base.path(), 0o777);
        assert!(refused(&settings).contains("which other users can write to"));
        // A sticky directory (like /tmp) is fine: others cannot rename or
        // replace what root owns there.
        set_mode(base.path(), 0o1777);
        trusted(&settings);
        set_mode(&conf, 0o1777);
        trusted(&settings);
    }
}
