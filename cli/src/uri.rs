//! Endpoint URIs of `emberctl send`, `emberctl recv` and `emberctl ls`.

use std::fmt;

/// The schemes, for help texts and errors.
pub const SCHEMES: &str = "pipe: (or -), fifo:/path, mq:/name, uds:/path, uds-abstract:name, \
uds-seqpacket:/path, uds-dgram:/path, uds-dgram-abstract:name, shm-ring:name, shm-seqlock:name, \
shm-broadcast:name, tcp:host:port, udp:host:port";

/// Where frames go to or come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// Standard input (`recv`) or output (`send`): a pipe in a shell pipeline.
    Stdio,
    /// A FIFO at a path.
    Fifo(String),
    /// A POSIX message queue, `/name`.
    Mq(String),
    /// A Unix stream socket at a path.
    Uds(String),
    /// A Unix stream socket in the abstract namespace.
    UdsAbstract(String),
    /// A Unix seqpacket socket at a path.
    UdsSeqpacket(String),
    /// A Unix datagram socket at a path.
    UdsDgram(String),
    /// A Unix datagram socket in the abstract namespace.
    UdsDgramAbstract(String),
    /// A shared-memory SPSC ring, `/name` in `/dev/shm`.
    ShmRing(String),
    /// A shared-memory seqlock.
    ShmSeqlock(String),
    /// A shared-memory broadcast ring.
    ShmBroadcast(String),
    /// TCP: `send` connects to the address, `recv` listens on it and takes one connection.
    Tcp(std::net::SocketAddr),
    /// UDP: `send` sends datagrams to the address, `recv` binds it.
    Udp(std::net::SocketAddr),
}

/// `host:port` (an IPv6 host in brackets, `[::1]:7000`), resolved to its first address.
fn inet(scheme: &str, rest: &str, uri: &str) -> Result<std::net::SocketAddr, BadUri> {
    use std::net::ToSocketAddrs as _;
    let bad = |why: String| BadUri(format!("bad URI `{uri}`: {scheme}: {why} (e.g. {scheme}:127.0.0.1:7000)"));
    if rest.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
        return Err(bad("takes host:port with a port from 0 to 65535".into()));
    }
    rest.to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve `{rest}`: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("`{rest}` has no address")))
}

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUri(pub String);

impl fmt::Display for BadUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A POSIX shm or mq name: `name` or `/name` becomes `/name`.
fn slash_name(scheme: &str, rest: &str, uri: &str) -> Result<String, BadUri> {
    let name = rest.strip_prefix('/').unwrap_or(rest);
    if name.is_empty() || name.contains('/') || name.contains('\0') || name.len() > 254 {
        return Err(BadUri(format!(
            "bad URI `{uri}`: {scheme}: takes a name of 1 to 254 bytes with no slash after the first (e.g. {scheme}:/sensor)"
        )));
    }
    Ok(format!("/{name}"))
}

fn path(scheme: &str, rest: &str, uri: &str) -> Result<String, BadUri> {
    if rest.is_empty() || rest.contains('\0') {
        return Err(BadUri(format!("bad URI `{uri}`: {scheme}: needs a path (e.g. {scheme}:/tmp/ember.sock)")));
    }
    Ok(rest.to_string())
}

fn socket_path(scheme: &str, rest: &str, uri: &str) -> Result<String, BadUri> {
    let p = path(scheme, rest, uri)?;
    if p.len() > ember_linux::uds::MAX_PATH {
        return Err(BadUri(format!(
            "bad URI `{uri}`: a socket path is at most {} bytes, this one is {}",
            ember_linux::uds::MAX_PATH,
            p.len()
        )));
    }
    Ok(p)
}

fn abstract_name(scheme: &str, rest: &str, uri: &str) -> Result<String, BadUri> {
    if rest.is_empty() || rest.len() > ember_linux::uds::MAX_PATH {
        return Err(BadUri(format!(
            "bad URI `{uri}`: {scheme}: takes a name of 1 to {} bytes",
            ember_linux::uds::MAX_PATH
        )));
    }
    Ok(rest.to_string())
}

