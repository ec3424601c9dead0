//! `portauthority healthcheck`: asks a server whether it is ready, for container health
//! checks (the images carry no curl). Exit 0 when `/readyz` answers 200 within the
//! timeout; otherwise a one-line reason on stderr and exit 1.

use clap::Args;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// The server's root URL (`/readyz` is appended unless the URL already ends with it).
    /// Default: the address `PORTAUTHORITY_LISTEN` names (an unspecified address such as
    /// 0.0.0.0 reached over loopback), else http://127.0.0.1:8080; so the image's check
    /// follows a changed listen address.
    #[arg(long, env = "PORTAUTHORITY_HEALTHCHECK_URL")]
    pub url: Option<String>,
    /// How long the whole check may take, connecting included.
    #[arg(long, default_value = "3s", value_parser = crate::cli::duration)]
    pub timeout: Duration,
}

/// The URL of a server listening on `listen` (`serve --listen`), as seen from this host.
fn local_url(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let loopback: std::net::IpAddr = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            format!(
                "http://{}",
                std::net::SocketAddr::new(loopback, addr.port())
            )
        }
        _ => format!("http://{listen}"),
    }
}

/// The readiness URL for a server root or a URL that already names `/readyz`.
fn readyz_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/readyz") {
        url.to_owned()
    } else {
        format!("{url}/readyz")
    }
}

/// Ok when the server answered `/readyz` with 200; otherwise why not.
pub async fn check(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let url = readyz_url(&match &args.url {
        Some(url) => url.clone(),
        None => local_url(
            &std::env::var("PORTAUTHORITY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into()),
        ),
    });
    let http = portauthority_client::http_builder()
        .timeout(args.timeout)
        .connect_timeout(args.timeout)
        .build()?;
    let res = http
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: no answer within {:?}: {e}", args.timeout))?;
    let status = res.status();
    anyhow::ensure!(
        status == reqwest::StatusCode::OK,
        "{url}: not ready ({status})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{local_url, readyz_url};

    #[test]
    fn the_default_url_is_the_listen_address_over_loopback() {
        assert_eq!(local_url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(local_url("[::]:9000"), "http://[::1]:9000");
        assert_eq!(local_url("127.0.0.1:7001"), "http://127.0.0.1:7001");
        assert_eq!(local_url("localhost:8080"), "http://localhost:8080");
    }

    #[test]
    fn the_readiness_path_is_appended_once() {
        assert_eq!(
            readyz_url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(readyz_url("http://h:1/"), "http://h:1/readyz");
        assert_eq!(readyz_url("http://h:1/readyz"), "http://h:1/readyz");
        assert_eq!(
            readyz_url("http://h:1/prefix/readyz/"),
            "http://h:1/prefix/readyz"
        );
    }
}
