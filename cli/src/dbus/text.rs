//! D-Bus values as text, in the GVariant text format `gdbus` uses: `'a string'`, `42`
//! (an int32), `uint32 42`, `@as ['a', 'b']`, `{'key': <1>}`, `(1, 'x')`, `<'variant'>`.
//! Parsed for `emberctl dbus call`/`emit` arguments, printed for replies, signals and decoded
//! messages; what is printed parses back to the same value.

use ember_core::dbus::marshal::Writer;
use ember_core::dbus::{DbusError, ObjectPath, Signature, Value};
use std::fmt::Write as _;

/// A value parsed from text, owning its data.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// `y`
    Byte(u8),
    /// `b`
    Bool(bool),
    /// `n`
    I16(i16),
    /// `q`
    U16(u16),
    /// `i`
    I32(i32),
    /// `u`
    U32(u32),
    /// `x`
    I64(i64),
    /// `t`
    U64(u64),
    /// `d`
    F64(f64),
    /// `s`
    Str(String),
    /// `o`
    Path(String),
    /// `g`
    Sig(String),
    /// `a…` (not a dict): the element signature and the elements.
    Array(String, Vec<Val>),
    /// `a{…}`: key and value signatures, then the entries.
    Dict(String, String, Vec<(Val, Val)>),
    /// `(…)`
    Struct(Vec<Val>),
    /// `v`
    Variant(Box<Val>),
}

impl Val {
    /// The value's D-Bus signature.
    pub fn signature(&self) -> String {
        match self {
            Val::Byte(_) => "y".into(),
            Val::Bool(_) => "b".into(),
            Val::I16(_) => "n".into(),
            Val::U16(_) => "q".into(),
            Val::I32(_) => "i".into(),
            Val::U32(_) => "u".into(),
            Val::I64(_) => "x".into(),
            Val::U64(_) => "t".into(),
            Val::F64(_) => "d".into(),
            Val::Str(_) => "s".into(),
            Val::Path(_) => "o".into(),
            Val::Sig(_) => "g".into(),
            Val::Array(e, _) => format!("a{e}"),
            Val::Dict(k, v, _) => format!("a{{{k}{v}}}"),
            Val::Struct(f) => format!("({})", f.iter().map(Val::signature).collect::<String>()),
            Val::Variant(_) => "v".into(),
        }
    }

    /// Marshals the value.
    pub fn write(&self, w: &mut Writer<'_>) -> Result<(), DbusError> {
        match self {
            Val::Byte(x) => w.u8(*x),
            Val::Bool(x) => w.bool(*x),
            Val::I16(x) => w.i16(*x),
            Val::U16(x) => w.u16(*x),
            Val::I32(x) => w.i32(*x),
            Val::U32(x) => w.u32(*x),
            Val::I64(x) => w.i64(*x),
            Val::U64(x) => w.u64(*x),
            Val::F64(x) => w.f64(*x),
            Val::Str(s) => w.str(s),
            Val::Path(p) => w.object_path(ObjectPath::new(p)?),
            Val::Sig(s) => w.signature(Signature::new(s)?),
            Val::Array(e, items) => w.array(e.as_bytes()[0], |w| items.iter().try_for_each(|v| v.write(w))),
            Val::Dict(_, _, entries) => w.array(b'{', |w| {
                entries.iter().try_for_each(|(k, v)| {
                    w.structure(|w| {
                        k.write(w)?;
                        v.write(w)
                    })
                })
            }),
            Val::Struct(f) => w.structure(|w| f.iter().try_for_each(|v| v.write(w))),
            Val::Variant(v) => {
                let sig = v.signature();
                w.variant(Signature::new(&sig)?, |w| v.write(w))
            }
        }
    }
}

/// Parses one value; `what` names it in errors (e.g. `argument 2`).
pub fn parse(text: &str, what: &str) -> Result<Val, String> {
    let mut p = Parser { s: text.as_bytes(), pos: 0, depth: 0 };
    let v = p.value(None).map_err(|e| format!("{what} `{text}`: at column {}: {e}", p.pos + 1))?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!(
            "{what} `{text}`: at column {}: unexpected `{}` after the value",
            p.pos + 1,
            &text[p.pos..]
        ));
    }
    let sig = v.signature();
    Signature::new(&sig).map_err(|e| format!("{what} `{text}`: type {sig}: {e}"))?;
    Ok(v)
}

