//! Item 12: the page and every API answer carry a Content-Security-Policy that forbids inline
//! script (but the loader trunk writes) and framing, `nosniff` and a `Referrer-Policy`. The
//! browser half — the page still works under the policy — is in `e2e/chat.test.mjs`.
//!
//! Failed on the main of issue 10: none of these headers was sent.

use crate::support::*;

const LOADER: &str = "\nimport init from '/frontend-1.js';\nawait init();\n";

#[tokio::test]
async fn page_and_api_answers_carry_the_security_headers() {
    let dir = std::env::temp_dir().join(format!("relay-headers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a static dir");
    std::fs::write(
        dir.join("index.html"),
        format!("<html><head><script type=\"module\">{LOADER}</script></head></html>"),
    )
    .expect("index.html");
    let relay = Relay::start_with(|config| config.static_dir = dir.clone()).await;

    let page = http().get(relay.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    // The loader's hash, computed here independently of the relay.
    let hash = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(LOADER))
    };
    assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(page.headers().contains_key("referrer-policy"));

    for path in ["/api/rooms/r/messages", "/api/nowhere", "/healthz"] {
        let answer = http().get(relay.url(path)).send().await.expect("GET");
        let policy = answer.headers()["content-security-policy"]
            .to_str()
            .expect("ASCII");
        assert!(policy.starts_with("default-src 'none'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(
            answer.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert!(answer.headers().contains_key("referrer-policy"), "{path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
