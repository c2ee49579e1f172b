//! Fuzzes `emberctl`'s endpoint URI parser (`send`, `recv`, `ls`): the input, as UTF-8, is
//! the URI.
//!
//! Checked: nothing panics; an accepted URI prints (`Display`) as a URI that parses to the
//! same endpoint, and prints the same again; a refused one says it is a bad URI.
//!
//! `tcp:` and `udp:` URIs whose host is not an IP address literal are left out: the parser
//! resolves host names (`getaddrinfo`), and a fuzzer must not send DNS queries.
#![no_main]

use ember_ipc_cli::fuzzing::Uri;
use libfuzzer_sys::fuzz_target;

/// Whether parsing `uri` could resolve a host name.
fn resolves(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("tcp:").or_else(|| uri.strip_prefix("udp:")) else {
        return false;
    };
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.parse::<std::net::IpAddr>().is_err()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if resolves(text) {
        return;
    }
    match Uri::parse(text) {
        Ok(uri) => {
            let printed = uri.to_string();
            let again = Uri::parse(&printed).unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
            assert_eq!(again, uri, "{text:?} printed as {printed:?}");
            assert_eq!(again.to_string(), printed);
        }
        Err(e) => assert!(e.0.starts_with("bad URI"), "{e}"),
    }
});
