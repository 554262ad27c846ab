//! The web view's security rules over plain HTTP: path traversal, methods,
//! malformed parameters and headers are refused (`security_checks`, run on
//! the ground-truth server), and listening beyond loopback needs a token.

use crate::support::*;

use super::{get, http, Server};

/// Plain HTTP: traversal, methods, malformed parameters, headers.
/// `window`: the query of a window that has samples.
pub(super) fn security_checks(server: &Server, window: &str) {
    let port = server.port;
    for target in [
        "/assets/../../etc/passwd",
        "/assets/..%2f..%2fetc%2fpasswd",
        "/assets/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%252f..%252fetc%252fpasswd",
        "/../../../../etc/passwd",
        "/etc/passwd",
        "/assets/",
        "/api/../assets/app.js/../../Cargo.toml",
    ] {
        let (status, _, body) = get(port, target);
        assert_eq!(status, 404, "GET {target}: {body}");
        assert!(
            !body.contains("root:"),
            "GET {target} served a file: {body}"
        );
    }
    let (status, head, _) = get(port, "/assets/app.js");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{head}"
    );
    let (status, head, page) = get(port, "/");
    assert_eq!(status, 200);
    assert!(
        head.contains("default-src 'self'") && head.contains("script-src 'self'"),
        "{head}"
    );
    assert!(!page.contains("<script>"), "inline script in the page");
    assert!(
        head.to_ascii_lowercase().contains("x-frame-options: deny"),
        "{head}"
    );
    // The flame graph's own policy: its inline script by hash, nothing
    // else, framed by this server's page only.
    let (status, head, svg) = get(port, &format!("/api/flame.svg?{window}"));
    assert_eq!(status, 200, "flame.svg: {head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'sha256-")
            && lower.contains("frame-ancestors 'self'")
            && lower.contains("x-frame-options: sameorigin")
            && !lower.contains("unsafe-inline"),
        "{head}"
    );
    assert!(svg.contains("<script"), "no script in the flame graph");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for target in ["/", "/api/top", "/api/nothing"] {
            let (status, _, body) = http(port, method, target, &[]);
            assert_eq!(status, 405, "{method} {target}: {body}");
        }
    }
    for target in [
        "/api/activity?from=yesterday",
        "/api/activity?since=1x",
        "/api/activity?from=2026-12-01T02:00:00Z&to=2026-12-01T01:00:00Z",
        "/api/top?by=no_such_column",
        "/api/top?where=state%20%3D",
        "/api/top?where=nosuch%20%3D%201",
        "/api/top?top=0",
        "/api/top?tgid=abc",
        "/api/top?colour=red",
        "/api/thread",
        "/api/latency?table=disks",
        "/api/activity?by=state,comm",
        "/api/activity?since=900d",
        "/api/stacks?kind=both",
        "/api/stacks?where=1%3D1)%20UNION%20SELECT%20*%20FROM%20stacks%20--",
    ] {
        let (status, _, body) = get(port, target);
        assert_eq!(status, 400, "GET {target}: {body}");
        assert_eq!(body.trim_end().lines().count(), 1, "GET {target}: {body:?}");
    }
    let (status, _, body) = get(
        port,
        "/api/top?from=2000-01-01T00:00:00Z&to=2000-01-01T01:00:00Z",
    );
    assert_eq!(status, 404, "an empty window: {body}");
    assert!(body.contains("elsewhere in time"), "{body}");
}

/// Listening beyond loopback needs a token; requests without it get 401.
#[test]
fn serve_needs_a_token_beyond_loopback() {
    let scratch = scratch();
    let dir = scratch.path().to_str().expect("utf-8");
    let out = taskscope(&["serve", "--dir", dir, "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--token-file"), "{stderr}");
    let token_file = scratch.path().join("token");
    std::fs::write(&token_file, "short\n").expect("token");
    let out = taskscope(&[
        "serve",
        "--dir",
        dir,
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        token_file.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "a short token: {out:?}");

    let token = "s3cret-token-0123456789";
    std::fs::write(&token_file, format!("{token}\n")).expect("token");
    let server = Server::start(
        &[
            "--dir",
            dir,
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            token_file.to_str().expect("utf-8"),
        ],
        &[],
    );
    let port = server.port;
    for headers in [
        vec![],
        vec!["Authorization: Bearer wrong-token-0123456789"],
        vec!["Cookie: taskscope_token=wrong-token-0123456789"],
    ] {
        for target in ["/", "/api/info", "/assets/app.js"] {
            let (status, _, body) = http(port, "GET", target, &headers);
            assert_eq!(status, 401, "GET {target} {headers:?}: {body}");
        }
    }
    let (status, _, _) = get(port, "/?token=wrong-token-0123456789");
    assert_eq!(status, 401);
    let bearer = format!("Authorization: Bearer {token}");
    let (status, _, body) = http(port, "GET", "/api/info", &[&bearer]);
    assert_eq!(status, 200, "{body}");
    // A first visit with ?token= sets the cookie and drops the token from
    // the address.
    let (status, head, _) = get(port, &format!("/?from=2026-12-01T00:00:00Z&token={token}"));
    assert_eq!(status, 303, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("set-cookie: taskscope_token=")
            && lower.contains("httponly")
            && lower.contains("samesite=strict"),
        "{head}"
    );
    assert!(
        head.contains("location: /?from=2026-12-01T00:00:00Z"),
        "{head}"
    );
    let cookie = format!("Cookie: taskscope_token={token}");
    let (status, _, _) = http(port, "GET", "/assets/app.js", &[&cookie]);
    assert_eq!(status, 200);
    drop(server);

    // The environment variable instead of the file.
    let server = Server::start(
        &["--dir", dir, "--listen", "0.0.0.0:0"],
        &[("TASKSCOPE_SERVE_TOKEN", token)],
    );
    assert_eq!(get(server.port, "/api/info").0, 401);
    assert_eq!(http(server.port, "GET", "/api/info", &[&bearer]).0, 200);
}
