//! The dashboard (`/`, `/jobs/{id}`, `/assets/*`) and the API reference page (`/docs`).
//!
//! Both are files built into the binary: the dashboard's own (in `dashboard/`, plain HTML,
//! CSS and JavaScript modules, no build step) and Swagger UI's (vendored by
//! `utoipa-swagger-ui`). Neither loads anything from another origin. The dashboard is a
//! client of the public HTTP API like any other: it reads and changes nothing here, and
//! this module never touches the store.

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// One file served under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! assets {
    ($($name:literal => $type:expr),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../dashboard/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = assets! {
    "app.css" => "text/css; charset=utf-8",
    "app.js" => JS,
    "api.js" => JS,
    "ui.js" => JS,
    "live.js" => JS,
    "list.js" => JS,
    "job.js" => JS,
    "chart.js" => JS,
    "favicon.svg" => "image/svg+xml",
};

/// The page both dashboard routes answer with; its scripts read the address and render.
const PAGE: &str = include_str!("../dashboard/index.html");

/// What the dashboard's pages may load and connect to: this origin only. No inline script
/// or style: the scripts set styles through the CSS object model, which CSP allows.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A strong validator for a file, so that a reload revalidates with one small request.
/// (Hashing a few tens of kilobytes per request costs microseconds.)
fn etag(body: &str) -> HeaderValue {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
}

fn file(request: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let tag = etag(body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|seen| seen.as_bytes() == tag.as_bytes());
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, tag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

async fn page(request: HeaderMap) -> Response {
    let mut res = file(&request, "text/html; charset=utf-8", PAGE);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn asset(Path(name): Path<String>, request: HeaderMap) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(|a| file(&request, a.content_type, a.body))
        .ok_or_else(|| ApiError::NotFound(format!("no asset named {name}")))
}

/// Swagger UI over `/openapi.json`. Its page refers to its files relatively (`./x.js`),
/// and trailing slashes are trimmed before routing (`/docs/` is `/docs`), so the page is
/// served at `/docs` with those references made absolute, and its files under `/docs/`.
fn docs() -> Router<AppState> {
    let config = Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            // The default posts the document to validator.swagger.io for a badge.
            .validator_url("none")
            .try_it_out_enabled(true),
    );
    let index_config = config.clone();
    Router::new()
        .route(
            "/docs",
            get(move || {
                let config = index_config.clone();
                async move { swagger_file("index.html", config) }
            }),
        )
        .route(
            "/docs/{*file}",
            get(move |Path(file): Path<String>| {
                let config = config.clone();
                async move { swagger_file(&file, config) }
            }),
        )
}

fn swagger_file(
    name: &str,
    config: Arc<utoipa_swagger_ui::Config<'static>>,
) -> Result<Response, ApiError> {
    let found = utoipa_swagger_ui::serve(name, config)
        .map_err(|e| ApiError::Internal(format!("serving {name} of Swagger UI: {e}")))?
        .ok_or_else(|| ApiError::NotFound(format!("no such file: /docs/{name}")))?;
    let body = if name == "index.html" {
        String::from_utf8_lossy(&found.bytes)
            .replace("\"./", "\"/docs/")
            .into_bytes()
    } else {
        found.bytes.into_owned()
    };
    Ok(([(header::CONTENT_TYPE, found.content_type)], body).into_response())
}

/// The dashboard's and the reference page's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/jobs/{id}", get(page))
        .route("/assets/{name}", get(asset))
        .merge(docs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_and_scripts_name_is_served() {
        let mut texts = vec![PAGE];
        texts.extend(ASSETS.iter().map(|a| a.body));
        for text in texts {
            for (i, _) in text.match_indices("/assets/") {
                let rest = &text[i + "/assets/".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                    .collect();
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "/assets/{name} is referred to but not served"
                );
            }
        }
    }

    #[test]
    fn the_scripts_import_only_served_modules() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for (i, _) in a.body.match_indices(" from \"") {
                let spec: String = a.body[i + " from \"".len()..]
                    .chars()
                    .take_while(|c| *c != '"')
                    .collect();
                let module = spec
                    .strip_prefix("./")
                    .unwrap_or_else(|| panic!("{}: a non-relative import of {spec}", a.name));
                assert!(
                    ASSETS.iter().any(|x| x.name == module),
                    "{} imports {module}, which is not served",
                    a.name
                );
            }
        }
    }
}
