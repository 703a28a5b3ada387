//! The page's files as the relay serves them: the precompressed copy the browser accepts, a
//! year of caching for hashed files and revalidation for the document, and revalidations (304)
//! that leave the stored headers alone.

use reqwest::StatusCode;

use crate::support::*;

const DOCUMENT: &str =
    "<html><head><script type=\"module\">import '/app-0123456789abcdef.js';</script></head></html>";

/// A static directory like trunk's output, with a Brotli copy of the script.
fn page_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("relay-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a static dir");
    std::fs::write(dir.join("index.html"), DOCUMENT).expect("index.html");
    std::fs::write(dir.join("app-0123456789abcdef.js"), "console.log(1)").expect("js");
    std::fs::write(
        dir.join("app-0123456789abcdef.js.br"),
        b"\x0b\x06\x80console.log(1)\x03",
    )
    .expect("js.br");
    dir
}

#[tokio::test]
async fn page_files_are_served_compressed_and_cached_by_their_names() {
    let dir = page_dir();
    let relay = Relay::start_with(|config| config.static_dir = dir.clone()).await;
    let get = |path: &str, encoding: &str| {
        http()
            .get(relay.url(path))
            .header("accept-encoding", encoding)
            .send()
    };

    let script = get("/app-0123456789abcdef.js", "gzip, br")
        .await
        .expect("GET");
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(script.headers()["content-encoding"], "br");
    assert_eq!(
        script.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(script.headers()["vary"], "accept-encoding");
    // Without Brotli (and no gzip copy here), the file as it is.
    let plain = get("/app-0123456789abcdef.js", "gzip").await.expect("GET");
    assert!(!plain.headers().contains_key("content-encoding"));
    assert_eq!(plain.text().await.expect("body"), "console.log(1)");

    let document = get("/", "br").await.expect("GET /");
    assert_eq!(document.headers()["cache-control"], "no-cache");
    let policy = document.headers()["content-security-policy"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    // An old build's hashed name falls back to the document, which must not be kept under it.
    let stale = get("/app-fedcba9876543210.js", "br").await.expect("GET");
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.headers()["cache-control"], "no-cache");

    // Revalidating the document: the 304 carries neither a policy nor caching of its own, so
    // the browser keeps the page's policy it stored (a policy on the 304 would replace it).
    let modified = document.headers()["last-modified"].clone();
    let again = http()
        .get(relay.url("/"))
        .header("if-modified-since", modified)
        .send()
        .await
        .expect("GET /");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(!again.headers().contains_key("content-security-policy"));
    assert!(!again.headers().contains_key("cache-control"));
    let _ = std::fs::remove_dir_all(&dir);
}