/// `v` as a variant's value: refused if its type is no D-Bus signature (longer than 255
/// bytes, or nested too deep), which the value's own signature, `v`, would not show.
fn boxed(v: Val) -> Result<Val, String> {
    let sig = v.signature();
    Signature::new(&sig).map_err(|e| format!("a variant's value of type {sig}: {e}"))?;
    Ok(Val::Variant(Box::new(v)))
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Containers open around the current value.
    depth: u32,
}

/// Deepest nesting accepted: D-Bus allows 32 arrays and 32 structs (64 in all).
const MAX_DEPTH: u32 = 64;

const KEYWORDS: [(&str, &str); 12] = [
    ("byte", "y"),
    ("boolean", "b"),
    ("int16", "n"),
    ("uint16", "q"),
    ("int32", "i"),
    ("uint32", "u"),
    ("int64", "x"),
    ("uint64", "t"),
    ("double", "d"),
    ("string", "s"),
    ("objectpath", "o"),
    ("signature", "g"),
];

/// The complete types of a signature, in order.
fn split_types(sig: &str) -> Result<Vec<String>, String> {
    let s = Signature::new(sig).map_err(|_| format!("`{sig}` is not a D-Bus signature"))?;
    Ok(s.types().map(|t| t.as_str().to_string()).collect())
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("expected `{}`", c as char)) }
    }

    /// A bare word: letters, digits and `_+-.:/{}()` up to a space or a delimiter.
    fn word(&mut self) -> &str {
        self.ws();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|&c| !c.is_ascii_whitespace() && !b",]>)}:".contains(&c)) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    /// A type after `@`: one complete signature, up to a space.
    fn type_annotation(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|c| !c.is_ascii_whitespace()) {
            self.pos += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| "bad type")?.to_string();
        match split_types(&t)?.as_slice() {
            [one] if *one == t => Ok(t),
            _ => Err(format!("`@{t}`: one complete type expected")),
        }
    }

    fn value(&mut self, expected: Option<&str>) -> Result<Val, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("containers nested deeper than {MAX_DEPTH}"));
        }
        self.depth += 1;
        let v = self.value_inner(expected);
        self.depth -= 1;
        let v = v?;
        match expected {
            // A value where a variant is expected is boxed, as gdbus does.
            Some("v") if !matches!(v, Val::Variant(_)) => boxed(v),
            Some(t) if v.signature() != t => Err(format!("a {} where a {t} is expected", v.signature())),
            _ => Ok(v),
        }
    }

    fn value_inner(&mut self, expected: Option<&str>) -> Result<Val, String> {
        let expected = expected.filter(|t| *t != "v");
        match self.peek() {
            None => Err("a value is missing".into()),
            Some(b'@') => {
                self.pos += 1;
                let t = self.type_annotation()?;
                if expected.is_some_and(|e| e != t) {
                    return Err(format!("@{t} where a {} is expected", expected.unwrap_or("")));
                }
                self.value(Some(&t))
            }
            Some(b'\'' | b'"') => {
                let s = self.string()?;
                match expected {
                    Some("o") => {
                        ObjectPath::new(&s).map_err(|_| format!("`{s}` is not an object path"))?;
                        Ok(Val::Path(s))
                    }
                    Some("g") => {
                        Signature::new(&s).map_err(|_| format!("`{s}` is not a signature"))?;
                        Ok(Val::Sig(s))
                    }
                    _ => Ok(Val::Str(s)),
                }
            }
            Some(b'[') => self.array(expected),
            Some(b'{') => self.dict(expected),
            Some(b'(') => self.tuple(expected),
            Some(b'<') => {
                self.pos += 1;
                let v = self.value(None)?;
                self.expect(b'>')?;
                boxed(v)
            }
            Some(b'b') if matches!(self.s.get(self.pos + 1), Some(b'\'' | b'"')) => {
                if expected.is_some_and(|e| e != "ay") {
                    return Err(format!("a byte string (ay) where a {} is expected", expected.unwrap_or("")));
                }
                self.pos += 1;
                self.bytestring()
            }
            Some(_) => {
                let save = self.pos;
                let w = self.word().to_string();
                if let Some((_, t)) = KEYWORDS.iter().find(|(k, _)| *k == w) {
                    if expected.is_some_and(|e| e != *t) {
                        return Err(format!("`{w}` where a {} is expected", expected.unwrap_or("")));
                    }
                    return self.value(Some(t));
                }
                self.pos = save;
                self.scalar(expected)
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => return Err("unterminated string".into()),
                Some(&c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    // GLib's escapes: \uXXXX, \UXXXXXXXX, \a \b \f \n \r \t \v; any other
                    // character stands for itself (so `\x07` is `x07`, as GLib reads it).
                    let c = *self.s.get(self.pos + 1).ok_or("unterminated string")?;
                    self.pos += 2;
                    let simple = match c {
                        b'a' => Some(0x07),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'v' => Some(0x0b),
                        _ => None,
                    };
                    match (simple, c) {
                        (Some(b), _) => out.push(b),
                        (None, b'u' | b'U') => {
                            let n = if c == b'u' { 4 } else { 8 };
                            let bad = || format!("\\{} needs {n} hex digits", c as char);
                            let h = self.s.get(self.pos..self.pos + n).ok_or_else(bad)?;
                            let h = std::str::from_utf8(h).map_err(|_| bad())?;
                            let code = u32::from_str_radix(h, 16).map_err(|_| bad())?;
                            let ch =
                                char::from_u32(code).ok_or_else(|| format!("\\{}{h} is not a character", c as char))?;
                            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                            self.pos += n;
                        }
                        (None, c) => out.push(c),
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        // D-Bus strings (and object paths, signatures) end at a NUL: found here, not after
        // connecting, when the value is marshalled.
        if out.contains(&0) {
            return Err("a D-Bus string cannot contain NUL (\\u0000)".into());
        }
        String::from_utf8(out).map_err(|_| "a string must be UTF-8".into())
    }

    /// `b'text'` (after the `b`): an `ay` of the bytes and a terminating NUL, as GLib reads
    /// it: octal escapes of 1 to 3 digits, `\\a \\b \\f \\n \\r \\t \\v`, any other escaped
    /// byte itself.
    fn bytestring(&mut self) -> Result<Val, String> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.pos).ok_or("unterminated byte string")?;
            self.pos += 1;
            if c == quote {
                break;
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let e = *self.s.get(self.pos).ok_or("unterminated byte string")?;
            self.pos += 1;
            out.push(match e {
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.s.get(self.pos) {
                            Some(&d @ b'0'..=b'7') => {
                                v = v << 3 | u32::from(d - b'0');
                                self.pos += 1;
                            }
                            _ => break,
                        }
                    }
                    // As GLib: the low 8 bits of `\\777`.
                    v as u8
                }
                b'a' => 0x07,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 0x0b,
                e => e,
            });
        }
        out.push(0);
        Ok(Val::Array("y".into(), out.into_iter().map(Val::Byte).collect()))
    }

    fn scalar(&mut self, expected: Option<&str>) -> Result<Val, String> {
        let w = self.word().to_string();
        if w.is_empty() {
            return Err("a value is missing".into());
        }
        let int = |w: &str| -> Result<i128, String> {
            let (neg, digits) = match w.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, w.strip_prefix('+').unwrap_or(w)),
            };
            // As GLib reads them: 0x hexadecimal, a leading 0 octal (`010` is 8).
            let n = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
                Some(h) => i128::from_str_radix(h, 16),
                None if digits.len() > 1 && digits.starts_with('0') => i128::from_str_radix(&digits[1..], 8),
                None => digits.parse::<i128>(),
            }
            .map_err(|_| format!("`{w}` is not a number"))?;
            Ok(if neg { -n } else { n })
        };
        macro_rules! fit {
            ($t:ty, $v:ident) => {{
                let n = int(&w)?;
                <$t>::try_from(n).map(Val::$v).map_err(|_| format!("{w} does not fit a {}", stringify!($t)))
            }};
        }
        match expected {
            Some("y") => fit!(u8, Byte),
            Some("n") => fit!(i16, I16),
            Some("q") => fit!(u16, U16),
            Some("i") => fit!(i32, I32),
            Some("u") => fit!(u32, U32),
            Some("x") => fit!(i64, I64),
            Some("t") => fit!(u64, U64),
            Some("d") => w.parse::<f64>().map(Val::F64).map_err(|_| format!("`{w}` is not a number")),
            Some("b") | None if w == "true" || w == "false" => Ok(Val::Bool(w == "true")),
            // GLib's spellings of the non-finite doubles.
            None if matches!(w.as_str(), "nan" | "inf" | "-inf" | "+inf") => {
                w.parse::<f64>().map(Val::F64).map_err(|_| format!("`{w}` is not a number"))
            }
            None if w.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c))
                && w.contains(['.', 'e', 'E'])
                && !w.contains("0x") =>
            {
                w.parse::<f64>().map(Val::F64).map_err(|_| format!("`{w}` is not a number"))
            }
            None if w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') => fit!(i32, I32),
            Some(t) => Err(format!("`{w}` is not a {t}")),
            None => Err(format!("`{w}` is not a value (strings are quoted: '{w}')")),
        }
    }

    fn array(&mut self, expected: Option<&str>) -> Result<Val, String> {
        self.expect(b'[')?;
        let mut elem = match expected {
            Some(t) if t.starts_with("a{") => return Err(format!("a dict ({t}) is written {{k: v}}")),
            Some(t) => {
                Some(t.strip_prefix('a').ok_or_else(|| format!("an array where a {t} is expected"))?.to_string())
            }
            None => None,
        };
        let mut items = Vec::new();
        if !self.eat(b']') {
            loop {
                let v = self.value(elem.as_deref())?;
                elem.get_or_insert_with(|| v.signature());
                items.push(v);
                if self.eat(b']') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        let elem = elem.ok_or("an empty array needs its type: @as []")?;
        Ok(Val::Array(elem, items))
    }

    fn dict(&mut self, expected: Option<&str>) -> Result<Val, String> {
        self.expect(b'{')?;
        let (mut k, mut v) = match expected {
            Some(t) => {
                let inner = t
                    .strip_prefix("a{")
                    .and_then(|r| r.strip_suffix('}'))
                    .ok_or_else(|| format!("a dict where a {t} is expected"))?;
                let kv = split_types(inner)?;
                (Some(kv[0].clone()), Some(kv.get(1).cloned().ok_or("a dict entry has two types")?))
            }
            None => (None, None),
        };
        let mut entries = Vec::new();
        if !self.eat(b'}') {
            loop {
                let key = self.value(k.as_deref())?;
                self.expect(b':')?;
                let val = self.value(v.as_deref())?;
                k.get_or_insert_with(|| key.signature());
                v.get_or_insert_with(|| val.signature());
                entries.push((key, val));
                if self.eat(b'}') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        match (k, v) {
            (Some(k), Some(v)) => {
                if !matches!(k.as_str(), "y" | "b" | "n" | "q" | "i" | "u" | "x" | "t" | "d" | "s" | "o" | "g" | "h") {
                    return Err(format!("a dict key must be a basic type, not {k}"));
                }
                Ok(Val::Dict(k, v, entries))
            }
            _ => Err("an empty dict needs its type: @a{sv} {}".into()),
        }
    }

    fn tuple(&mut self, expected: Option<&str>) -> Result<Val, String> {
        self.expect(b'(')?;
        let types = match expected {
            Some(t) => Some(split_types(
                t.strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("a struct where a {t} is expected"))?,
            )?),
            None => None,
        };
        let mut fields = Vec::new();
        while !self.eat(b')') {
            let t = types.as_ref().map(|t| t.get(fields.len()).cloned().ok_or("too many fields")).transpose()?;
            fields.push(self.value(t.as_deref())?);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        if fields.is_empty() {
            return Err("a struct has at least one field".into());
        }
        Ok(Val::Struct(fields))
    }
}

/// Appends `v` as text, as GLib prints it with type annotations (`g_variant_print(v,
/// TRUE)`).
pub fn print(v: &Value<'_>, out: &mut String) -> Result<(), DbusError> {
    print_as(v, true, out)
}

/// Appends `v` as text; `annotate`: with the types a reader cannot guess (`uint32 7`), as
/// GLib gives them: in an array or dict only the first element carries them.
fn print_as(v: &Value<'_>, annotate: bool, out: &mut String) -> Result<(), DbusError> {
    let ann = |out: &mut String, word: &str| {
        if annotate {
            out.push_str(word);
            out.push(' ');
        }
    };
    match v {
        Value::Byte(x) => {
            ann(out, "byte");
            let _ = write!(out, "{x:#04x}");
        }
        Value::Bool(x) => {
            let _ = write!(out, "{x}");
        }
        Value::I16(x) => {
            ann(out, "int16");
            let _ = write!(out, "{x}");
        }
        Value::U16(x) => {
            ann(out, "uint16");
            let _ = write!(out, "{x}");
        }
        Value::I32(x) => {
            let _ = write!(out, "{x}");
        }
        Value::U32(x) => {
            ann(out, "uint32");
            let _ = write!(out, "{x}");
        }
        Value::I64(x) => {
            ann(out, "int64");
            let _ = write!(out, "{x}");
        }
        Value::U64(x) => {
            ann(out, "uint64");
            let _ = write!(out, "{x}");
        }
        Value::F64(x) => double(*x, out),
        Value::Str(s) => quote(s, out),
        Value::Path(p) => {
            ann(out, "objectpath");
            quote(p.as_str(), out);
        }
        Value::Sig(s) => {
            ann(out, "signature");
            quote(s.as_str(), out);
        }
        Value::Fd(i) => {
            ann(out, "handle");
            let _ = write!(out, "{i}");
        }
        Value::Array(a) => {
            let elem = a.element();
            let dict = elem.as_str().starts_with('{');
            let mut items = a.clone().peekable();
            if items.peek().is_none() {
                if annotate {
                    let _ = write!(out, "@a{} ", elem.as_str());
                }
                out.push_str(if dict { "{}" } else { "[]" });
                return Ok(());
            }
            if elem.as_str() == "y" {
                let bytes: Vec<u8> = a.clone().map(|v| v.and_then(u8::try_from)).collect::<Result<_, _>>()?;
                // A byte string: one NUL, at the end (GLib's test).
                if let Some((0, text)) = bytes.split_last()
                    && !text.contains(&0)
                {
                    bytestring(text, out);
                    return Ok(());
                }
            }
            out.push(if dict { '{' } else { '[' });
            for (i, item) in items.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print_as(&item?, annotate && i == 0, out)?;
            }
            out.push(if dict { '}' } else { ']' });
        }
        Value::DictEntry(f) => {
            let mut f = f.clone();
            print_as(&f.next().ok_or(DbusError::BodyMismatch)??, annotate, out)?;
            out.push_str(": ");
            print_as(&f.next().ok_or(DbusError::BodyMismatch)??, annotate, out)?;
        }
        Value::Struct(f) => tuple_as(f.clone(), annotate, out)?,
        Value::Variant(v) => {
            out.push('<');
            print_as(&v.value()?, true, out)?;
            out.push('>');
        }
    }
    Ok(())
}

/// Appends `(v1, v2)` (`(v1,)` for one value, `()` for none), as gdbus prints a reply.
pub fn tuple<'a>(
    values: impl Iterator<Item = Result<Value<'a>, DbusError>>,
    out: &mut String,
) -> Result<(), DbusError> {
    tuple_as(values, true, out)
}

fn tuple_as<'a>(
    values: impl Iterator<Item = Result<Value<'a>, DbusError>>,
    annotate: bool,
    out: &mut String,
) -> Result<(), DbusError> {
    out.push('(');
    let mut n = 0;
    for v in values {
        if n > 0 {
            out.push_str(", ");
        }
        print_as(&v?, annotate, out)?;
        n += 1;
    }
    if n == 1 {
        out.push(',');
    }
    out.push(')');
    Ok(())
}

