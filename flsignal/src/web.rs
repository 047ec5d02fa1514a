//! The browser page: plain ES modules, HTML and CSS from `flsignal/web/`,
//! compiled into the binary so the server needs no files at run time and
//! the page works offline (no CDN, no external fonts or scripts).
//!
//! `GET /` without a WebSocket upgrade returns [`INDEX`]; the modules and
//! the stylesheet are served from `/web/NAME`. Every response carries a
//! Content-Security-Policy that allows nothing but this server: scripts and
//! styles from `self`, WebSockets back to it, no inline code, no frames.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Where the page's assets are served from.
pub const ASSET_PREFIX: &str = "/web/";

/// Only this server: its own scripts and styles, WebSockets back to it
/// (`ws:`/`wss:` because `'self'` does not cover WebSocket schemes in
/// every browser), nothing inline, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page itself.
pub const INDEX: &str = include_str!("../web/index.html");

/// One embedded file under [`ASSET_PREFIX`].
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/web/`, by name. Nothing else is served from there.
const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../web/icon.svg"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_str!("../web/app.js"),
    },
    Asset {
        name: "identity.js",
        content_type: JS,
        body: include_str!("../web/identity.js"),
    },
    Asset {
        name: "wire.js",
        content_type: JS,
        body: include_str!("../web/wire.js"),
    },
    Asset {
        name: "setup.js",
        content_type: JS,
        body: include_str!("../web/setup.js"),
    },
    Asset {
        name: "signal.js",
        content_type: JS,
        body: include_str!("../web/signal.js"),
    },
    Asset {
        name: "peer.js",
        content_type: JS,
        body: include_str!("../web/peer.js"),
    },
    Asset {
        name: "view.js",
        content_type: JS,
        body: include_str!("../web/view.js"),
    },
    Asset {
        name: "selftest.js",
        content_type: JS,
        body: include_str!("../web/selftest.js"),
    },
    Asset {
        name: "x25519.js",
        content_type: JS,
        body: include_str!("../web/x25519.js"),
    },
    Asset {
        name: "hpke.js",
        content_type: JS,
        body: include_str!("../web/hpke.js"),
    },
    Asset {
        name: "seal.js",
        content_type: JS,
        body: include_str!("../web/seal.js"),
    },
];

/// The page, for a plain `GET /`.
pub fn index() -> Response {
    with_headers(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

/// `GET /web/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => with_headers(StatusCode::OK, asset.content_type, asset.body),
        None => with_headers(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n"),
    }
}

fn with_headers(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The assets change with the binary; a restart must not leave stale modules.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        for asset in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            for line in asset.body.lines().filter(|line| line.starts_with("import ")) {
                let Some(target) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let name = target.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|asset| asset.name == name),
                    "{} imports {target}, which is not embedded",
                    asset.name
                );
            }
        }
    }

    /// A URL with a host in it (`scheme://host`), other than the SVG
    /// namespace, which names a namespace and is never fetched.
    fn names_another_host(body: &str) -> bool {
        let body = body.replace("http://www.w3.org/2000/svg", "");
        body.match_indices("://").any(|(at, _)| {
            body[at + 3..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '[')
        })
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        assert!(names_another_host("<script src=https://cdn.example/x.js>"));
        assert!(!names_another_host("open it over https:// or on localhost"));
        let everything = std::iter::once(("index.html", INDEX)).chain(ASSETS.iter().map(|a| (a.name, a.body)));
        for (name, body) in everything {
            assert!(!names_another_host(body), "{name} names another host");
        }
        assert!(INDEX.contains("/web/app.js") && INDEX.contains("/web/style.css"));
        assert!(!INDEX.contains("<script>"), "inline script would break the CSP");
    }
}
