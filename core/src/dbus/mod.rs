//! D-Bus marshalling without a heap: the wire format of the D-Bus specification (version 1),
//! built into and parsed from caller buffers.
//!
//! - [`names`]: object paths, bus, interface, member and error names, checked once into
//!   borrowed newtypes.
//! - [`signature`]: type signatures, checked against the spec's length and nesting limits,
//!   and walked one complete type at a time.
//! - [`marshal`]: the [`Writer`] that writes values with the spec's
//!   alignment (counted from the message start) and zero padding.
//! - [`value`]: the [`Reader`] and borrowed [`Value`]s that
//!   read a body in either byte order, checking padding, booleans, UTF-8 and nesting.
//! - [`header`]: messages: a builder for method calls, returns, errors and signals, and a
//!   parser that returns a borrowed [`Message`] after validating all of
//!   it (header fields required per type, body against its signature, fd indices).
//!
//! Nothing here allocates, and nothing panics on a message from the wire: every check
//! returns a [`DbusError`]. The connection (sockets, authentication, the bus) lives in
//! `ember-ipc-linux`.

pub mod header;
pub mod marshal;
pub mod names;
pub mod signature;
pub mod typed;
pub mod value;

pub use header::{Builder, Message, MessageType};
pub use marshal::Writer;
pub use names::{BusName, ErrorName, InterfaceName, MemberName, ObjectPath};
pub use signature::Signature;
pub use typed::{
    ArrayView, Body, DbusType, Decode, DecodeBody, Dict, DictView, Encode, EncodeBody, Fd, ToVariant, Var,
};
pub use value::{Reader, Value, Variant};

/// `#[derive(DbusStruct)]`: a Rust struct as a D-Bus struct `(...)`, its fields in order
/// (named or tuple fields, at least one). Implements [`DbusType`], [`Encode`] and
/// [`Decode`]; a struct with a lifetime borrows from the message (`&'a str`, views).
/// `#[ember(crate = "ember_linux::core")]` where `ember_core` is reached through
/// `ember_linux`. See [`typed`].
pub use ember_derive::DbusStruct;

/// The largest message the specification allows: 128 MiB.
pub const MAX_MESSAGE_LEN: usize = 128 * 1024 * 1024;
/// The largest array the specification allows: 64 MiB.
pub const MAX_ARRAY_LEN: usize = 64 * 1024 * 1024;
/// The longest signature: 255 bytes.
pub const MAX_SIGNATURE_LEN: usize = 255;
/// Deepest array nesting.
pub const MAX_ARRAY_DEPTH: usize = 32;
/// Deepest struct nesting. A dict entry is counted with its array, not as a struct (as
/// libdbus and GLib count).
pub const MAX_STRUCT_DEPTH: usize = 32;
/// Deepest nesting of all containers together (arrays, structs, dict entries, variants).
pub const MAX_TOTAL_DEPTH: usize = 64;
/// The longest name (bus, interface, member, error): 255 bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A byte order, as the first byte of a message says it.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Endian {
    /// `l`: little-endian.
    Little,
    /// `B`: big-endian.
    Big,
}

impl Endian {
    /// This machine's byte order (what Ember sends).
    pub const NATIVE: Endian = if cfg!(target_endian = "big") { Endian::Big } else { Endian::Little };

    /// The marker byte (`l` or `B`).
    pub const fn marker(self) -> u8 {
        match self {
            Endian::Little => b'l',
            Endian::Big => b'B',
        }
    }

    /// The byte order of a marker byte.
    pub const fn from_marker(b: u8) -> Option<Endian> {
        match b {
            b'l' => Some(Endian::Little),
            b'B' => Some(Endian::Big),
            _ => None,
        }
    }
}