/// A double as GLib prints it: `%.17g`, with `.0` added when that has no `.` or `e`
/// (`3.0`, `0.10000000000000001`, `1.0000000000000001e+300`), and `nan`, `inf`, `-inf`.
fn double(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let trim = |t: &str| -> String {
        if t.contains('.') { t.trim_end_matches('0').trim_end_matches('.').to_string() } else { t.to_string() }
    };
    // 17 significant digits; the exponent after rounding to them decides the form.
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let text = if !(-4..17).contains(&exp) {
        format!("{}e{}{:02}", trim(mantissa), if exp < 0 { '-' } else { '+' }, exp.unsigned_abs())
    } else {
        trim(&format!("{x:.prec$}", prec = (16 - exp) as usize))
    };
    out.push_str(&text);
    if !text.contains(['.', 'e']) {
        out.push_str(".0");
    }
}

/// Whether GLib prints `c` as it is (`g_unichar_isprint`): not a control character and not
/// a format character. (Unassigned code points, which GLib also escapes, need Unicode's
/// tables: they are printed as they are; either way the text reads back the same.)
fn printable(c: char) -> bool {
    let format = matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    !c.is_control() && !format
}

/// A string as GLib prints it: in `'…'`, or `"…"` if it holds a `'`; the quote and `\\`
/// escaped; what is not printable as `\\a \\b \\f \\n \\r \\t \\v`, `\\uXXXX` or `\\UXXXXXXXX`.
fn quote(s: &str, out: &mut String) {
    let q = if s.contains('\'') { '"' } else { '\'' };
    out.push(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
            out.push(c);
        } else if printable(c) {
            out.push(c);
        } else {
            let _ = match c {
                '\x07' => write!(out, "\\a"),
                '\x08' => write!(out, "\\b"),
                '\x0c' => write!(out, "\\f"),
                '\n' => write!(out, "\\n"),
                '\r' => write!(out, "\\r"),
                '\t' => write!(out, "\\t"),
                '\x0b' => write!(out, "\\v"),
                c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32),
                c => write!(out, "\\U{:08x}", c as u32),
            };
        }
    }
    out.push(q);
}

