//! Published ports: `-p [IP:][HOST:]CONTAINER[/tcp|udp]` (ranges as `8000-8001:80-81`), their
//! allocation (berthctl refuses a host port another container or a host process holds, with
//! docker's "port is already allocated", since the portmap plugin reserves nothing), and
//! docker's ways of showing them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The host address ("" for every address).
    pub host_ip: String,
    /// 0: a free one is picked when the container starts.
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub proto: String,
    /// `-p 8000-8010:80`: the first free host port of host_port..=host_port_end is taken.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

impl Port {
    /// The host address as docker shows it.
    pub fn shown_ip(&self) -> &str {
        if self.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &self.host_ip
        }
    }

    /// "80/tcp"
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }

    fn overlaps(&self, o: &Port) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.proto == o.proto
            && self.host_port == o.host_port
            && (any(&self.host_ip) || any(&o.host_ip) || self.host_ip == o.host_ip)
    }
}

fn port_range(s: &str, what: &str, spec: &str) -> Result<(u16, u16)> {
    let one = |p: &str| -> Result<u16> {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n > 0 || what == "host")
            .ok_or_else(|| anyhow!("-p {spec}: invalid {what} port {p:?}"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                bail!("-p {spec}: invalid {what} port range {s:?}");
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// Parse one `-p` value into its ports (several for a range).
pub fn parse(spec: &str) -> Result<Vec<Port>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) if matches!(p.to_ascii_lowercase().as_str(), "tcp" | "udp") => (
            r,
            if p.eq_ignore_ascii_case("udp") {
                "udp"
            } else {
                "tcp"
            },
        ),
        Some((_, p)) => bail!("-p {spec}: invalid protocol {p:?} (use tcp or udp)"),
        None => (spec, "tcp"),
    };
    // IP:HOST:CONTAINER, with an IPv6 address in brackets.
    let (ip, host, container) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| anyhow!("-p {spec}: use [IPv6]:HOST:CONTAINER"))?;
        let (h, c) = r
            .split_once(':')
            .ok_or_else(|| anyhow!("-p {spec}: use [IPv6]:HOST:CONTAINER"))?;
        (ip, h, c)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            _ => bail!("-p {spec}: use [IP:][HOST:]CONTAINER[/tcp|udp]"),
        }
    };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        bail!("-p {spec}: invalid IP address {ip:?}");
    }
    let (c0, c1) = port_range(container, "container", spec)?;
    let (h0, h1) = if host.is_empty() {
        (0, 0)
    } else {
        port_range(host, "host", spec)?
    };
    if !host.is_empty() && h1 != h0 && c1 == c0 {
        // docker: one container port, a host range: the first free port of the range.
        return Ok(vec![Port {
            host_ip: ip.to_string(),
            host_port: h0,
            container_port: c0,
            proto: proto.to_string(),
            host_port_end: h1,
        }]);
    }
    if !host.is_empty() && h1 - h0 != c1 - c0 {
        bail!("-p {spec}: the host and container port ranges differ in size");
    }
    Ok((c0..=c1)
        .enumerate()
        .map(|(i, c)| Port {
            host_ip: ip.to_string(),
            host_port: if host.is_empty() { 0 } else { h0 + i as u16 },
            container_port: c,
            proto: proto.to_string(),
            host_port_end: 0,
        })
        .collect())
}

fn taken_error(p: &Port) -> anyhow::Error {
    anyhow!(
        "Bind for {}:{} failed: port is already allocated",
        p.shown_ip(),
        p.host_port
    )
}

/// Whether a host process holds `p` (a bind of the same address and port fails); an address
/// that is not the host's is an error.
fn held_on_host(p: &Port) -> Result<bool> {
    let ip: IpAddr = if p.host_ip.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        p.host_ip
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let addr = SocketAddr::new(ip, p.host_port);
    let r = if p.proto == "udp" {
        UdpSocket::bind(addr).map(drop)
    } else {
        TcpListener::bind(addr).map(drop)
    };
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Err(anyhow!(
            "-p {}:{}:{}: {} is not an address of this host",
            p.host_ip,
            p.host_port,
            p.key(),
            p.host_ip
        )),
        _ => Ok(false),
    }
}

