//! `serve --tls-cert --tls-key`: HTTPS with a certificate the test makes
//! with the openssl CLI, read by a real TLS client (rustls) that trusts
//! only that certificate; the token and its `Secure` cookie over it; a
//! plain-HTTP request and a client that does not trust the certificate get
//! nothing; bad certificate and key files are one-line usage errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{request, response_parts, Server};
use crate::support::*;

/// A certificate authority `name-ca.pem` and a server certificate it
/// signed for localhost / 127.0.0.1 (`name.pem`, key `name.key`) in
/// `dir`: (CA, certificate, key).
fn certificate(dir: &Path, name: &str) -> (String, String, String) {
    let path = |file: String| dir.join(file).to_str().expect("utf-8").to_string();
    let (ca, ca_key) = (
        path(format!("{name}-ca.pem")),
        path(format!("{name}-ca.key")),
    );
    let (cert, key, csr) = (
        path(format!("{name}.pem")),
        path(format!("{name}.key")),
        path(format!("{name}.csr")),
    );
    let ext = path(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    let curve = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for args in [
        [
            &["req", "-x509"][..],
            &curve,
            &["-days", "2", "-subj", "/CN=taskscope test CA"],
        ]
        .concat(),
        [&["req"][..], &curve, &["-subj", "/CN=localhost"]].concat(),
    ] {
        let is_ca = args.contains(&"-x509");
        let out = Command::new("openssl")
            .args(&args)
            .args(["-keyout", if is_ca { &ca_key } else { &key }])
            .args(["-out", if is_ca { &ca } else { &csr }])
            .output()
            .expect("run openssl (the openssl package)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }
    let out = Command::new("openssl")
        .args([
            "x509", "-req", "-days", "2", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key,
        ])
        .args(["-CAcreateserial", "-extfile", &ext, "-out", &cert])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl x509: {out:?}");
    (ca, cert, key)
}

/// One request over TLS to `port`, trusting only `ca` (a PEM file):
/// (status, head, body), or the client's error.
fn https(
    port: u16,
    ca: &str,
    target: &str,
    headers: &[&str],
) -> Result<(u16, String, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a certificate")).expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().expect("server name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(&request("GET", target, headers))
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // The server closes without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(response_parts(&response))
}

#[test]
fn serve_over_tls() {
    let scratch = scratch();
    let dir = scratch.path().to_str().expect("utf-8");
    let (ca, cert, key) = certificate(scratch.path(), "server");
    let (other_ca, _, other_key) = certificate(scratch.path(), "other");
    let token_file = scratch.path().join("token");
    let token = "tls-token-0123456789abcdef";
    std::fs::write(&token_file, format!("{token}\n")).expect("token");
    let token_file = token_file.to_str().expect("utf-8");

    // Bad flags and files: one line each, exit 2, nothing served.
    let missing = scratch.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8");
    for (args, says) in [
        (vec!["--tls-cert", cert.as_str()], "--tls-key"),
        (vec!["--tls-key", key.as_str()], "--tls-cert"),
        (
            vec!["--tls-cert", missing, "--tls-key", key.as_str()],
            missing,
        ),
        (
            vec!["--tls-cert", key.as_str(), "--tls-key", key.as_str()],
            "no certificate",
        ),
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", cert.as_str()],
            "no PEM private key",
        ),
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", other_key.as_str()],
            "--tls-key",
        ),
    ] {
        let mut all = vec!["serve", "--dir", dir, "--listen", "127.0.0.1:0"];
        all.extend(&args);
        let out = taskscope(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        if !says.starts_with("--tls-") || args.len() == 4 {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        }
    }
    // TLS does not replace the token beyond loopback.
    let out = taskscope(&[
        "serve",
        "--dir",
        dir,
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let server = Server::start(
        &[
            "--dir",
            dir,
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            token_file,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &[],
    );
    let port = server.port;
    let bearer = format!("Authorization: Bearer {token}");
    let (status, head, body) = https(port, &ca, "/api/info", &[&bearer]).expect("https");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(body.contains(dir), "{body}");
    let (status, _, _) = https(port, &ca, "/api/info", &[]).expect("https");
    assert_eq!(status, 401, "no token over TLS either");
    // The token's cookie is Secure over TLS.
    let (status, head, _) = https(port, &ca, &format!("/?token={token}"), &[]).expect("https");
    assert_eq!(status, 303, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("set-cookie: taskscope_token=") && lower.contains("; secure"),
        "{head}"
    );
    // A client that does not trust the certificate stops at the handshake.
    let err = https(port, &other_ca, "/api/info", &[&bearer]).expect_err("untrusted");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP to the TLS port: no HTTP answer, and the server goes on.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    plain
        .write_all(&request("GET", "/api/info", &[&bearer]))
        .expect("send");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains(dir),
        "plain HTTP got data: {}",
        String::from_utf8_lossy(&answer)
    );
    let (status, _, _) = https(port, &ca, "/api/info", &[&bearer]).expect("https");
    assert_eq!(status, 200, "served after the bad clients");
}
