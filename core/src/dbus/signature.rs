//! Type signatures: checked against the grammar and the specification's limits (255 bytes,
//! 32 nested arrays, 32 nested structs), walked one complete type at a time.

use super::{DbusError, MAX_ARRAY_DEPTH, MAX_SIGNATURE_LEN, MAX_STRUCT_DEPTH, Result};

/// A valid signature: zero or more complete types.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature<'a>(&'a str);

impl<'a> Signature<'a> {
    /// The empty signature (no values).
    pub const EMPTY: Signature<'static> = Signature("");

    /// Checks `s` and wraps it.
    pub fn new(s: &'a str) -> Result<Signature<'a>> {
        validate(s.as_bytes())?;
        Ok(Signature(s))
    }

    /// Wraps a signature already checked.
    pub(crate) const fn new_unchecked(s: &'a str) -> Signature<'a> {
        Signature(s)
    }

    /// The one-type signature of a basic type code or `v` (`None` for other bytes).
    pub const fn single_code(c: u8) -> Option<Signature<'static>> {
        Some(Signature(match c {
            b'y' => "y",
            b'b' => "b",
            b'n' => "n",
            b'q' => "q",
            b'i' => "i",
            b'u' => "u",
            b'x' => "x",
            b't' => "t",
            b'd' => "d",
            b'h' => "h",
            b's' => "s",
            b'o' => "o",
            b'g' => "g",
            b'v' => "v",
            _ => return None,
        }))
    }

    /// The signature as a string.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    /// Whether it has no types.
    pub const fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether it is exactly one complete type (what a variant holds).
    pub fn is_single(&self) -> bool {
        if let [c] = self.0.as_bytes() {
            return is_basic(*c) || *c == b'v';
        }
        !self.0.is_empty() && complete_len(self.0.as_bytes(), 0, 0) == Ok(self.0.len())
    }

    /// The complete types, in order.
    pub fn types(&self) -> Types<'a> {
        Types(self.0)
    }
}

impl core::fmt::Display for Signature<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

/// The complete types of a signature, each as a one-type signature.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub struct Types<'a>(&'a str);

impl<'a> Types<'a> {
    /// The types not returned yet.
    pub fn rest(&self) -> Signature<'a> {
        Signature(self.0)
    }
}

impl<'a> Iterator for Types<'a> {
    type Item = Signature<'a>;
    fn next(&mut self) -> Option<Signature<'a>> {
        let first = *self.0.as_bytes().first()?;
        let n = if is_basic(first) || first == b'v' { 1 } else { complete_len(self.0.as_bytes(), 0, 0).ok()? };
        let (first, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(Signature(first))
    }
}

/// Checks a whole signature: at most 255 bytes of complete types.
pub fn validate(s: &[u8]) -> Result<()> {
    if let [c] = s {
        return if is_basic(*c) || *c == b'v' { Ok(()) } else { Err(DbusError::BadSignature) };
    }
    if s.len() > MAX_SIGNATURE_LEN {
        return Err(DbusError::BadSignature);
    }
    let mut rest = s;
    while !rest.is_empty() {
        let n = complete_len(rest, 0, 0)?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Whether `c` is a basic type code (allowed as a dict key).
pub const fn is_basic(c: u8) -> bool {
    matches!(c, b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o' | b'g')
}

/// The alignment of values of the type starting with `c`.
pub const fn alignment(c: u8) -> usize {
    match c {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b'h' | b's' | b'o' | b'a' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

/// The length of the first complete type of `s`, with `arrays` and `structs` containers
/// already open around it.
pub(crate) fn complete_len(s: &[u8], arrays: usize, structs: usize) -> Result<usize> {
    let c = *s.first().ok_or(DbusError::BadSignature)?;
    if is_basic(c) || c == b'v' {
        return Ok(1);
    }
    match c {
        b'a' => {
            if arrays + 1 > MAX_ARRAY_DEPTH {
                return Err(DbusError::BadSignature);
            }
            if s.get(1) == Some(&b'{') {
                // A dict entry: `{` basic key, one complete value, `}`; only as an element.
                // It is counted with its array, not as a struct (as libdbus and GLib count:
                // `a{s(` x 17 `y` `)}` x 17 is 17 arrays and 17 structs).
                let key = *s.get(2).ok_or(DbusError::BadSignature)?;
                if !is_basic(key) {
                    return Err(DbusError::BadSignature);
                }
                let value = complete_len(s.get(3..).ok_or(DbusError::BadSignature)?, arrays + 1, structs)?;
                if s.get(3 + value) != Some(&b'}') {
                    return Err(DbusError::BadSignature);
                }
                Ok(4 + value)
            } else {
                Ok(1 + complete_len(&s[1..], arrays + 1, structs)?)
            }
        }
        b'(' => {
            if structs + 1 > MAX_STRUCT_DEPTH {
                return Err(DbusError::BadSignature);
            }
            let mut i = 1;
            loop {
                match s.get(i) {
                    None => return Err(DbusError::BadSignature),
                    Some(b')') if i == 1 => return Err(DbusError::BadSignature),
                    Some(b')') => return Ok(i + 1),
                    Some(_) => i += complete_len(&s[i..], arrays, structs + 1)?,
                }
            }
        }
        _ => Err(DbusError::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_signatures() {
        for ok in ["", "y", "ybnqiuxtdhsogv", "as", "a{sv}", "(iias)", "a(ii)", "aay", "a{s(ai)}", "(y(y(y)))"] {
            assert!(Signature::new(ok).is_ok(), "{ok}");
        }
        let types: std::vec::Vec<&str> = Signature::new("ia{sv}(ii)as").unwrap().types().map(|t| t.as_str()).collect();
        assert_eq!(types, ["i", "a{sv}", "(ii)", "as"]);
        assert!(Signature::new("a{sv}").unwrap().is_single());
        assert!(!Signature::new("ii").unwrap().is_single());
    }

    #[test]
    fn invalid_signatures() {
        for bad in ["a", "(", ")", "()", "(i", "{sv}", "a{vs}", "a{s}", "a{svv}", "z", "a{(i)s}", "ii)"] {
            assert_eq!(Signature::new(bad), Err(DbusError::BadSignature), "{bad}");
        }
    }

    #[test]
    fn limits() {
        let deep_arrays = "a".repeat(32) + "y";
        assert!(Signature::new(&deep_arrays).is_ok());
        let too_deep = "a".repeat(33) + "y";
        assert_eq!(Signature::new(&too_deep), Err(DbusError::BadSignature));
        let structs = "(".repeat(32) + "y" + &")".repeat(32);
        assert!(Signature::new(&structs).is_ok());
        let too_many = "(".repeat(33) + "y" + &")".repeat(33);
        assert_eq!(Signature::new(&too_many), Err(DbusError::BadSignature));
        // Dict entries are not structs: 17 arrays, 17 dict entries, 17 structs.
        let dicts = "a{s(".repeat(17) + "y" + &")}".repeat(17);
        assert!(Signature::new(&dicts).is_ok());
        assert!(Signature::new(&("a{s(".repeat(32) + "y" + &")}".repeat(32))).is_ok());
        let too_deep = "a{s(".repeat(33) + "y" + &")}".repeat(33);
        assert_eq!(Signature::new(&too_deep), Err(DbusError::BadSignature));
        assert!(Signature::new(&"y".repeat(255)).is_ok());
        assert_eq!(Signature::new(&"y".repeat(256)), Err(DbusError::BadSignature));
    }
}
