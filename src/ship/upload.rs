//! Copy one published file to its object, idempotently and atomically.
//!
//! Every object carries the SHA-256 of its bytes as user metadata
//! (`x-amz-meta-sha256`). Before sending, the object is looked up
//! (HEAD): one with the same size and SHA-256 is already shipped (a run
//! that stopped between the upload and the ledger line) and is not sent
//! again; one with other content is never overwritten (it is reported,
//! and the file stays unshipped). A new object is written with
//! `If-None-Match: *` (object_store's `PutMode::Create`), so two writers
//! of one key cannot replace each other either.
//!
//! The decision a reader must know: readers never see part of an object.
//! Files up to [`SINGLE_PUT_MAX`] go in one PUT, which the store makes
//! visible only when complete (and, with the SHA-256 checksum header
//! object_store sends, only if the bytes arrived intact); larger ones go
//! as a multipart upload, visible only once completed and aborted on any
//! error. A process killed mid-upload leaves no object; its incomplete
//! multipart upload (invisible to readers, but its parts take space) is
//! aborted by the next run, which finds it in `uploads`.

use std::io::Read;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, GetOptions, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult,
};
use sha2::{Digest, Sha256};

use super::client::Store;
use super::queue::Pending;
use super::uploads::Uploads;

/// Largest file sent in one PUT (S3 allows 5 GiB; this bounds memory).
pub const SINGLE_PUT_MAX: u64 = 64 << 20;
/// Part size of larger files.
const PART_SIZE: usize = 16 << 20;
/// The user metadata key of the SHA-256 (`x-amz-meta-sha256`).
const SHA256_KEY: &str = "sha256";

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shipped {
    /// Uploaded now; the ETag the store returned.
    Sent { etag: String },
    /// Already there with the same content.
    AlreadyThere { etag: String },
    /// Another object with other content has the key: not overwritten.
    Conflict { size: u64, sha256: Option<String> },
}

/// Size and SHA-256 (hex) of a file, read through.
fn digest(mut file: impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

/// The size and SHA-256 metadata of the object at `key`, if there is one.
async fn existing(
    store: &dyn Store,
    key: &ObjectPath,
) -> object_store::Result<Option<(u64, Option<String>, String)>> {
    let options = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    match store.get_opts(key, options).await {
        Ok(found) => {
            let sha = found
                .attributes
                .get(&Attribute::Metadata(SHA256_KEY.into()))
                .map(|v| v.to_string());
            Ok(Some((
                found.meta.size,
                sha,
                found.meta.e_tag.unwrap_or_default(),
            )))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Ship `file` of `out` to `key`.
pub async fn ship(
    store: &dyn Store,
    out: &OwnedFd,
    file: &Pending,
    key: &str,
    uploads: &mut Uploads<'_>,
) -> Result<(Shipped, u64)> {
    let key = ObjectPath::parse(key).with_context(|| format!("bad object key {key}"))?;
    let (size, sha256) = digest(
        file.open(out)
            .with_context(|| format!("cannot open {}", file.relative))?,
    )
    .with_context(|| format!("cannot read {}", file.relative))?;
    let same = |found_size: u64, found_sha: &Option<String>| {
        found_size == size && found_sha.as_deref() == Some(sha256.as_str())
    };
    if let Some((found_size, found_sha, etag)) = existing(store, &key).await? {
        return Ok(if same(found_size, &found_sha) {
            (Shipped::AlreadyThere { etag }, size)
        } else {
            (
                Shipped::Conflict {
                    size: found_size,
                    sha256: found_sha,
                },
                size,
            )
        });
    }
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata(SHA256_KEY.into()),
        sha256.clone().into(),
    );
    let mut reader = file
        .open(out)
        .with_context(|| format!("cannot open {}", file.relative))?;
    let result = if size <= SINGLE_PUT_MAX {
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", file.relative))?;
        let options = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..PutOptions::default()
        };
        match store.put_opts(&key, PutPayload::from(bytes), options).await {
            Ok(put) => put,
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                // Written meanwhile by someone else: same content or not?
                return Ok(match existing(store, &key).await? {
                    Some((found_size, found_sha, etag)) if same(found_size, &found_sha) => {
                        (Shipped::AlreadyThere { etag }, size)
                    }
                    Some((found_size, found_sha, _)) => (
                        Shipped::Conflict {
                            size: found_size,
                            sha256: found_sha,
                        },
                        size,
                    ),
                    None => anyhow::bail!(
                        "{key}: the store refused to create it but has no such object"
                    ),
                });
            }
            Err(err) => return Err(err.into()),
        }
    } else {
        multipart(store, &key, reader, attributes, uploads).await?
    };
    Ok((
        Shipped::Sent {
            etag: result.e_tag.unwrap_or_default(),
        },
        size,
    ))
}

/// Send `reader` to `key` as a multipart upload, recorded in `uploads`
/// from its creation until it is completed or aborted.
async fn multipart(
    store: &dyn Store,
    key: &ObjectPath,
    mut reader: impl Read,
    attributes: Attributes,
    uploads: &mut Uploads<'_>,
) -> Result<PutResult> {
    let options = PutMultipartOptions {
        attributes,
        ..PutMultipartOptions::default()
    };
    let id = store.create_multipart_opts(key, options).await?;
    if let Err(err) = uploads.begin(&id, key.as_ref()) {
        let _ = store.abort_multipart(key, &id).await;
        return Err(err);
    }
    let sent: Result<PutResult> = async {
        let mut parts = Vec::new();
        let mut chunk = vec![0u8; PART_SIZE];
        loop {
            let mut filled = 0;
            while filled < PART_SIZE {
                let n = reader.read(&mut chunk[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let payload = PutPayload::from(chunk[..filled].to_vec());
            parts.push(store.put_part(key, &id, parts.len(), payload).await?);
            if filled < PART_SIZE {
                break;
            }
        }
        Ok(store.complete_multipart(key, &id, parts).await?)
    }
    .await;
    match sent {
        Ok(put) => {
            uploads.end(&id)?;
            Ok(put)
        }
        Err(err) => {
            // Left in `uploads` if the abort did not go through: the
            // next pass aborts it.
            if store.abort_multipart(key, &id).await.is_ok() {
                uploads.end(&id)?;
            }
            Err(err)
        }
    }
}
