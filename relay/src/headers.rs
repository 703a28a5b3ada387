//! Security headers on every answer: a Content-Security-Policy, `nosniff` and a
//! `Referrer-Policy`.
//!
//! The page's policy allows scripts from this origin only, plus the one inline script trunk
//! writes into `index.html` to load the WebAssembly module. That script changes with every
//! build (it names the hashed files), so its SHA-256 is computed from the `index.html` being
//! served, once at startup, rather than written into configuration. `'wasm-unsafe-eval'`
//! lets the page compile its WebAssembly and nothing else (no `eval`). API answers are never
//! documents, so their policy allows nothing at all.

use axum::http::{HeaderName, HeaderValue, header};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The policy of API answers and health endpoints: nothing may load, nothing may frame them.
pub const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Headers every answer carries besides its policy.
pub fn common() -> [(HeaderName, HeaderValue); 2] {
    [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // The page links nowhere, but a message could hold a URL a browser turns into a
        // link one day; nobody should learn which room it was clicked in.
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// The page's policy, allowing exactly the inline scripts of `index_html`.
pub fn page_policy(index_html: &str) -> String {
    let hashes: String = inline_scripts(index_html)
        .map(|script| {
            let digest = Sha256::digest(script.as_bytes());
            format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The contents of each `<script>` element without a `src`, exactly as written (a hash
/// covers every byte between the tags). Trunk's output is the only input, so a scan for the
/// tags is enough; an HTML parser would be a dependency for one element.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find("<script")?;
            let open_end = start + rest[start..].find('>')?;
            let attributes = &rest[start + "<script".len()..open_end];
            let body_start = open_end + 1;
            let body_end = body_start + rest[body_start..].find("</script>")?;
            let body = &rest[body_start..body_end];
            rest = &rest[body_end + "</script>".len()..];
            if !attributes.contains("src=") {
                return Some(body);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_policy_allows_exactly_the_inline_scripts() {
        let html = "<head><script type=\"module\">\nimport init from '/a.js';\n</script>\
                    <script src=\"/b.js\"></script><script>x()</script></head>";
        let scripts: Vec<&str> = inline_scripts(html).collect();
        assert_eq!(scripts, ["\nimport init from '/a.js';\n", "x()"]);
        let policy = page_policy(html);
        // echo -n 'x()' | openssl dgst -sha256 -binary | base64
        assert!(
            policy.contains("'sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI='"),
            "{policy}"
        );
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe-inline"));
    }

    #[test]
    fn a_page_without_inline_scripts_allows_none() {
        let policy = page_policy("<html></html>");
        assert!(!policy.contains("sha256"), "{policy}");
    }
}
