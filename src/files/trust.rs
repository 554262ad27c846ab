//! What the root agent trusts: a path only root (or the user running
//! taskscope) can change, in directories only they can change.
//!
//! One rule for everything the agent reads its orders from or writes into
//! (the output directory, the settings file): the object is owned by the
//! user running taskscope and writable by nobody else ([`check_private`]),
//! and every directory above it, symlinks resolved, is owned by root or
//! that user and not writable by others unless sticky, like /tmp
//! ([`check_ancestors`]). Whoever could change one of those could redirect
//! what the agent writes and deletes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// What to do about an output directory that cannot be used safely: a
/// directory of its own, never a change to a shared one (`chmod go-w /tmp`
/// would break the machine).
pub const USE_INSTEAD: &str = "give a directory of its own that only root can write, such as \
    /var/lib/taskscope, or a new name in /tmp such as /tmp/taskscope (taskscope creates it, \
    owned by root)";

/// The directories above `object` (after resolving symlinks on the way):
/// nobody but root or the user running taskscope may be able to move
/// things in them, or `subject` could be swapped under the agent. Sticky
/// directories such as /tmp are fine: others cannot rename or remove
/// entries they do not own there. The one ancestry rule for everything the
/// root agent trusts: the output directory and the settings file.
pub fn check_ancestors(subject: &str, object: &Path, advice: &str) -> Result<()> {
    let owner = rustix::process::geteuid().as_raw();
    let resolved = std::fs::canonicalize(object)
        .with_context(|| format!("cannot inspect {}", object.display()))?;
    for ancestor in resolved.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .with_context(|| format!("cannot inspect {}", ancestor.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 && meta.uid() != owner {
            bail!(
                "{subject} is inside {}, which is owned by uid {}: another user could redirect what the agent reads and writes; {advice}",
                ancestor.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 && !sticky {
            bail!(
                "{subject} is inside {}, which other users can write to (mode {:04o}); {advice}",
                ancestor.display(),
                meta.mode() & 0o7777
            );
        }
    }
    Ok(())
}

/// `path` itself: owned by `owner`, writable by nobody else.
pub fn check_private(path: &Path, uid: u32, mode: u32, owner: u32, what: &str) -> Result<()> {
    if uid != owner {
        bail!(
            "{what} {} is owned by uid {uid}, not by the user running taskscope ({owner}); \
             {USE_INSTEAD}",
            path.display()
        );
    }
    if mode & 0o022 != 0 {
        let shared = if mode & 0o1000 != 0 {
            " (it is a shared directory, sticky like /tmp)"
        } else {
            ""
        };
        bail!(
            "{what} {} is writable by other users (mode {:04o}){shared}; {USE_INSTEAD}",
            path.display(),
            mode & 0o7777,
        );
    }
    Ok(())
}
