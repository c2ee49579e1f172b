//! The lines the guest's `/init` prints on the serial console and the harness reads.
//!
//! Every machine-readable line starts with [`MARK`], so it can be found among the kernel's
//! own messages (which may share a line with it):
//!
//! ```text
//! @@ember test <binary> <result> <name> [-- <note>]     one per test case
//! @@ember binary <binary> <exit> <seconds>              one per test binary (exit: a code,
//!                                                        `signal:N`, `timeout` or `spawn`)
//! @@ember verdict <PASS|FAIL> binaries=<n> passed=<n> failed=<n> skipped=<n>
//! ```
//!
//! `<result>` is `ok`, `FAILED`, `ignored` or `skipped`. Names never hold spaces (Rust test
//! names cannot), and a binary's name is the manifest's.

/// The prefix of every line meant for the harness.
pub const MARK: &str = "@@ember ";

/// Whether `name` can be a board's or a test binary's name: one non-empty word of ASCII
/// letters, digits, `-` and `_` (it is a word of the result lines and a file name).
pub fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A test case's result.
    Test {
        /// The test binary (manifest name).
        binary: String,
        /// `ok`, `FAILED`, `ignored` or `skipped`.
        result: String,
        /// The test's name.
        name: String,
        /// Why it was skipped, when it was.
        note: String,
    },
    /// A test binary ended.
    Binary {
        /// The test binary (manifest name).
        binary: String,
        /// Its exit: a code, `signal:N`, `timeout` or `spawn`.
        exit: String,
        /// How long it ran, in seconds.
        seconds: String,
    },
    /// The guest's final verdict.
    Verdict {
        /// Whether every binary exited 0.
        pass: bool,
        /// The counts as printed (`binaries=… passed=… failed=… skipped=…`).
        counts: String,
    },
}

/// Reads one console line; `None` if it holds no well-formed [`MARK`] line.
pub fn parse(line: &str) -> Option<Line> {
    let at = line.find(MARK)?;
    let rest = line[at + MARK.len()..].trim_end();
    let mut words = rest.splitn(2, ' ');
    let kind = words.next()?;
    let rest = words.next().unwrap_or("");
    match kind {
        "test" => {
            let (head, note) = match rest.split_once(" -- ") {
                Some((h, n)) => (h, n.to_string()),
                None => (rest, String::new()),
            };
            let mut w = head.split(' ');
            let (binary, result, name) = (w.next()?, w.next()?, w.next()?);
            if w.next().is_some() || !matches!(result, "ok" | "FAILED" | "ignored" | "skipped") {
                return None;
            }
            Some(Line::Test { binary: binary.into(), result: result.into(), name: name.into(), note })
        }
        "binary" => {
            let mut w = rest.split(' ');
            let (binary, exit, seconds) = (w.next()?, w.next()?, w.next()?);
            Some(Line::Binary { binary: binary.into(), exit: exit.into(), seconds: seconds.into() })
        }
        "verdict" => {
            let (word, counts) = rest.split_once(' ').unwrap_or((rest, ""));
            let pass = match word {
                "PASS" => true,
                "FAIL" => false,
                _ => return None,
            };
            Some(Line::Verdict { pass, counts: counts.to_string() })
        }
        _ => None,
    }
}

/// Reads a line a test binary printed (libtest's or Ember's own harness):
/// `test <name> ... <ok|FAILED|ignored|skipped: why>`, giving `(name, result, note)`.
pub fn test_case(line: &str) -> Option<(&str, &'static str, &str)> {
    let rest = line.strip_prefix("test ")?;
    let (name, outcome) = rest.split_once(" ... ")?;
    if name.contains(' ') {
        return None;
    }
    let outcome = outcome.trim_end();
    let (result, note) = if outcome.starts_with("ok") {
        ("ok", "")
    } else if outcome.starts_with("FAILED") {
        ("FAILED", "")
    } else if outcome.starts_with("ignored") {
        ("ignored", "")
    } else if let Some(why) = outcome.strip_prefix("skipped") {
        ("skipped", why.trim_start_matches(':').trim())
    } else {
        return None;
    };
    Some((name, result, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_survive_kernel_noise() {
        let t = parse("[   3.1] random: crng init\r@@ember test linux-sockets skipped fds_pass -- needs `socat`\r");
        assert_eq!(
            t,
            Some(Line::Test {
                binary: "linux-sockets".into(),
                result: "skipped".into(),
                name: "fds_pass".into(),
                note: "needs `socat`".into()
            })
        );
        assert_eq!(
            parse("@@ember binary core-lib 0 1.25"),
            Some(Line::Binary { binary: "core-lib".into(), exit: "0".into(), seconds: "1.25".into() })
        );
        assert_eq!(
            parse("@@ember verdict FAIL binaries=2 passed=3 failed=1 skipped=0"),
            Some(Line::Verdict { pass: false, counts: "binaries=2 passed=3 failed=1 skipped=0".into() })
        );
        assert_eq!(parse("@@ember verdict MAYBE"), None);
        assert_eq!(parse("@@ember test a weird name"), None);
        assert_eq!(parse("no mark here"), None);
    }

    #[test]
    fn both_harnesses_lines_are_read() {
        assert_eq!(test_case("test frame::tests::crc ... ok"), Some(("frame::tests::crc", "ok", "")));
        assert_eq!(test_case("test pipes_cross ... ok (12.3ms)"), Some(("pipes_cross", "ok", "")));
        assert_eq!(test_case("test fds ... FAILED (1.0s)"), Some(("fds", "FAILED", "")));
        assert_eq!(test_case("test slow ... ignored, loom#180"), Some(("slow", "ignored", "")));
        assert_eq!(test_case("test s ... skipped: needs `gdbus`"), Some(("s", "skipped", "needs `gdbus`")));
        assert_eq!(test_case("test result: ok. 3 passed"), None);
        assert_eq!(test_case("running 3 tests"), None);
    }
}