impl Uri {
    /// Parses `scheme:rest`.
    pub fn parse(uri: &str) -> Result<Uri, BadUri> {
        if uri == "-" || uri == "pipe:" || uri == "stdio:" {
            return Ok(Uri::Stdio);
        }
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Err(BadUri(format!("bad URI `{uri}`: no scheme; one of {SCHEMES}")));
        };
        Ok(match scheme {
            "fifo" => Uri::Fifo(path(scheme, rest, uri)?),
            "mq" => Uri::Mq(slash_name(scheme, rest, uri)?),
            "uds" => Uri::Uds(socket_path(scheme, rest, uri)?),
            "uds-abstract" => Uri::UdsAbstract(abstract_name(scheme, rest, uri)?),
            "uds-seqpacket" => Uri::UdsSeqpacket(socket_path(scheme, rest, uri)?),
            "uds-dgram" => Uri::UdsDgram(socket_path(scheme, rest, uri)?),
            "uds-dgram-abstract" => Uri::UdsDgramAbstract(abstract_name(scheme, rest, uri)?),
            "shm-ring" => Uri::ShmRing(slash_name(scheme, rest, uri)?),
            "shm-seqlock" => Uri::ShmSeqlock(slash_name(scheme, rest, uri)?),
            "shm-broadcast" => Uri::ShmBroadcast(slash_name(scheme, rest, uri)?),
            "tcp" => Uri::Tcp(inet(scheme, rest, uri)?),
            "udp" => Uri::Udp(inet(scheme, rest, uri)?),
            "pipe" | "stdio" => {
                return Err(BadUri(format!("bad URI `{uri}`: {scheme}: takes nothing after the colon")));
            }
            other => return Err(BadUri(format!("bad URI `{uri}`: unknown scheme `{other}:`; one of {SCHEMES}"))),
        })
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Stdio => write!(f, "pipe:"),
            Uri::Fifo(p) => write!(f, "fifo:{p}"),
            Uri::Mq(n) => write!(f, "mq:{n}"),
            Uri::Uds(p) => write!(f, "uds:{p}"),
            Uri::UdsAbstract(n) => write!(f, "uds-abstract:{n}"),
            Uri::UdsSeqpacket(p) => write!(f, "uds-seqpacket:{p}"),
            Uri::UdsDgram(p) => write!(f, "uds-dgram:{p}"),
            Uri::UdsDgramAbstract(n) => write!(f, "uds-dgram-abstract:{n}"),
            Uri::ShmRing(n) => write!(f, "shm-ring:{n}"),
            Uri::ShmSeqlock(n) => write!(f, "shm-seqlock:{n}"),
            Uri::ShmBroadcast(n) => write!(f, "shm-broadcast:{n}"),
            Uri::Tcp(a) => write!(f, "tcp:{a}"),
            Uri::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        assert_eq!(Uri::parse("-"), Ok(Uri::Stdio));
        assert_eq!(Uri::parse("pipe:"), Ok(Uri::Stdio));
        assert_eq!(Uri::parse("fifo:/tmp/f"), Ok(Uri::Fifo("/tmp/f".into())));
        assert_eq!(Uri::parse("mq:/q"), Ok(Uri::Mq("/q".into())));
        assert_eq!(Uri::parse("mq:q"), Ok(Uri::Mq("/q".into())));
        assert_eq!(Uri::parse("uds:/run/s"), Ok(Uri::Uds("/run/s".into())));
        assert_eq!(Uri::parse("uds-abstract:ember"), Ok(Uri::UdsAbstract("ember".into())));
        assert_eq!(Uri::parse("uds-seqpacket:/s"), Ok(Uri::UdsSeqpacket("/s".into())));
        assert_eq!(Uri::parse("uds-dgram:/s"), Ok(Uri::UdsDgram("/s".into())));
        assert_eq!(Uri::parse("uds-dgram-abstract:x"), Ok(Uri::UdsDgramAbstract("x".into())));
        assert_eq!(Uri::parse("shm-ring:r"), Ok(Uri::ShmRing("/r".into())));
        assert_eq!(Uri::parse("shm-seqlock:/s"), Ok(Uri::ShmSeqlock("/s".into())));
        assert_eq!(Uri::parse("shm-broadcast:b"), Ok(Uri::ShmBroadcast("/b".into())));
        for u in ["fifo:/a", "mq:/b", "uds:/c", "shm-ring:/d", "uds-dgram-abstract:e"] {
            assert_eq!(Uri::parse(u).unwrap().to_string(), u);
        }
    }

    #[test]
    fn refuses_bad_uris_with_a_reason() {
        for (u, why) in [
            ("/tmp/x", "no scheme"),
            ("tcpx:1.2.3.4", "unknown scheme `tcpx:`"),
            ("tcp:1.2.3.4", "host:port"),
            ("udp::7000", "host:port"),
            ("udp:127.0.0.1:65536", "host:port"),
            ("fifo:", "needs a path"),
            ("mq:/a/b", "no slash after the first"),
            ("mq:/", "1 to 254 bytes"),
            ("shm-ring:", "1 to 254 bytes"),
            ("uds-abstract:", "1 to 107 bytes"),
            ("pipe:x", "takes nothing"),
        ] {
            let e = Uri::parse(u).unwrap_err().0;
            assert!(e.contains(why), "{u}: {e}");
        }
        assert_eq!(Uri::parse("tcp:127.0.0.1:7000"), Ok(Uri::Tcp(([127, 0, 0, 1], 7000).into())));
        assert_eq!(Uri::parse("udp:[::1]:7001").map(|u| u.to_string()), Ok("udp:[::1]:7001".to_string()));
        let long = format!("uds:/{}", "x".repeat(200));
        assert!(Uri::parse(&long).unwrap_err().0.contains("at most 107 bytes"));
    }
}
