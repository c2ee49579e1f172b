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

/// Whether `b` is a valid object path.
pub fn is_object_path(b: &[u8]) -> bool {
    if b == b"/" {
        return true;
    }
    if b.first() != Some(&b'/') || b.last() == Some(&b'/') {
        return false;
    }
    b[1..].split(|&c| c == b'/').all(|e| !e.is_empty() && e.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_'))
}

/// Whether `b` is a valid interface (or error) name.
pub fn is_interface_name(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return false;
    }
    let mut elements = 0;
    for e in b.split(|&c| c == b'.') {
        if e.is_empty() || e[0].is_ascii_digit() || !e.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_') {
            return false;
        }
        elements += 1;
    }
    elements >= 2
}

/// Whether `b` is a valid member name.
pub fn is_member_name(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && !b[0].is_ascii_digit()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Whether `b` is a valid bus name (unique or well-known).
pub fn is_bus_name(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return false;
    }
    let (unique, rest) = match b.split_first() {
        Some((b':', rest)) => (true, rest),
        _ => (false, b),
    };
    let mut elements = 0;
    for e in rest.split(|&c| c == b'.') {
        if e.is_empty() || !e.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            return false;
        }
        if !unique && e[0].is_ascii_digit() {
            return false;
        }
        elements += 1;
    }
    elements >= 2
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
