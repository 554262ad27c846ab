//! Flags of `taskscope serve` (the web view, issue 16) and what the
//! server is asked.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::error::Outcome;
use crate::serve;

/// Flags of `taskscope serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The agent's output directory (or an imported archive)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/taskscope")]
    pub dir: PathBuf,

    /// Address and port to listen on; anything but a loopback address
    /// needs --token-file (or TASKSCOPE_SERVE_TOKEN). Port 0 picks a free
    /// port (printed on stdout)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// File whose first line is the token every request must carry
    /// (Authorization: Bearer TOKEN, or a first visit with ?token=TOKEN,
    /// which sets a cookie); at least 16 printable characters
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate (chain); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    pub fn request(&self) -> serve::Request {
        serve::Request {
            dir: self.dir.clone(),
            listen: self.listen,
            token_file: self.token_file.clone(),
            token_env: std::env::var(serve::TOKEN_ENV)
                .ok()
                .filter(|t| !t.is_empty()),
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
        }
    }
}

/// `taskscope serve`: until interrupted.
pub fn serve(args: &ServeArgs) -> Result<Outcome> {
    serve::run(&args.request())?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::Command;

    #[test]
    fn serve_flags() {
        match parse(&["serve", "--dir", "/d"]).unwrap().command {
            Command::Serve(args) => {
                assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
                assert!(args.token_file.is_none());
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["serve", "--listen", "0.0.0.0:9000", "--token-file", "/t"])
            .unwrap()
            .command
        {
            Command::Serve(args) => assert_eq!(args.listen.port(), 9000),
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["serve", "--listen", "localhost"]).is_err());
    }
}
