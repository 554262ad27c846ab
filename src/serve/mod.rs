//! `taskscope serve`: a read-only web view of the data directory — the Top
//! Activity chart (average active threads over time, stacked by wait
//! class), and for a selected sub-window its top groups, threads,
//! blockers, latency histograms, a flame graph and a thread's timeline.
//!
//! The decision a reader must know: this is a view over `report`, not a
//! second reader. Every endpoint (`api`) answers with report's own
//! functions for the window and filter in its query string (`params`), so
//! the page and `taskscope report` cannot disagree. The page's files are
//! built into the binary (`assets`); nothing is read from disk but the
//! data directory, nothing is written, and `guard` checks the method and
//! the token and sets the security headers on every response. It binds
//! loopback unless given another address and a token. A live page polls
//! `changes` (a token from directory entries and sizes) every second and
//! asks the endpoints again only when it changed.

mod api;
mod assets;
mod changes;
mod chart;
mod flame_policy;
mod guard;
mod params;
mod stacks;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;

use crate::error::Usage;

pub use api::{QUERIES, QUERY_TIME};
pub use chart::{bucket_for, MAX_POINTS};

/// Environment variable that may hold the token instead of `--token-file`.
pub const TOKEN_ENV: &str = "TASKSCOPE_SERVE_TOKEN";

/// What `taskscope serve` is asked (made from its flags by `cli`).
#[derive(Debug, Clone)]
pub struct Request {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// A file holding the token (its first line).
    pub token_file: Option<PathBuf>,
    /// The token from [`TOKEN_ENV`], when set.
    pub token_env: Option<String>,
    /// HTTPS with this PEM certificate chain and private key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// What every handler shares.
pub struct Shared {
    pub dir: PathBuf,
    pub hostname: String,
    /// Required on every request when set.
    pub token: Option<String>,
    /// The query slots (`api::bounded`).
    pub queries: Arc<tokio::sync::Semaphore>,
    /// Served over HTTPS (the token's cookie is then `Secure`).
    pub tls: bool,
}

/// The token the request names, checked; a usage error (exit 2) when a
/// non-loopback address has none.
fn token(request: &Request) -> Result<Option<String>> {
    let token = match (&request.token_file, &request.token_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                Usage(format!(
                    "cannot read the token file {}: {err}",
                    path.display()
                ))
            })?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        (None, Some(value)) => Some(value.trim().to_string()),
        (None, None) => None,
    };
    if let Some(token) = &token {
        guard::check_token(token).map_err(|reason| Usage(format!("--token-file: {reason}")))?;
    }
    if token.is_none() && !request.listen.ip().is_loopback() {
        return Err(Usage(format!(
            "--listen {} is not a loopback address: give --token-file FILE (or set {TOKEN_ENV}) so that only holders of the token can read the data",
            request.listen
        ))
        .into());
    }
    Ok(token)
}

/// The router over `shared` (also for tests).
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .route("/api/info", get(api::info))
        .route("/api/changes", get(changes::changes))
        .route("/api/cpus", get(api::cpus_now))
        .route("/api/activity", get(api::activity))
        .route("/api/overview", get(api::overview))
        .route("/api/top", get(api::top))
        .route("/api/threads", get(api::threads))
        .route("/api/blockers", get(api::blockers))
        .route("/api/latency", get(api::latency))
        .route("/api/thread", get(api::thread))
        .route("/api/stacks", get(api::stacks))
        .route("/api/flame.svg", get(api::flame_svg))
        .fallback(|| async { api::error(axum::http::StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            guard::guard,
        ))
        .with_state(shared)
}

/// `taskscope serve`: until interrupted.
pub fn run(request: &Request) -> Result<()> {
    let token = token(request)?;
    if !request.dir.is_dir() {
        return Err(Usage(format!(
            "{} is not a directory (the agent's output directory, --dir)",
            request.dir.display()
        ))
        .into());
    }
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let shared = Arc::new(Shared {
        dir: request.dir.clone(),
        hostname,
        token,
        queries: Arc::new(tokio::sync::Semaphore::new(QUERIES)),
        tls: request.tls.is_some(),
    });
    let tls = match &request.tls {
        Some((cert, key)) => Some(tls::config(cert, key)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(QUERIES * 2)
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(request.listen)
            .await
            .with_context(|| format!("cannot listen on {}", request.listen))?;
        let address = listener.local_addr()?;
        // One line on stdout (tests and scripts read the port from it).
        println!(
            "taskscope: serving {} on {}://{address}/{}",
            request.dir.display(),
            if tls.is_some() { "https" } else { "http" },
            if shared.token.is_some() {
                " (token required)"
            } else {
                ""
            }
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // Until SIGINT or SIGTERM (their default action: nothing to save).
        match tls {
            Some(config) => tls::serve(listener, router(shared), config).await,
            None => axum::serve(listener, router(shared))
                .await
                .context("the server failed"),
        }
    })
}
