//! HTTPS for `serve --tls-cert FILE --tls-key FILE`: rustls (the ring
//! provider the shipper's HTTP client already links) in front of the same
//! router. A listener beyond loopback carries the token on every request;
//! with TLS it and the data cross the network encrypted, and the token's
//! cookie is `Secure`.
//!
//! Connections are served by hyper's HTTP/1 server over the TLS stream, as
//! `axum::serve` serves plain TCP. A client that does not finish its
//! handshake within [`HANDSHAKE_TIME`] is dropped, so idle sockets cannot
//! pile up; a failed handshake (a plain-HTTP request, an untrusted
//! certificate on the client's side) is logged at debug level and costs
//! nothing else.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::debug;

use crate::error::Usage;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// The server's TLS configuration from a PEM certificate chain and its PEM
/// private key (PKCS#8, PKCS#1 or SEC1); each problem is one line naming
/// the file.
pub fn config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|err| {
            Usage(format!(
                "cannot read the TLS {what} {}: {err}",
                path.display()
            ))
        })
    };
    let cert_pem = read(cert, "certificate")?;
    let key_pem = read(key, "key")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            Usage(format!(
                "--tls-cert {}: not a PEM certificate chain: {err}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Usage(format!(
            "--tls-cert {}: no certificate in the file (PEM, BEGIN CERTIFICATE)",
            cert.display()
        ))
        .into());
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
        Usage(format!(
            "--tls-key {}: no PEM private key in the file: {err}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|err| {
            Usage(format!(
                "--tls-cert {} / --tls-key {}: {err}",
                cert.display(),
                key.display()
            ))
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serve `router` over TLS on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait, as axum does.
                debug!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIME, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!("TLS handshake with {peer} failed: {err}");
                    return;
                }
                Err(_) => {
                    debug!("TLS handshake with {peer} timed out");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                debug!("connection from {peer}: {err}");
            }
        });
    }
}
