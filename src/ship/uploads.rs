//! The multipart uploads the shipper began and has not seen end:
//! `<output-dir>/.shipping-uploads`, so an upload cut by a crash (or a
//! kill) is aborted by the next run instead of keeping its parts in the
//! bucket until a lifecycle rule removes them.
//!
//! ```text
//! # taskscope multipart uploads v1
//! <upload id> <object key>
//! ```
//!
//! The decision a reader must know: an upload is written here (the whole
//! file written beside it, made durable, renamed over it) after the store
//! gave its id and before its first part is sent, and leaves only when it
//! was completed or aborted. So the only upload this can miss is one whose
//! creation answered but whose line never reached the disk: it holds no
//! part. S3 has a call to list a bucket's uploads, but object_store does
//! not expose it, and listing would also find other writers' uploads; this
//! file names only the agent's own.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};

use crate::files::at;

/// Name of the file in the output directory.
pub const UPLOADS: &str = ".shipping-uploads";
/// Its first line.
const HEADER: &str = "# taskscope multipart uploads v1";
/// Mode: it names objects, nothing secret.
const MODE: u32 = 0o644;

/// One upload begun and not seen end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begun {
    pub id: String,
    pub key: String,
}

/// The uploads of one output directory.
pub struct Uploads<'a> {
    out: &'a OwnedFd,
    begun: Vec<Begun>,
}

impl<'a> Uploads<'a> {
    /// Read the uploads of `out` (none if there is no file).
    pub fn open(out: &'a OwnedFd) -> Result<Uploads<'a>> {
        let mut text = String::new();
        match at::open_file(out, UPLOADS) {
            Ok(mut file) => {
                file.read_to_string(&mut text)
                    .with_context(|| format!("cannot read {UPLOADS}"))?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot open {UPLOADS}")),
        }
        Ok(Uploads {
            out,
            begun: parse(&text),
        })
    }

    /// Uploads earlier passes or runs began and did not end.
    pub fn begun(&self) -> &[Begun] {
        &self.begun
    }

    /// Record that upload `id` of `key` began, durably.
    pub fn begin(&mut self, id: &str, key: &str) -> Result<()> {
        self.begun.push(Begun {
            id: id.to_string(),
            key: key.to_string(),
        });
        self.save()
    }

    /// Record that upload `id` ended (completed or aborted).
    pub fn end(&mut self, id: &str) -> Result<()> {
        let before = self.begun.len();
        self.begun.retain(|b| b.id != id);
        if self.begun.len() == before {
            return Ok(());
        }
        self.save()
    }

    fn save(&self) -> Result<()> {
        if self.begun.is_empty() {
            return match at::remove_file(self.out, UPLOADS) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(err).with_context(|| format!("cannot remove {UPLOADS}")),
            };
        }
        let tmp = format!("{UPLOADS}.new");
        match at::remove_file(self.out, &tmp) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot remove {tmp}")),
        }
        let mut file = at::create_file(self.out, &tmp, MODE)
            .with_context(|| format!("cannot create {tmp}"))?;
        let mut text = format!("{HEADER}\n");
        for begun in &self.begun {
            text.push_str(&format!("{} {}\n", begun.id, begun.key));
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {tmp}"))?;
        rustix::fs::renameat(self.out, &tmp, self.out, UPLOADS)
            .and_then(|()| rustix::fs::fsync(self.out))
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot replace {UPLOADS}"))?;
        Ok(())
    }
}

/// The uploads listed in `text` (a file without the header lists none).
fn parse(text: &str) -> Vec<Begun> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Vec::new();
    }
    lines
        .filter_map(|line| {
            let (id, key) = line.split_once(' ')?;
            (!id.is_empty() && !key.is_empty()).then(|| Begun {
                id: id.to_string(),
                key: key.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begun_uploads_survive_a_reopen_and_ended_ones_leave() {
        let dir = tempfile::tempdir().unwrap();
        let out = at::open_dir(dir.path()).unwrap();
        let mut uploads = Uploads::open(&out).unwrap();
        assert!(uploads.begun().is_empty());
        uploads.begin("id-1", "agents/samples/a.parquet").unwrap();
        uploads.begin("id-2", "agents/ticks/b.parquet").unwrap();
        let text = std::fs::read_to_string(dir.path().join(UPLOADS)).unwrap();
        assert_eq!(
            text,
            format!("{HEADER}\nid-1 agents/samples/a.parquet\nid-2 agents/ticks/b.parquet\n")
        );
        let mut again = Uploads::open(&out).unwrap();
        assert_eq!(again.begun().len(), 2);
        again.end("id-1").unwrap();
        again.end("unknown").unwrap();
        assert_eq!(
            Uploads::open(&out).unwrap().begun(),
            &[Begun {
                id: "id-2".into(),
                key: "agents/ticks/b.parquet".into()
            }]
        );
        again.end("id-2").unwrap();
        assert!(
            !dir.path().join(UPLOADS).exists(),
            "an empty list is no file"
        );
        assert!(!dir.path().join(format!("{UPLOADS}.new")).exists());
        // Not ours (no header): nothing to abort.
        assert!(parse("abc def\n").is_empty());
    }
}
