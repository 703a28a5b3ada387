//! Security headers on every answer: a Content-Security-Policy, `nosniff` and a
//! `Referrer-Policy`; and how long a browser may keep each of the page's files.
//!
//! The page's policy allows scripts from this origin only, plus the one inline script trunk
//! writes into `index.html` to load the WebAssembly module. That script changes with every
//! build (it names the hashed files), so its SHA-256 is computed from the `index.html` being
//! served, once at startup, rather than written into configuration. `'wasm-unsafe-eval'`
//! lets the page compile its WebAssembly and nothing else (no `eval`). API answers are never
//! documents, so their policy allows nothing at all.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
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

/// Whether an answer is a document (HTML).
pub fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"))
}

/// How long the page's files may be kept. A build names its assets with a content hash
/// (`frontend-69fb2846dec5efab_bg.wasm`), so those never change and are kept for a year
/// without asking; everything else (`index.html`, which names the current assets, and the
/// paths that fall back to it) is checked with the relay on every load.
pub struct PageFile {
    hashed: bool,
}

impl PageFile {
    /// The page file `path` names; `None` for the API and the health endpoints, which set
    /// their own caching (or none).
    pub fn of(path: &str) -> Option<PageFile> {
        if path.starts_with(protocol::api::PREFIX)
            || ["/healthz", "/readyz", "/metrics"].contains(&path)
        {
            return None;
        }
        let name = path.rsplit('/').next().unwrap_or_default();
        Some(PageFile {
            hashed: is_hashed(name),
        })
    }

    /// The `Cache-Control` of its answer. `html` says the answer is a document: a hashed name
    /// that is not one of this build's files (an old build's, after an upgrade) is answered
    /// with `index.html`, which must not be kept under that name.
    pub fn cache_control(&self, html: bool) -> HeaderValue {
        HeaderValue::from_static(if self.hashed && !html {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        })
    }
}

/// Whether a file name carries trunk's content hash: `-` then the hash in hex (a 64-bit number
/// written without leading zeros: up to 16 digits, fewer when it starts with zeros), right
/// before the extension or before `_bg` (the wasm module), e.g. `style-f106589f12b353eb.css`.
fn is_hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-').is_some_and(|(base, hash)| {
        !base.is_empty()
            && (8..=16).contains(&hash.len())
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The page's policy, allowing exactly the inline scripts of `index_html`, and connections to
/// the relay's WebTransport port when it has one (`webtransport`). That port is on the host
/// the page came from, which a static policy cannot name: any host, that port and `https`
/// only (a WebTransport URL is `https://`).
pub fn page_policy(index_html: &str, webtransport: Option<u16>) -> String {
    let hashes: String = inline_scripts(index_html)
        .map(|script| {
            let digest = Sha256::digest(script.as_bytes());
            format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    let webtransport = webtransport
        .map(|port| format!(" https://*:{port}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'{webtransport}; \
         object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
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
        let policy = page_policy(html, None);
        // echo -n 'x()' | openssl dgst -sha256 -binary | base64
        assert!(
            policy.contains("'sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI='"),
            "{policy}"
        );
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(policy.contains("connect-src 'self';"), "{policy}");
    }

    #[test]
    fn the_page_may_connect_to_the_webtransport_port_when_there_is_one() {
        let policy = page_policy("<html></html>", Some(4433));
        assert!(
            policy.contains("connect-src 'self' https://*:4433;"),
            "{policy}"
        );
    }

    #[test]
    fn hashed_assets_are_immutable_and_everything_else_is_revalidated() {
        let policy = |path| {
            PageFile::of(path).map(|file| {
                let value = file.cache_control(false);
                value.to_str().unwrap_or("?").to_owned()
            })
        };
        let forever = Some("public, max-age=31536000, immutable".to_owned());
        let revalidate = Some("no-cache".to_owned());
        for hashed in [
            "/frontend-69fb2846dec5efab.js",
            "/frontend-69fb2846dec5efab_bg.wasm",
            "/style-f106589f12b353eb.css",
            "/frontend-e8bd18e50fef7d6_bg.wasm",
        ] {
            assert_eq!(policy(hashed), forever, "{hashed}");
        }
        for plain in [
            "/",
            "/index.html",
            "/room/lobby",
            "/frontend.js",
            "/x-69fb284.js",
            "/x-69fb2846dec5efab0.js",
            "/-69fb2846dec5efab.js",
            "/x-69fb2846dec5efag.js",
        ] {
            assert_eq!(policy(plain), revalidate, "{plain}");
        }
        for api in ["/api/rooms/a/messages", "/healthz", "/readyz", "/metrics"] {
            assert_eq!(policy(api), None, "{api}");
        }
        // An old build's asset, answered with index.html by the fallback.
        let old = PageFile::of("/frontend-0123456789abcdef.js").expect("a page file");
        assert_eq!(old.cache_control(true), "no-cache");
    }

    #[test]
    fn a_page_without_inline_scripts_allows_none() {
        let policy = page_policy("<html></html>", None);
        assert!(!policy.contains("sha256"), "{policy}");
    }
}