/// Give every port without a host port a free one, and refuse one that `taken` (other
/// containers' ports) or a host process holds.
pub fn allocate(wanted: &[Port], taken: &[Port]) -> Result<Vec<Port>> {
    let mut out: Vec<Port> = Vec::new();
    for p in wanted {
        let mut p = p.clone();
        if p.host_port == 0 {
            p.host_port = free_port(&p, taken, &out)?;
        } else if p.host_port_end > p.host_port {
            let range = p.host_port..=p.host_port_end;
            let mut picked = None;
            for port in range {
                let mut q = p.clone();
                q.host_port = port;
                q.host_port_end = 0;
                if !taken.iter().chain(&out).any(|t| t.overlaps(&q)) && !held_on_host(&q)? {
                    picked = Some(q);
                    break;
                }
            }
            p = picked.ok_or_else(|| {
                anyhow!(
                    "Bind for {}:{}-{} failed: every port of the range is already allocated",
                    p.shown_ip(),
                    p.host_port,
                    p.host_port_end
                )
            })?;
        } else if taken.iter().chain(&out).any(|t| t.overlaps(&p)) || held_on_host(&p)? {
            return Err(taken_error(&p));
        }
        out.push(p);
    }
    Ok(out)
}

/// A port the kernel gives for a bind to port 0, that no container has.
fn free_port(p: &Port, taken: &[Port], ours: &[Port]) -> Result<u16> {
    let ip: IpAddr = p
        .host_ip
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    for _ in 0..100 {
        let port = if p.proto == "udp" {
            UdpSocket::bind(SocketAddr::new(ip, 0)).and_then(|s| s.local_addr())
        } else {
            TcpListener::bind(SocketAddr::new(ip, 0)).and_then(|s| s.local_addr())
        }
        .map_err(|e| anyhow!("-p {}: find a free host port: {e}", p.key()))?
        .port();
        let mut q = p.clone();
        q.host_port = port;
        if !taken.iter().chain(ours).any(|t| t.overlaps(&q)) {
            return Ok(port);
        }
    }
    Err(anyhow!("-p {}: no free host port found", p.key()))
}

/// `ps`'s PORTS: "0.0.0.0:8080->80/tcp, 0.0.0.0:5353->53/udp", and the image's exposed ports
/// that are not published as "443/tcp".
pub fn ps_column(ports: &[Port], exposed: &[String]) -> String {
    let mut parts: Vec<String> = ports
        .iter()
        .map(|p| format!("{}:{}->{}", p.shown_ip(), p.host_port, p.key()))
        .collect();
    for e in exposed {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        if !ports.iter().any(|p| p.key() == key) {
            parts.push(key);
        }
    }
    parts.join(", ")
}

/// inspect's NetworkSettings.Ports: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}.
pub fn inspect_map(ports: &[Port], exposed: &[String]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for e in exposed {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        m.insert(key, serde_json::Value::Null);
    }
    for p in ports {
        let entry = m
            .entry(p.key())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        if entry.is_null() {
            *entry = serde_json::Value::Array(vec![]);
        }
        if let Some(a) = entry.as_array_mut() {
            a.push(
                serde_json::json!({"HostIp": p.shown_ip(), "HostPort": p.host_port.to_string()}),
            );
        }
    }
    serde_json::Value::Object(m)
}

