//! The worker's own target allowlist (`--allow-target HOST[:PORT]|CIDR`): whatever a
//! coordinator asks, a worker sends only to the targets its operator named. Host names in a
//! plan are resolved, and every address they resolve to must be allowed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One allowed target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// A host name or address, on any port or on one.
    Host { host: String, port: Option<u16> },
    /// Every address of a network.
    Net { addr: IpAddr, prefix: u8 },
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::Host { host, port: None } => write!(f, "{host}"),
            Allowed::Host {
                host,
                port: Some(p),
            } => write!(f, "{host}:{p}"),
            Allowed::Net { addr, prefix } => write!(f, "{addr}/{prefix}"),
        }
    }
}

impl FromStr for Allowed {
    type Err = String;
    fn from_str(s: &str) -> Result<Allowed, String> {
        let bad = |why: &str| {
            format!(
                "--allow-target {s:?}: {why} (expected HOST, HOST:PORT or an address/prefix such as 10.0.0.0/8)"
            )
        };
        if let Some((addr, prefix)) = s.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| bad("not an IP address before '/'"))?;
            let prefix: u8 = prefix
                .parse()
                .map_err(|_| bad("the prefix is not a number"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(bad("the prefix is longer than the address"));
            }
            return Ok(Allowed::Net { addr, prefix });
        }
        if let Ok(addr) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            return Ok(Allowed::Host {
                host: addr.to_string(),
                port: None,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h.trim_matches(|c| c == '[' || c == ']'),
                Some(
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?,
                ),
            ),
            _ => (s, None),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Allowed::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether a target `host:port` whose addresses are `ips` is allowed by `list`.
pub fn allows(list: &[Allowed], host: &str, port: u16, ips: &[IpAddr]) -> bool {
    let host = host
        .trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase();
    let by_name = list.iter().any(|a| match a {
        Allowed::Host { host: h, port: p } => *h == host && p.is_none_or(|p| p == port),
        Allowed::Net { .. } => false,
    });
    by_name
        || (!ips.is_empty()
            && ips.iter().all(|ip| {
                list.iter().any(|a| match a {
                    Allowed::Net { addr, prefix } => in_net(*ip, *addr, *prefix),
                    Allowed::Host { host: h, port: p } => {
                        h.parse::<IpAddr>().is_ok_and(|x| x == *ip) && p.is_none_or(|p| p == port)
                    }
                })
            }))
}

/// Checks every base URL of a plan against `list` (resolving names); the error says which
/// target is outside it.
pub async fn check(list: &[Allowed], base_urls: &[String]) -> Result<(), String> {
    if list.is_empty() {
        return Ok(());
    }
    let shown = || {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for base in base_urls {
        let target = rackload_proto::redact::url(base);
        let url = url::Url::parse(base).map_err(|e| format!("target {target:?}: {e}"))?;
        let host = url.host_str().unwrap_or("").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let ips: Vec<IpAddr> = match tokio::net::lookup_host((
            host.trim_matches(|c| c == '[' || c == ']'),
            port,
        ))
        .await
        {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => Vec::new(),
        };
        if !allows(list, &host, port, &ips) {
            return Err(format!(
                "target {target} is outside this worker's --allow-target list ({})",
                shown()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<Allowed> {
        items.iter().map(|s| s.parse().expect("valid")).collect()
    }

    #[test]
    fn hosts_ports_and_networks() {
        let ip = |s: &str| vec![s.parse::<IpAddr>().expect("ip")];
        let l = list(&[
            "inference.local:8000",
            "10.0.0.0/8",
            "fd00::/8",
            "127.0.0.1",
        ]);
        assert!(allows(&l, "inference.local", 8000, &[]));
        assert!(!allows(&l, "inference.local", 9000, &[]), "another port");
        assert!(allows(&l, "10.1.2.3", 443, &ip("10.1.2.3")));
        assert!(!allows(&l, "11.1.2.3", 443, &ip("11.1.2.3")));
        assert!(allows(&l, "[fd00::1]", 80, &ip("fd00::1")));
        assert!(allows(&l, "127.0.0.1", 5, &ip("127.0.0.1")));
        // A name is allowed through its addresses only when all of them are.
        let mixed = vec![
            "10.0.0.1".parse().expect("ip"),
            "8.8.8.8".parse().expect("ip"),
        ];
        assert!(!allows(&l, "somewhere", 80, &mixed));
        assert!(allows(&list(&["0.0.0.0/0"]), "x", 1, &ip("8.8.8.8")));
    }

    #[test]
    fn bad_entries_say_what_is_expected() {
        for bad in ["10.0.0.0/40", "nothing/8", "host:port", ":80"] {
            let e = bad.parse::<Allowed>().expect_err(bad);
            assert!(
                e.contains("--allow-target") && e.contains("expected"),
                "{e}"
            );
        }
    }
}
