//! The destination (`s3://bucket/prefix`) and the S3 client for it.
//!
//! Credentials and the endpoint come the way every AWS client takes
//! them: first the environment, through `object_store`'s
//! `AmazonS3Builder::from_env` (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
//! `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`, all endpoints off with
//! `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`); then the profile
//! `AWS_PROFILE` (or `default`) of the AWS shared files, for what the
//! environment does not say (see `profile`); then object_store's own chain:
//! web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), ECS
//! container credentials, and otherwise the EC2 instance metadata service.
//!
//! The decision a reader must know: plain http is allowed only to an
//! endpoint given explicitly (`AWS_ENDPOINT_URL=http://…`, or an
//! `endpoint_url` in the profile), never by `AWS_ALLOW_HTTP` alone, so a
//! mistyped setting cannot send data and signatures unencrypted to AWS's
//! own endpoints. Every request is retried a bounded number of times with
//! exponential backoff (object_store's `RetryConfig`); the shipper adds its
//! own backoff between passes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::multipart::MultipartStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::profile::{self, ENDPOINT_VARIABLES};

/// Where published files go: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// As given, without a trailing `/`: the shipped ledger's header.
    pub url: String,
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl Destination {
    /// Parse `--ship-to`.
    pub fn parse(url: &str) -> Result<Destination> {
        let Some(rest) = url.strip_prefix("s3://") else {
            bail!("--ship-to {url}: give an S3 URL, s3://bucket/prefix (set AWS_ENDPOINT_URL for another S3-compatible store)");
        };
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            bail!("--ship-to {url}: '{bucket}' is not a valid bucket name (3 to 63 lowercase letters, digits, '-' and '.')");
        }
        let prefix_ok = prefix
            .split('/')
            .all(|part| part != "." && part != ".." && !part.contains(['\\', '*', '?', '\n', '=']))
            && !prefix.contains("//");
        if !prefix.is_empty() && !prefix_ok {
            bail!("--ship-to {url}: the prefix '{prefix}' may not contain empty, '.' or '..' parts, '=', '*', '?' or '\\'");
        }
        Ok(Destination {
            url: format!("s3://{rest}"),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// What the shipper needs of the store: objects, and multipart uploads
/// by id (so that an upload a crash cut can be aborted by the next run).
pub trait Store: ObjectStore + MultipartStore {}

impl<T: ObjectStore + MultipartStore> Store for T {}

/// The endpoint given explicitly in the environment, if any.
fn explicit_endpoint() -> Option<String> {
    ENDPOINT_VARIABLES
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// `AmazonS3Builder::from_env`, without the endpoint variables
/// (`AWS_ENDPOINT…`) when `ignore_endpoints`.
fn builder_from_env(ignore_endpoints: bool) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new();
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if !name.starts_with("AWS_") || (ignore_endpoints && name.starts_with("AWS_ENDPOINT")) {
            continue;
        }
        if let Ok(key) = name.to_ascii_lowercase().parse() {
            builder = builder.with_config(key, value);
        }
    }
    builder
}

/// The S3 client for `destination`, configured from the environment and
/// the AWS profile.
pub fn connect(destination: &Destination) -> Result<Arc<dyn Store>> {
    // rustls needs one crypto provider for the process: ring (no C
    // toolchain for aws-lc). Installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let profile = profile::from_process_environment()?;
    let endpoint = if profile.ignore_endpoints {
        None
    } else {
        explicit_endpoint().or(profile.endpoint_url)
    };
    let allow_http = endpoint
        .as_deref()
        .is_some_and(|url| url.starts_with("http://"));
    // Client options first: they replace every client option set before.
    let mut builder = builder_from_env(profile.ignore_endpoints)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(300)),
        )
        .with_bucket_name(&destination.bucket)
        .with_allow_http(allow_http)
        .with_checksum_algorithm(Checksum::SHA256)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        });
    if let Some(url) = &endpoint {
        builder = builder.with_endpoint(url);
    }
    if let (Some(key), Some(secret)) = (profile.access_key_id, profile.secret_access_key) {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret);
        if let Some(token) = profile.session_token {
            builder = builder.with_token(token);
        }
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        builder = builder.with_region(profile.region.as_deref().unwrap_or("us-east-1"));
    }
    let store = builder
        .build()
        .with_context(|| format!("cannot set up the S3 client for {}", destination.url))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_bad_ones_say_why() {
        let d = Destination::parse("s3://fleet-data/agents/v1/").unwrap();
        assert_eq!(
            (d.url.as_str(), d.bucket.as_str(), d.prefix.as_str()),
            ("s3://fleet-data/agents/v1", "fleet-data", "agents/v1")
        );
        let d = Destination::parse("s3://fleet").unwrap();
        assert_eq!((d.bucket.as_str(), d.prefix.as_str()), ("fleet", ""));
        for bad in [
            "https://x/y",
            "s3://",
            "s3://Upper/x",
            "s3://ok-bucket/a//b",
            "s3://ok-bucket/../b",
            "s3://ok-bucket/host=x",
        ] {
            let err = Destination::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("--ship-to "), "{bad}: {err}");
        }
    }
}
