//! The flame graph as `taskscope flamegraph` draws it, interactive in the
//! page: inferno's SVG carries its own script (click to zoom, search,
//! details on hover), which runs only in a document of its own. The page
//! shows it in a same-origin frame, and the SVG's response gets a policy
//! that lets exactly that script run: the SHA-256 of each inline script and
//! style element and of the `onload` attribute (`'unsafe-hashes'` for that
//! one attribute only), nothing from anywhere (`default-src 'none'`), and
//! framing by this server's own page only. A script the SVG did not carry
//! when it was drawn — a frame name smuggled in by a process, say — has no
//! hash in the policy and does not run.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The Content-Security-Policy of one flame graph SVG.
pub fn policy(svg: &str) -> String {
    let mut scripts = String::new();
    for body in element_texts(svg, "script") {
        scripts.push_str(&format!(" '{}'", hash(&body)));
    }
    for handler in handlers(svg) {
        scripts.push_str(&format!(" 'unsafe-hashes' '{}'", hash(&handler)));
    }
    let mut styles = String::new();
    for body in element_texts(svg, "style") {
        styles.push_str(&format!(" '{}'", hash(&body)));
    }
    let scripts = if scripts.is_empty() {
        " 'none'".into()
    } else {
        scripts
    };
    let styles = if styles.is_empty() {
        " 'none'".into()
    } else {
        styles
    };
    format!(
        "default-src 'none'; script-src{scripts}; style-src{styles}; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )
}

fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The text content of every `<tag ...>...</tag>` element: CDATA sections
/// contribute their contents (a browser hashes the element's text, which
/// is what the sections hold, without their markers).
fn element_texts(svg: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(gt) = after.find('>') else { break };
        let inner = &after[gt + 1..];
        let Some(end) = inner.find(&close) else { break };
        out.push(strip_cdata(&inner[..end]));
        rest = &inner[end + close.len()..];
    }
    out
}

fn strip_cdata(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<![CDATA[") {
        out.push_str(&rest[..start]);
        let body = &rest[start + "<![CDATA[".len()..];
        let end = body.find("]]>").unwrap_or(body.len());
        out.push_str(&body[..end]);
        rest = body.get(end + "]]>".len()..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The `onload` handler of the root element (inferno's `init(evt)`).
fn handlers(svg: &str) -> Vec<String> {
    let Some(start) = svg.find("<svg") else {
        return Vec::new();
    };
    let tag = &svg[start..];
    let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
    tag.find(" onload=\"")
        .map(|at| {
            let value = &tag[at + " onload=\"".len()..];
            value[..value.find('"').unwrap_or(value.len())].to_string()
        })
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inline_script_style_and_the_onload_handler_is_hashed() {
        let svg = "<?xml version=\"1.0\"?><svg version=\"1.1\" onload=\"init(evt)\" width=\"1\">\
                   <style type=\"text/css\">text { x: 1 }</style>\
                   <script type=\"text/ecmascript\"><![CDATA[var a = 1;]]><![CDATA[init = 2;]]></script>\
                   <g><title>frame</title></g></svg>";
        let csp = policy(svg);
        assert!(csp.starts_with("default-src 'none'; "), "{csp}");
        // The script is what its CDATA sections hold, joined.
        assert!(csp.contains(&hash("var a = 1;init = 2;")), "{csp}");
        assert!(
            csp.contains(&format!("'unsafe-hashes' '{}'", hash("init(evt)"))),
            "{csp}"
        );
        assert!(
            csp.contains(&format!("style-src '{}'", hash("text { x: 1 }"))),
            "{csp}"
        );
        assert!(csp.ends_with("frame-ancestors 'self'"), "{csp}");
        // Known answer (echo -n 'init(evt)' | openssl dgst -sha256 -binary | base64).
        assert_eq!(
            hash("init(evt)"),
            "sha256-WiAVSnuYekflqQvM3Bgx4QYmF4g+iml28eRUaqE8Qeo="
        );
    }

    #[test]
    fn without_inline_code_nothing_may_run() {
        let csp = policy("<svg width=\"1\"><g/></svg>");
        assert!(csp.contains("script-src 'none'; style-src 'none'"), "{csp}");
    }
}
