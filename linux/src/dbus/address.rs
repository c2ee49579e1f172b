//! D-Bus server addresses: `unix:path=/run/dbus/system_bus_socket`,
//! `unix:abstract=/tmp/dbus-3f9a,guid=...`, `tcp:host=127.0.0.1,port=4711,family=ipv4`,
//! several separated by `;` and tried in order. Values are percent-decoded into a fixed
//! buffer; other transports (`launchd:`, `nonce-tcp:`, `unixexec:`, and `unix:dir=` and
//! `unix:tmpdir=`, which only servers use) are skipped.

use crate::error::{Error, Result};
use crate::uds::{MAX_PATH, UnixName};

/// The system bus's default address, when `DBUS_SYSTEM_BUS_ADDRESS` is not set.
pub const SYSTEM_BUS_DEFAULT: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// One Unix socket address from an address string, its value decoded.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixAddress {
    buf: [u8; MAX_PATH],
    len: usize,
    abstract_name: bool,
}

impl UnixAddress {
    /// The name to connect to.
    pub fn name(&self) -> UnixName<'_> {
        let bytes = &self.buf[..self.len];
        if self.abstract_name {
            UnixName::Abstract(bytes)
        } else {
            // Decoded from a `&str` and checked as UTF-8 when parsed.
            UnixName::Path(core::str::from_utf8(bytes).unwrap_or(""))
        }
    }
}

/// A `tcp:` address: a host (an IP address, `localhost`, or with `std` any name the
/// resolver knows), a port, and optionally the family (`ipv4` or `ipv6`).
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpAddress {
    host: [u8; 255],
    host_len: usize,
    /// The port.
    pub port: u16,
    /// `Some(true)`: IPv4 only (`family=ipv4`); `Some(false)`: IPv6 only; `None`: either.
    pub ipv4: Option<bool>,
}

impl TcpAddress {
    /// The host, as given (percent-decoded).
    pub fn host(&self) -> &str {
        core::str::from_utf8(&self.host[..self.host_len]).unwrap_or("")
    }

    /// The socket addresses to try, in order, into `out`; returns how many. An IP literal
    /// is itself; `localhost` is 127.0.0.1 and ::1; other names need `std` (the system's
    /// resolver) and are [`Error::InvalidName`] without it.
    pub fn socket_addrs(&self, out: &mut [core::net::SocketAddr; 4]) -> Result<usize> {
        use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        let host = self.host();
        let mut n = 0;
        let mut push = |a: SocketAddr| {
            let wanted = self.ipv4.is_none_or(|v4| v4 == a.is_ipv4());
            if wanted && n < out.len() && !out[..n].contains(&a) {
                out[n] = a;
                n += 1;
            }
        };
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            push(SocketAddr::new(ip, self.port));
        } else if host == "localhost" {
            push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port));
            push(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.port));
        } else {
            #[cfg(feature = "std")]
            {
                use std::net::ToSocketAddrs as _;
                for a in (host, self.port).to_socket_addrs().map_err(|_| Error::InvalidName)? {
                    push(a);
                }
            }
        }
        if n == 0 {
            return Err(Error::InvalidName);
        }
        Ok(n)
    }
}

/// One address of an address string.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// `unix:path=` or `unix:abstract=`.
    Unix(UnixAddress),
    /// `tcp:host=,port=,family=`.
    Tcp(TcpAddress),
}

/// The addresses in `addresses` (`;`-separated) that Ember connects to (`unix:` and
/// `tcp:`), in order. A malformed entry yields [`Error::InvalidName`]; entries of other
/// transports are skipped.
pub fn addresses(addresses: &str) -> impl Iterator<Item = Result<Address>> + '_ {
    addresses.split(';').filter(|a| !a.is_empty()).filter_map(|entry| match entry.split_once(':') {
        Some(("tcp", params)) => Some(parse_tcp(params)),
        _ => parse_one(entry).map(|r| r.map(Address::Unix)),
    })
}

fn parse_tcp(params: &str) -> Result<Address> {
    let mut a = TcpAddress { host: [0; 255], host_len: 0, port: 0, ipv4: None };
    let mut port = None;
    for kv in params.split(',').filter(|kv| !kv.is_empty()) {
        let (key, value) = kv.split_once('=').ok_or(Error::InvalidName)?;
        let mut decoded = [0u8; 255];
        let len = percent_decode(value, &mut decoded)?;
        let value = core::str::from_utf8(&decoded[..len]).map_err(|_| Error::InvalidName)?;
        match key {
            "host" => {
                a.host[..len].copy_from_slice(value.as_bytes());
                a.host_len = len;
            }
            "port" => port = Some(value.parse::<u16>().map_err(|_| Error::InvalidName)?),
            "family" => {
                a.ipv4 = Some(match value {
                    "ipv4" => true,
                    "ipv6" => false,
                    _ => return Err(Error::InvalidName),
                })
            }
            // `guid`, `bind` (servers') and unknown keys: ignored.
            _ => {}
        }
    }
    // The specification: host defaults to localhost; a client needs a port other than 0.
    if a.host_len == 0 {
        a.host[..9].copy_from_slice(b"localhost");
        a.host_len = 9;
    }
    a.port = port.filter(|&p| p != 0).ok_or(Error::InvalidName)?;
    Ok(Address::Tcp(a))
}

