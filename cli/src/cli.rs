//! What every subcommand shares: option parsing and the exit codes.

use std::process::ExitCode;
use std::time::Duration;

/// Why a command failed, and with which exit code.
#[derive(Debug)]
pub struct Failure {
    /// The message printed after `emberctl <command>: `.
    pub message: String,
    /// 1: the operation failed (unreachable endpoint, timeout); 2: bad usage or bad input.
    pub code: u8,
}

impl Failure {
    /// Bad options or arguments (exit code 2).
    pub fn usage(message: String) -> Failure {
        Failure { message, code: 2 }
    }

    /// Malformed input data: a damaged frame, a malformed D-Bus message (exit code 2).
    pub fn bad_input(message: String) -> Failure {
        Failure { message, code: 2 }
    }

    /// The operation failed (exit code 1).
    pub fn runtime(message: String) -> Failure {
        Failure { message, code: 1 }
    }

    /// Prints the failure and turns it into the process's exit code.
    pub fn report(self, command: &str, usage: &str) -> ExitCode {
        if self.code == 2 && !self.message.contains('\n') && self.message.starts_with("--") {
            eprintln!("emberctl {command}: {}\n\n{usage}", self.message);
        } else {
            eprintln!("emberctl {command}: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

/// Parsed options: flags, `--name value` pairs and positional words.
#[derive(Debug, Default)]
pub struct Opts {
    flags: Vec<String>,
    values: Vec<(String, String)>,
    /// Words that are not options, in order.
    pub positional: Vec<String>,
}

impl Opts {
    /// Parses `args`, knowing which options are flags and which take a value; `--` ends
    /// the options.
    pub fn parse(args: &[String], flags: &[&str], valued: &[&str]) -> Result<Opts, Failure> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                o.positional.extend(it.by_ref().cloned());
                break;
            }
            if flags.contains(&a.as_str()) {
                o.flags.push(a.clone());
            } else if valued.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| Failure::usage(format!("{a} needs a value")))?;
                o.values.retain(|(k, _)| k != a);
                o.values.push((a.clone(), v.clone()));
            } else if a.starts_with("--") && a.len() > 2 {
                return Err(Failure::usage(format!("{a}: unknown option")));
            } else {
                o.positional.push(a.clone());
            }
        }
        Ok(o)
    }

    /// Parses `args` with the options of `key` in the command table (`recv`, `dbus decode`).
    pub fn parse_for(args: &[String], key: &str) -> Result<Opts, Failure> {
        let (name, sub) = key.split_once(' ').map_or((key, None), |(c, s)| (c, Some(s)));
        let cmd = crate::spec::command(name).and_then(|c| match sub {
            Some(s) => c.sub(s),
            None => Some(c),
        });
        let cmd = cmd.ok_or_else(|| Failure::runtime(format!("`{key}` is missing from the command table")))?;
        Opts::parse(args, &cmd.flags(), &cmd.valued())
    }

    /// Whether the flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// The option's value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn number<T: TryFrom<u64>>(&self, name: &str) -> Result<Option<T>, Failure> {
        let Some(v) = self.value(name) else { return Ok(None) };
        let n = match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => v.parse::<u64>(),
        }
        .map_err(|_| Failure::usage(format!("{name}: `{v}` is not a number")))?;
        T::try_from(n).map(Some).map_err(|_| Failure::usage(format!("{name}: {v} is too large")))
    }

    /// A `u32` option (decimal or `0x` hex).
    pub fn u32(&self, name: &str) -> Result<Option<u32>, Failure> {
        self.number(name)
    }

    /// A `u64` option (decimal or `0x` hex).
    pub fn u64(&self, name: &str) -> Result<Option<u64>, Failure> {
        self.number(name)
    }

    /// A `usize` option (decimal or `0x` hex).
    pub fn usize(&self, name: &str) -> Result<Option<usize>, Failure> {
        self.number(name)
    }

    /// A duration in seconds (fractions allowed).
    pub fn seconds(&self, name: &str) -> Result<Option<Duration>, Failure> {
        let Some(v) = self.value(name) else { return Ok(None) };
        match v.parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(Failure::usage(format!("{name}: `{v}` is not a number of seconds"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_values_and_words() {
        let o = Opts::parse(&args("a --x --n 0x10 b -- --y"), &["--x"], &["--n"]).unwrap();
        assert!(o.flag("--x"));
        assert_eq!(o.u32("--n").unwrap(), Some(16));
        assert_eq!(o.positional, ["a", "b", "--y"]);
        assert!(Opts::parse(&args("--n"), &[], &["--n"]).unwrap_err().message.contains("needs a value"));
        assert!(Opts::parse(&args("--zz"), &[], &[]).unwrap_err().message.contains("unknown option"));
        let o = Opts::parse(&args("--n 99999999999 --t 1.5 --b x"), &[], &["--n", "--t", "--b"]).unwrap();
        assert!(o.u32("--n").is_err());
        assert_eq!(o.seconds("--t").unwrap(), Some(Duration::from_millis(1500)));
        assert!(o.seconds("--b").is_err());
    }
}