/// `port CONTAINER [PRIVATE[/PROTO]]`'s lines: "80/tcp -> 0.0.0.0:8080".
pub fn port_lines(ports: &[Port], filter: Option<&str>) -> Result<Vec<String>> {
    let want = filter.map(|f| {
        if f.contains('/') {
            f.to_string()
        } else {
            format!("{f}/tcp")
        }
    });
    let lines: Vec<String> = ports
        .iter()
        .filter(|p| want.as_ref().is_none_or(|w| *w == p.key()))
        .map(|p| {
            if want.is_some() {
                format!("{}:{}", p.shown_ip(), p.host_port)
            } else {
                format!("{} -> {}:{}", p.key(), p.shown_ip(), p.host_port)
            }
        })
        .collect();
    if let (Some(w), true) = (want, lines.is_empty()) {
        bail!("No public port '{w}' published for this container");
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: &str, h: u16, c: u16, proto: &str) -> Port {
        Port {
            host_ip: ip.into(),
            host_port: h,
            container_port: c,
            proto: proto.into(),
            host_port_end: 0,
        }
    }

    #[test]
    fn every_form_of_dash_p_parses_as_docker_reads_it() {
        assert_eq!(parse("80").unwrap(), vec![port("", 0, 80, "tcp")]);
        assert_eq!(parse("8080:80").unwrap(), vec![port("", 8080, 80, "tcp")]);
        assert_eq!(
            parse("127.0.0.1:8080:80/udp").unwrap(),
            vec![port("127.0.0.1", 8080, 80, "udp")]
        );
        assert_eq!(
            parse("127.0.0.1::80").unwrap(),
            vec![port("127.0.0.1", 0, 80, "tcp")]
        );
        assert_eq!(
            parse("[::1]:8080:80").unwrap(),
            vec![port("::1", 8080, 80, "tcp")]
        );
        assert_eq!(
            parse("8000-8001:80-81").unwrap(),
            vec![port("", 8000, 80, "tcp"), port("", 8001, 81, "tcp")]
        );
        for bad in [
            "",
            "0",
            "x:80",
            "80/sctp",
            "1.2.3:80:80",
            "8000-8002:80-81",
            "a:b:c:d",
            "70000",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_port_another_container_has_is_refused_with_dockers_words() {
        let taken = [port("", 18080, 80, "tcp")];
        let e = allocate(&[port("", 18080, 81, "tcp")], &taken).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bind for 0.0.0.0:18080 failed: port is already allocated"
        );
        let e = allocate(&[port("127.0.0.1", 18080, 81, "tcp")], &taken).unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:18080"));
        // Another protocol is another port; the same port twice in one run is refused.
        assert!(allocate(&[port("", 18080, 80, "udp")], &taken).is_ok());
        assert!(allocate(
            &[port("", 18081, 80, "tcp"), port("", 18081, 81, "tcp")],
            &[]
        )
        .is_err());
    }

    #[test]
    fn a_port_a_host_process_holds_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let held = l.local_addr().unwrap().port();
        assert!(allocate(&[port("127.0.0.1", held, 80, "tcp")], &[]).is_err());
        let got = allocate(&[port("127.0.0.1", 0, 80, "tcp")], &[]).unwrap();
        assert_ne!(got[0].host_port, 0);
        assert_ne!(got[0].host_port, held);
    }

    #[test]
    fn ports_are_shown_as_docker_shows_them() {
        let ports = [
            port("", 8080, 80, "tcp"),
            port("127.0.0.1", 5353, 53, "udp"),
        ];
        assert_eq!(
            ps_column(&ports, &["80/tcp".into(), "443".into()]),
            "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp, 443/tcp"
        );
        assert_eq!(
            inspect_map(&ports, &["443/tcp".into()]),
            serde_json::json!({"443/tcp": null,
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]})
        );
        assert_eq!(
            port_lines(&ports, None).unwrap(),
            vec!["80/tcp -> 0.0.0.0:8080", "53/udp -> 127.0.0.1:5353"]
        );
        assert_eq!(
            port_lines(&ports, Some("80")).unwrap(),
            vec!["0.0.0.0:8080"]
        );
        assert!(port_lines(&ports, Some("81")).is_err());
    }
}