/// Why a D-Bus message could not be built or parsed.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DbusError {
    /// The caller's buffer is too small for what is being written.
    BufferTooSmall,
    /// The data ends before the value, padding or message it should hold.
    Truncated,
    /// A padding byte is not zero.
    NonZeroPadding,
    /// A boolean is neither 0 nor 1.
    BadBoolean,
    /// A string is not valid UTF-8.
    BadUtf8,
    /// A string contains a NUL byte, or is not followed by one.
    BadNul,
    /// A signature is malformed or breaks a limit (length, nesting).
    BadSignature,
    /// An object path is malformed.
    BadObjectPath,
    /// A bus name is malformed.
    BadBusName,
    /// An interface name is malformed.
    BadInterfaceName,
    /// A member name is malformed.
    BadMemberName,
    /// An error name is malformed.
    BadErrorName,
    /// Containers nest deeper than the specification allows.
    TooDeep,
    /// An array is longer than 64 MiB, or its length does not match its elements.
    BadArrayLength,
    /// The message is larger than the limit in force.
    TooLarge {
        /// Its length (or its declared length).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The first byte is neither `l` nor `B`.
    BadEndian,
    /// The protocol version is not 1.
    BadVersion,
    /// The message type is not 1 to 4.
    BadMessageType,
    /// The serial is 0.
    ZeroSerial,
    /// A header field required for this message type is missing (its code).
    MissingField(u8),
    /// A header field has the wrong type, or appears twice (its code).
    BadField(u8),
    /// The body does not match its signature (too short, too long, or a value of another
    /// type).
    BodyMismatch,
    /// A Unix fd index is not below the message's `UNIX_FDS` count.
    BadFdIndex,
    /// A value of this type was asked for, but the next value has another type.
    WrongType,
    /// A typed read ([`typed`]): the message's (or the variant's) signature is not the
    /// type's.
    SignatureMismatch,
}

impl core::fmt::Display for DbusError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DbusError::BufferTooSmall => f.write_str("D-Bus: buffer too small"),
            DbusError::Truncated => f.write_str("D-Bus: data truncated"),
            DbusError::NonZeroPadding => f.write_str("D-Bus: non-zero padding"),
            DbusError::BadBoolean => f.write_str("D-Bus: boolean is not 0 or 1"),
            DbusError::BadUtf8 => f.write_str("D-Bus: string is not UTF-8"),
            DbusError::BadNul => f.write_str("D-Bus: string has an interior NUL or no terminating NUL"),
            DbusError::BadSignature => f.write_str("D-Bus: bad signature"),
            DbusError::BadObjectPath => f.write_str("D-Bus: bad object path"),
            DbusError::BadBusName => f.write_str("D-Bus: bad bus name"),
            DbusError::BadInterfaceName => f.write_str("D-Bus: bad interface name"),
            DbusError::BadMemberName => f.write_str("D-Bus: bad member name"),
            DbusError::BadErrorName => f.write_str("D-Bus: bad error name"),
            DbusError::TooDeep => f.write_str("D-Bus: containers nested too deep"),
            DbusError::BadArrayLength => f.write_str("D-Bus: bad array length"),
            DbusError::TooLarge { len, max } => write!(f, "D-Bus: message of {len} bytes exceeds {max}"),
            DbusError::BadEndian => f.write_str("D-Bus: bad byte-order marker"),
            DbusError::BadVersion => f.write_str("D-Bus: protocol version is not 1"),
            DbusError::BadMessageType => f.write_str("D-Bus: bad message type"),
            DbusError::ZeroSerial => f.write_str("D-Bus: serial is 0"),
            DbusError::MissingField(c) => write!(f, "D-Bus: required header field {c} missing"),
            DbusError::BadField(c) => write!(f, "D-Bus: header field {c} is malformed or repeated"),
            DbusError::BodyMismatch => f.write_str("D-Bus: body does not match its signature"),
            DbusError::BadFdIndex => f.write_str("D-Bus: fd index out of range"),
            DbusError::WrongType => f.write_str("D-Bus: value of another type"),
            DbusError::SignatureMismatch => f.write_str("D-Bus: the signature is not the type's"),
        }
    }
}

impl core::error::Error for DbusError {}

/// `Result` with [`DbusError`].
pub type Result<T, E = DbusError> = core::result::Result<T, E>;

/// Rounds `pos` up to a multiple of `align` (a power of two).
pub(crate) const fn align_up(pos: usize, align: usize) -> usize {
    (pos + align - 1) & !(align - 1)
}
