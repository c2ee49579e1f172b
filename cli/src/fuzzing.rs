//! The command's parsers, for the fuzz targets of `fuzz/` (hidden: not a stable API).
//!
//! - [`Uri::parse`]: endpoint URIs (`emberctl send`, `recv`, `ls`).
//! - [`parse_value`] and [`print_value`]: D-Bus values in the GVariant text format
//!   (`emberctl dbus call`/`emit` arguments; replies and decoded messages).
//! - [`decode_capture`]: `emberctl dbus decode`'s reader of pcap, pcapng and raw captures.
//!
//! `docs/fuzzing.md` says what each target checks.

pub use crate::dbus::decode::{Malformed, decode_all_as as decode_capture};
pub use crate::dbus::text::{Val, parse as parse_value, print as print_value};
pub use crate::uri::{BadUri, Uri};