/// A byte string (without its NUL) as GLib prints it: `b'…'` (`b"…"` if it holds a `'`),
/// escaped as `g_strescape` does: `\\b \\f \\n \\r \\t \\v \\\\ \\"`, other bytes below 0x20
/// or from 0x7f in octal (`\\001`).
fn bytestring(bytes: &[u8], out: &mut String) {
    let q = if bytes.contains(&b'\'') { '"' } else { '\'' };
    out.push('b');
    out.push(q);
    for &b in bytes {
        let _ = match b {
            0x08 => write!(out, "\\b"),
            0x0c => write!(out, "\\f"),
            b'\n' => write!(out, "\\n"),
            b'\r' => write!(out, "\\r"),
            b'\t' => write!(out, "\\t"),
            0x0b => write!(out, "\\v"),
            b'\\' => write!(out, "\\\\"),
            b'"' => write!(out, "\\\""),
            b if !(0x20..0x7f).contains(&b) => write!(out, "\\{b:03o}"),
            b => write!(out, "{}", b as char),
        };
    }
    out.push(q);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_core::dbus::Endian;
    use ember_core::dbus::value::Reader;

    /// Parses, marshals, reads back and prints: the text that comes out parses to the
    /// same value.
    fn round_trip(text: &str) -> (String, String) {
        let v = parse(text, "test").unwrap();
        let sig = v.signature();
        let mut buf = [0u8; 4096];
        let mut w = Writer::new(&mut buf);
        v.write(&mut w).unwrap();
        let n = w.position();
        let mut r = Reader::new(&buf[..n], Endian::NATIVE);
        let read = r.value(Signature::new(&sig).unwrap()).unwrap();
        let mut out = String::new();
        print(&read, &mut out).unwrap();
        // Compared as debug text: NaN is not equal to itself.
        assert_eq!(format!("{:?}", parse(&out, "again").unwrap()), format!("{v:?}"), "{text} printed as {out}");
        (sig, out)
    }

    #[test]
    fn values_round_trip() {
        for (text, sig, printed) in [
            ("'hello'", "s", "'hello'"),
            ("42", "i", "42"),
            ("-7", "i", "-7"),
            ("uint32 7", "u", "uint32 7"),
            ("@t 0x10", "t", "uint64 16"),
            ("byte 255", "y", "byte 0xff"),
            ("true", "b", "true"),
            ("1.5", "d", "1.5"),
            ("objectpath '/a/b'", "o", "objectpath '/a/b'"),
            ("signature 'a{sv}'", "g", "signature 'a{sv}'"),
            ("['a', 'b']", "as", "['a', 'b']"),
            ("@au [1, 2]", "au", "[uint32 1, 2]"),
            ("[[uint32 1, 2], [3]]", "aau", "[[uint32 1, 2], [3]]"),
            ("010", "i", "8"),
            ("nan", "d", "nan"),
            ("0.1", "d", "0.10000000000000001"),
            ("1e-5", "d", "1.0000000000000001e-05"),
            ("123456789012345678.0", "d", "1.2345678901234568e+17"),
            ("-0.0", "d", "-0.0"),
            ("b'ab\\001'", "ay", "b'ab\\001'"),
            ("b\"it's\"", "ay", "b\"it's\""),
            ("'\\u00e9\\x07'", "s", "'\u{e9}x07'"),
            ("'\\a\\u200b'", "s", "'\\a\\u200b'"),
            ("@as []", "as", "@as []"),
            ("{'k': <1>, 'j': <'x'>}", "a{sv}", "{'k': <1>, 'j': <'x'>}"),
            ("@a{sv} {}", "a{sv}", "@a{sv} {}"),
            ("(1, 'x', [true])", "(isab)", "(1, 'x', [true])"),
            ("('one',)", "(s)", "('one',)"),
            ("<@ay [1, 2]>", "v", "<[byte 0x01, 0x02]>"),
            ("'it\\'s\\n'", "s", "\"it's\\n\""),
            ("double inf", "d", "inf"),
            ("@d -inf", "d", "-inf"),
        ] {
            assert_eq!(round_trip(text), (sig.to_string(), printed.to_string()), "{text}");
        }
    }

    #[test]
    fn errors_say_where_and_why() {
        for (text, why) in [
            ("hello", "strings are quoted"),
            ("'open", "unterminated string"),
            ("[1, 'a']", "a s where a i is expected"),
            ("[]", "@as []"),
            ("{}", "@a{sv} {}"),
            ("@q 70000", "does not fit a u16"),
            ("objectpath 'x'", "not an object path"),
            ("@zz 1", "not a D-Bus signature"),
            ("1 2", "after the value"),
            ("{[1]: 2}", "basic type"),
            ("[".repeat(100_000).as_str(), "nested deeper than 64"),
            ("<".repeat(100_000).as_str(), "nested deeper than 64"),
            // Found by the dbus_text fuzz target: accepted, then refused by the marshaller.
            ("'h\0\0\0\0ello'", "cannot contain NUL"),
            ("'a\\u0000b'", "cannot contain NUL"),
            ("objectpath '/a\\u0000'", "cannot contain NUL"),
        ] {
            let e = parse(text, "argument 1").unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.starts_with("argument 1"), "{e}");
        }
        // Found by the dbus_text fuzz target (30-minute campaign): a variant whose value's
        // type is longer than a signature may be (255 bytes) was
        // accepted, its own type being `v`, and only the marshaller refused it.
        let long = format!("<({})>", vec!["1"; 300].join(","));
        let listed = format!("[<({})>]", vec!["1"; 300].join(","));
        let annotated = format!("@v ({})", vec!["1"; 300].join(","));
        for (text, why) in
            [(&long, "variant's value of type"), (&listed, "variant's value"), (&annotated, "variant's value")]
        {
            let e = parse(text, "argument 1").unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.starts_with("argument 1"), "{e}");
        }
    }
}
