//! What every request passes before a handler sees it: the method (GET
//! and HEAD only: there is nothing to write), the token when one is
//! required, and the security headers of every response.
//!
//! The decision a reader must know: the token travels as
//! `Authorization: Bearer TOKEN`, or — so a browser can open a link — as
//! `?token=TOKEN` on a first visit, which sets an HttpOnly, SameSite=Strict
//! cookie and redirects to the same URL without it (the token leaves the
//! address bar and the history). Comparisons take the same time whatever
//! the guess.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// Name of the cookie that carries the token.
const COOKIE: &str = "taskscope_token";

/// The page's policy: only this server's own scripts, styles, images and
/// frames (the flame graph's SVG, whose own response lets only its own
/// inline script run: `flame_policy`), no plugins, no form posts
/// elsewhere, and no one may frame the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// Method, token, headers.
pub async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let mut response = check(&shared, request, next).await;
    let headers = response.headers_mut();
    // A handler may set a stricter policy of its own (the flame graph).
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn check(shared: &Shared, request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = super::api::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: only GET and HEAD are served",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let Some(token) = shared.token.as_deref() else {
        return next.run(request).await;
    };
    if let Some(given) = query_token(request.uri().query()) {
        if !same(given.as_bytes(), token.as_bytes()) {
            return unauthorized();
        }
        // Set the cookie, and drop the token from the address.
        let rest: Vec<&str> = request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.starts_with("token="))
            .collect();
        let location = if rest.is_empty() {
            request.uri().path().to_string()
        } else {
            format!("{}?{}", request.uri().path(), rest.join("&"))
        };
        let secure = if shared.tls { "; Secure" } else { "" };
        let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}");
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let (Ok(location), Ok(cookie)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&cookie),
        ) {
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    if carried(request.headers(), token) {
        next.run(request).await
    } else {
        unauthorized()
    }
}

fn unauthorized() -> Response {
    super::api::error(
        StatusCode::UNAUTHORIZED,
        "a token is required: send Authorization: Bearer TOKEN, or open the page once with ?token=TOKEN",
    )
}

/// The raw `token=` value of a query string (tokens are printable ASCII
/// without `&`, checked at start-up, so no decoding is needed).
fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Whether the request carries `token` in its Authorization header or
/// cookie.
fn carried(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|given| same(given.trim().as_bytes(), token.as_bytes()));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")))
        .any(|given| same(given.as_bytes(), token.as_bytes()));
    bearer || cookie
}

/// Byte strings equal, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token read from a file or the environment: one line of printable
/// ASCII without spaces, `;`, `&` or `%` (it travels in a cookie and a URL
/// unencoded), at least 16 characters.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < 16 {
        return Err("the token is shorter than 16 characters".into());
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b";&%,\"\\".contains(&b))
    {
        return Err(
            "the token must be printable ASCII without spaces, quotes, backslashes or ; & % ,"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
        assert_eq!(query_token(Some("a=1&token=xyz&b=2")), Some("xyz"));
        assert_eq!(query_token(Some("a=1")), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; taskscope_token=0123456789abcdef"),
        );
        assert!(carried(&headers, "0123456789abcdef"));
        assert!(!carried(&headers, "0123456789abcdeX"));
        assert!(check_token("0123456789abcdef").is_ok());
        assert!(check_token("short").is_err());
        assert!(check_token("0123456789abcdef;x").is_err());
    }
}