/// The Unix socket addresses in `addresses` (`;`-separated), in order. An entry that is
/// malformed makes the iterator yield [`Error::InvalidName`] for it; entries of other
/// transports are skipped.
pub fn unix_addresses(addresses: &str) -> impl Iterator<Item = Result<UnixAddress>> + '_ {
    addresses.split(';').filter(|a| !a.is_empty()).filter_map(parse_one)
}

fn parse_one(entry: &str) -> Option<Result<UnixAddress>> {
    let (transport, params) = entry.split_once(':').unwrap_or((entry, ""));
    if transport != "unix" {
        return None;
    }
    let mut found = None;
    for kv in params.split(',').filter(|kv| !kv.is_empty()) {
        let Some((key, value)) = kv.split_once('=') else { return Some(Err(Error::InvalidName)) };
        match key {
            "path" | "abstract" => {
                if found.is_some() {
                    return Some(Err(Error::InvalidName));
                }
                found = Some(decode(value, key == "abstract"));
            }
            // `guid`, servers' keys (`dir`, `tmpdir`, `runtime`) and unknown keys: ignored.
            _ => {}
        }
    }
    // Without `path` or `abstract` (`unix:dir=`/`tmpdir=`/`runtime=` are for servers):
    // nothing to connect to.
    found
}

/// Percent-decodes `value` into a [`UnixAddress`].
fn decode(value: &str, abstract_name: bool) -> Result<UnixAddress> {
    let mut a = UnixAddress { buf: [0; MAX_PATH], len: 0, abstract_name };
    a.len = percent_decode(value, &mut a.buf)?;
    if a.len == 0 || (!abstract_name && core::str::from_utf8(&a.buf[..a.len]).is_err()) {
        return Err(Error::InvalidName);
    }
    Ok(a)
}

/// Percent-decodes `value` into `out`; returns the length.
fn percent_decode(value: &str, out: &mut [u8]) -> Result<usize> {
    let mut len = 0;
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(Error::InvalidName)?;
            let hex = core::str::from_utf8(hex).map_err(|_| Error::InvalidName)?;
            i += 3;
            u8::from_str_radix(hex, 16).map_err(|_| Error::InvalidName)?
        } else {
            i += 1;
            b[i - 1]
        };
        *out.get_mut(len).ok_or(Error::InvalidName)? = c;
        len += 1;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_abstract_names_and_lists() {
        let all: std::vec::Vec<_> = unix_addresses(
            "tcp:host=x,port=1;unix:abstract=/tmp/dbus-ab%2Ccd,guid=0123;unix:path=/run/a%20b;unix:tmpdir=/tmp",
        )
        .collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].unwrap().name(), UnixName::Abstract(b"/tmp/dbus-ab,cd"));
        assert_eq!(all[1].unwrap().name(), UnixName::Path("/run/a b"));
        assert_eq!(
            unix_addresses(SYSTEM_BUS_DEFAULT).next().unwrap().unwrap().name(),
            UnixName::Path("/var/run/dbus/system_bus_socket")
        );
    }

    #[test]
    fn parses_tcp() {
        let all: std::vec::Vec<_> =
            addresses("tcp:host=127.0.0.1,port=4711,family=ipv4,guid=00;unix:path=/a;tcp:port=5,family=ipv6").collect();
        let Ok(Address::Tcp(t)) = all[0] else { panic!("{all:?}") };
        assert_eq!((t.host(), t.port, t.ipv4), ("127.0.0.1", 4711, Some(true)));
        let mut out = [core::net::SocketAddr::from(([0, 0, 0, 0], 0)); 4];
        assert_eq!(t.socket_addrs(&mut out), Ok(1));
        assert_eq!(out[0], core::net::SocketAddr::from(([127, 0, 0, 1], 4711)));
        assert!(matches!(all[1], Ok(Address::Unix(_))));
        let Ok(Address::Tcp(t)) = all[2] else { panic!("{all:?}") };
        assert_eq!(t.host(), "localhost");
        assert_eq!(t.socket_addrs(&mut out), Ok(1), "localhost, IPv6 only: ::1");
        assert_eq!(out[0], "[::1]:5".parse().unwrap());
        for bad in ["tcp:host=a", "tcp:host=a,port=0", "tcp:port=70000", "tcp:port=1,family=ipx", "tcp:port"] {
            assert_eq!(addresses(bad).next(), Some(Err(Error::InvalidName)), "{bad}");
        }
        // The Unix-only iterator still skips it.
        assert_eq!(unix_addresses("tcp:host=a,port=1").count(), 0);
    }

    #[test]
    fn refuses_malformed_entries() {
        for bad in ["unix:path", "unix:path=", "unix:path=%zz", "unix:path=%4", "unix:path=a,abstract=b"] {
            assert_eq!(unix_addresses(bad).next(), Some(Err(Error::InvalidName)), "{bad}");
        }
        let long = std::format!("unix:path=/{}", "x".repeat(200));
        assert_eq!(unix_addresses(&long).next(), Some(Err(Error::InvalidName)));
    }
}
