//! D-Bus server addresses: `unix:path=/run/dbus/system_bus_socket`,
//! `unix:abstract=/tmp/dbus-3f9a,guid=...`, several separated by `;` and tried in order.
//! Values are percent-decoded into a fixed buffer; other transports (`tcp:`, `launchd:`,
//! `unix:dir=` and `unix:tmpdir=`, which only servers use) are skipped.

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
        *a.buf.get_mut(a.len).ok_or(Error::InvalidName)? = c;
        a.len += 1;
    }
    if a.len == 0 || (!abstract_name && core::str::from_utf8(&a.buf[..a.len]).is_err()) {
        return Err(Error::InvalidName);
    }
    Ok(a)
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
    fn refuses_malformed_entries() {
        for bad in ["unix:path", "unix:path=", "unix:path=%zz", "unix:path=%4", "unix:path=a,abstract=b"] {
            assert_eq!(unix_addresses(bad).next(), Some(Err(Error::InvalidName)), "{bad}");
        }
        let long = std::format!("unix:path=/{}", "x".repeat(200));
        assert_eq!(unix_addresses(&long).next(), Some(Err(Error::InvalidName)));
    }
}
