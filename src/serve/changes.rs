//! `/api/changes`: whether the data directory changed, for the live page
//! to poll every second and read the files again only when it did.
//!
//! The decision a reader must know: the answer is the store's
//! [`version`](crate::store::catalog::version) token — directory entries
//! and sizes, never a file's contents — so it takes no query slot (a
//! poll must not queue behind a slow chart) and costs about one `stat`
//! per hour directory. It takes no parameters: any but `token` is a 400.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api::error;
use super::Shared;
use crate::store::catalog;

/// `{"version": "<16 hex digits>", "entries": N}`: equal versions, same
/// data; `entries` is how many directories and journals were looked at.
pub async fn changes(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(name) = params.keys().find(|k| k.as_str() != "token") {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("unknown parameter '{name}' (/api/changes takes none)"),
        );
    }
    let dir = shared.dir.clone();
    match tokio::task::spawn_blocking(move || catalog::version(&dir)).await {
        Ok(version) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json!({
                "version": format!("{:016x}", version.token),
                "entries": version.entries,
            })
            .to_string(),
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the directory could not be looked at (a thread panicked)",
        ),
    }
}
