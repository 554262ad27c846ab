//! What left the host: the ledger of published files copied to object
//! storage (`run --ship-to`), and where each file goes in the bucket.
//!
//! The ledger is `<output-dir>/.shipped`, one line per shipped file,
//! appended after the store confirmed the object:
//!
//! ```text
//! # taskscope shipped v1 s3://bucket/prefix
//! samples/date=2026-11-30/hour=12/web1-20261130T120000Z.parquet 81234 "5d41…"
//! ```
//!
//! (relative path, size, the object's ETag). The shipper (`ship`) writes
//! it; retention (`output::retention`) reads it so that it never deletes a
//! period that is not shipped unless the output directory is over
//! `--max-disk`. It lives here, in the format layer, because both read it.
//!
//! The decision a reader must know: a line is written only after the
//! object is complete in the store, and a reader ignores a last line
//! without its newline (an append cut by a crash), so the ledger may lack
//! a shipped file (it is then checked again and not re-sent, see `ship`)
//! but never lists one that is not in the store. A ledger whose header
//! names another destination lists nothing: those files go to the new one.
//!
//! In the bucket, a file keeps its name and gains a `host=` partition:
//! `<prefix>/<table>/date=YYYY-MM-DD/hour=HH/host=<host>/<file>`, the host
//! being the one in the file's name.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};

use crate::files::at;
use crate::store::layout::{CSV_EXT, PARQUET_EXT};

/// Name of the ledger in the output directory.
pub const LEDGER: &str = ".shipped";
/// First words of the ledger's header line; the destination follows.
pub const HEADER: &str = "# taskscope shipped v1 ";

/// A ledger as read: its destination and the files it lists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shipped {
    pub destination: String,
    /// Relative path (`table/date=…/hour=…/name`) → the rest of its line
    /// (size and ETag).
    pub files: HashMap<String, String>,
}

/// Parse ledger text; `None` if it has no valid header.
pub fn parse(text: &str) -> Option<Shipped> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => return None,
    };
    let mut lines = complete.lines();
    let destination = lines.next()?.strip_prefix(HEADER)?.trim().to_string();
    let files = lines
        .filter_map(|line| {
            let (path, rest) = line.split_once(' ').unwrap_or((line, ""));
            (!path.is_empty()).then(|| (path.to_string(), rest.to_string()))
        })
        .collect();
    Some(Shipped { destination, files })
}

/// The ledger line of a shipped file.
pub fn line(relative: &str, size: u64, etag: &str) -> String {
    format!("{relative} {size} {etag}\n")
}

/// Read the ledger of `out` (never through a symlink); an empty one if
/// there is none.
pub fn read(out: &OwnedFd) -> Result<Shipped> {
    let mut file = match at::open_file(out, LEDGER) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Shipped::default()),
        Err(err) => return Err(err).with_context(|| format!("cannot open {LEDGER}")),
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {LEDGER}"))?;
    Ok(parse(&text).unwrap_or_default())
}

/// The files of `destination` that the ledger of `out` lists (none if
/// the ledger is for another destination).
pub fn shipped_to(out: &OwnedFd, destination: &str) -> Result<HashMap<String, String>> {
    let ledger = read(out)?;
    Ok(if ledger.destination == destination {
        ledger.files
    } else {
        HashMap::new()
    })
}

/// The host a published file's name starts with:
/// `<host>-YYYYMMDDTHHMMSSZ[-N].<ext>`.
pub fn host_of(name: &str) -> Option<&str> {
    let base = name
        .strip_suffix(&format!(".{PARQUET_EXT}"))
        .or_else(|| name.strip_suffix(&format!(".{CSV_EXT}")))?;
    let base = match base.rsplit_once('-') {
        Some((rest, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => base,
    };
    // "-" + "YYYYMMDDTHHMMSSZ".
    let cut = base.len().checked_sub(17)?;
    let (host, stamp) = (base.get(..cut)?, base.get(cut..)?);
    let valid_stamp = stamp.len() == 17
        && stamp.starts_with('-')
        && stamp.ends_with('Z')
        && stamp.as_bytes()[9] == b'T';
    (valid_stamp && !host.is_empty()).then_some(host)
}

/// The object key of published file `table/date=…/hour=…/name` under
/// `prefix` (no leading or trailing `/`; may be empty).
pub fn object_key(prefix: &str, relative: &str) -> Option<String> {
    let mut parts = relative.split('/');
    let (table, date, hour, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !date.starts_with("date=") || !hour.starts_with("hour=") {
        return None;
    }
    let host = host_of(name)?;
    let key = format!("{table}/{date}/{hour}/host={host}/{name}");
    Some(if prefix.is_empty() {
        key
    } else {
        format!("{prefix}/{key}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_gain_the_host_partition() {
        assert_eq!(
            object_key(
                "fleet/agents",
                "samples/date=2026-11-30/hour=12/web-1.eu-20261130T120000Z.parquet"
            )
            .as_deref(),
            Some("fleet/agents/samples/date=2026-11-30/hour=12/host=web-1.eu/web-1.eu-20261130T120000Z.parquet")
        );
        assert_eq!(
            object_key(
                "",
                "ticks/date=2026-11-30/hour=12/db-20261130T120000Z-2.csv.zst"
            )
            .as_deref(),
            Some("ticks/date=2026-11-30/hour=12/host=db/db-20261130T120000Z-2.csv.zst")
        );
        assert_eq!(
            object_key("p", "samples/x/hour=1/a-20261130T120000Z.parquet"),
            None
        );
        assert_eq!(object_key("p", "samples/date=1/hour=1/notes.txt"), None);
        assert_eq!(host_of("-20261130T120000Z.parquet"), None);
    }

    #[test]
    fn a_cut_last_line_and_another_destination_list_nothing_extra() {
        let text = format!(
            "{HEADER}s3://b/p\n{}{}t/date=1/hour=2/c",
            line("a", 1, "\"e\""),
            line("b", 2, "\"f\"")
        );
        let ledger = parse(&text).unwrap();
        assert_eq!(ledger.destination, "s3://b/p");
        assert_eq!(ledger.files.len(), 2);
        assert_eq!(ledger.files["b"], "2 \"f\"");
        assert!(ledger.files.contains_key("a"));
        assert_eq!(parse("no header\n"), None);
        assert_eq!(parse(&format!("{HEADER}s3://b/p")), None);
    }
}
