//! Names and object paths, checked once against the specification's rules into borrowed
//! newtypes (in the manner of `zbus_names`, without allocation).

use super::{DbusError, MAX_NAME_LEN, Result};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:ident, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name<'a>(&'a str);

        impl<'a> $name<'a> {
            /// Checks `s` and wraps it.
            pub fn new(s: &'a str) -> Result<$name<'a>> {
                if $check(s.as_bytes()) { Ok($name(s)) } else { Err(DbusError::$err) }
            }

            /// The name as a string.
            pub const fn as_str(&self) -> &'a str {
                self.0
            }
        }

        impl core::fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.0)
            }
        }

        impl<'a> TryFrom<&'a str> for $name<'a> {
            type Error = DbusError;
            fn try_from(s: &'a str) -> Result<$name<'a>> {
                $name::new(s)
            }
        }
    };
}

name_type!(
    /// An object path: `/`, or `/` followed by `/`-separated elements of `[A-Za-z0-9_]`, none
    /// empty, no trailing `/`.
    ObjectPath,
    is_object_path,
    BadObjectPath
);
name_type!(
    /// A bus name: a unique name (`:1.42`) or a well-known name (`org.example.Service`): two
    /// or more `.`-separated elements of `[A-Za-z0-9_-]` (a well-known name's elements do
    /// not start with a digit), at most 255 bytes.
    BusName,
    is_bus_name,
    BadBusName
);
name_type!(
    /// An interface name: two or more `.`-separated elements of `[A-Za-z0-9_]`, none
    /// starting with a digit, at most 255 bytes.
    InterfaceName,
    is_interface_name,
    BadInterfaceName
);
name_type!(
    /// A member (method or signal) name: one element of `[A-Za-z0-9_]`, not starting with a
    /// digit, 1 to 255 bytes.
    MemberName,
    is_member_name,
    BadMemberName
);
name_type!(
    /// An error name: the same rules as an interface name.
    ErrorName,
    is_interface_name,
    BadErrorName
);

/// Character classes of name bytes, one table lookup per byte.
const WORD: u8 = 1; // [A-Za-z0-9_]
const DIGIT: u8 = 2; // [0-9]
const DASH: u8 = 4; // '-'

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[c] |= WORD;
        }
        if b.is_ascii_digit() {
            t[c] |= DIGIT;
        }
        if b == b'-' {
            t[c] |= DASH;
        }
        c += 1;
    }
    t
};

/// Whether `b` is a valid object path.
pub fn is_object_path(b: &[u8]) -> bool {
    let Some((&b'/', rest)) = b.split_first() else { return false };
    if rest.is_empty() {
        return true;
    }
    // One pass: no empty element (`//`), no trailing `/`, element bytes in [A-Za-z0-9_].
    let mut after_slash = true;
    for &c in rest {
        if c == b'/' {
            if after_slash {
                return false;
            }
            after_slash = true;
        } else if CLASS[c as usize] & WORD != 0 {
            after_slash = false;
        } else {
            return false;
        }
    }
    !after_slash
}

/// Whether `b` is two or more `.`-separated non-empty elements of bytes in `allowed`,
/// none starting with a digit unless `digit_start`.
fn is_dotted(b: &[u8], allowed: u8, digit_start: bool) -> bool {
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return false;
    }
    let mut elements = 1;
    let mut at_start = true;
    for &c in b {
        let class = CLASS[c as usize];
        if c == b'.' {
            if at_start {
                return false;
            }
            elements += 1;
            at_start = true;
        } else if class & allowed != 0 {
            if at_start && !digit_start && class & DIGIT != 0 {
                return false;
            }
            at_start = false;
        } else {
            return false;
        }
    }
    !at_start && elements >= 2
}

/// Whether `b` is a valid interface (or error) name.
pub fn is_interface_name(b: &[u8]) -> bool {
    is_dotted(b, WORD, false)
}

/// Whether `b` is a valid member name.
pub fn is_member_name(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && CLASS[b[0] as usize] & DIGIT == 0
        && b.iter().all(|&c| CLASS[c as usize] & WORD != 0)
}

/// Whether `b` is a valid bus name (unique or well-known).
pub fn is_bus_name(b: &[u8]) -> bool {
    match b.split_first() {
        // A unique name: its elements may start with a digit; the length counts the ':'.
        Some((b':', rest)) => b.len() <= MAX_NAME_LEN && is_dotted(rest, WORD | DASH, true),
        _ => is_dotted(b, WORD | DASH, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths() {
        for ok in ["/", "/a", "/org/freedesktop/DBus", "/a_1/B2"] {
            assert!(ObjectPath::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "/a/", "//", "/a//b", "/a-b", "/a.b", "/ä"] {
            assert_eq!(ObjectPath::new(bad), Err(DbusError::BadObjectPath), "{bad}");
        }
    }

    #[test]
    fn bus_names() {
        for ok in [":1.42", "org.freedesktop.DBus", "a.b", "com.example-app.x_y", ":a.1"] {
            assert!(BusName::new(ok).is_ok(), "{ok}");
        }
        let long = "a.".repeat(128);
        for bad in ["", "org", ".a", "a.", "a..b", "1a.b", "a.2b", "a.b c", ":", long.as_str()] {
            assert_eq!(BusName::new(bad), Err(DbusError::BadBusName), "{bad}");
        }
    }

    #[test]
    fn interface_member_and_error_names() {
        assert!(InterfaceName::new("org.freedesktop.DBus.Properties").is_ok());
        for bad in ["org", "org.1x", "org.a-b", "org..a", ""] {
            assert_eq!(InterfaceName::new(bad), Err(DbusError::BadInterfaceName), "{bad}");
        }
        assert!(MemberName::new("GetAll").is_ok());
        for bad in ["", "1a", "a.b", "a-b"] {
            assert_eq!(MemberName::new(bad), Err(DbusError::BadMemberName), "{bad}");
        }
        assert!(ErrorName::new("org.freedesktop.DBus.Error.ServiceUnknown").is_ok());
        assert_eq!(ErrorName::new("Failed"), Err(DbusError::BadErrorName));
    }
}
