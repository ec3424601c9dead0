//! Where a webhook may send: `http` or `https` URLs whose host is not on this machine or
//! this network (no loopback, private, link-local (cloud metadata at 169.254.169.254
//! included), unspecified, shared (CGNAT), multicast, broadcast or reserved address), unless
//! the installation allows private targets.
//!
//! Checked twice: when a webhook is created ([`check_target`], so that the mistake is a
//! 422 at once), and again on every connection, because a name may resolve elsewhere by
//! then (DNS rebinding): [`GuardedResolver`] drops the refused addresses of a name, and
//! [`check_literal`] refuses an IP-literal URL, which never reaches a resolver.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

/// Why an address is no target, or `None` when it may be one.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address (cloud metadata services live there)"
    } else if ip.is_unspecified() || a == 0 {
        "an unspecified address"
    } else if a == 100 && (b & 0xc0) == 64 {
        "a shared (CGNAT) address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.is_broadcast() {
        "the broadcast address"
    } else if a >= 240 {
        "a reserved address"
    } else {
        return None;
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address inside IPv6 (mapped, or NAT64's well-known prefix) is what it holds.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return refused_v4(Ipv4Addr::new(a, b, c, d));
    }
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "an unspecified address"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "a private (unique local) address"
    } else if (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0 {
        "a link-local address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else {
        return None;
    })
}

/// A webhook URL as given, checked: scheme, host, and (unless `allow_private`) every
/// address its host names now. The error says what is wrong, for a 422.
pub async fn check_target(raw: &str, allow_private: bool) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not {}:",
            url.scheme()
        ));
    }
    let Some(host) = url.host() else {
        return Err("must name a host".into());
    };
    if allow_private {
        return Ok(url);
    }
    check_literal(&url)?;
    if let Host::Domain(name) = host {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        // RFC 6761: always this machine, whatever a resolver says.
        if name == "localhost" || name.ends_with(".localhost") {
            return Err(format!("names this machine ({name})"));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| format!("has a host that does not resolve ({name}: {e})"))?
            .collect();
        if let Some((addr, why)) = addrs
            .iter()
            .find_map(|a| refused(a.ip()).map(|why| (a.ip(), why)))
        {
            return Err(format!(
                "has a host that resolves to {why} ({name} is {addr}); private targets are \
                 refused unless the server runs with --webhooks-allow-private"
            ));
        }
    }
    Ok(url)
}

/// Refuses a URL whose host is a refused IP literal (a name is the resolver's to check).
pub fn check_literal(url: &Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    match refused(ip) {
        Some(why) => Err(format!(
            "targets {why} ({ip}); private targets are refused unless the server runs with \
             --webhooks-allow-private"
        )),
        None => Ok(()),
    }
}

/// The system resolver, less the refused addresses: a name that resolves only to them
/// fails to connect, however it resolved when the webhook was created.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| refused(a.ip()).is_none())
                .collect();
            if kept.is_empty() {
                let shown: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to refused (private) addresses [{}]",
                    shown.join(", ")
                )
                .into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_refused_and_public_ones_kept() {
        for bad in [
            "127.0.0.1",
            "127.8.9.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(refused(ip(bad)).is_some(), "{bad} is allowed");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused(ip(good)), None, "{good} is refused");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_for_scheme_host_and_address() {
        for bad in [
            "http://127.0.0.1:9/x",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://localhost/",
            "http://api.localhost:8080/",
            "ftp://example.com/x",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(check_target(bad, false).await.is_err(), "{bad} accepted");
        }
        assert!(
            check_target("http://93.184.216.34/hook", false)
                .await
                .is_ok()
        );
        // Allowed: private targets pass, other schemes still do not.
        assert!(check_target("http://127.0.0.1:9/x", true).await.is_ok());
        assert!(check_target("ftp://127.0.0.1/x", true).await.is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let err = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost has only loopback addresses");
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
