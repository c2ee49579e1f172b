//! The command table: every command, subcommand and option of `emberctl` in one place, and
//! what is generated from it.
//!
//! ```text
//!            COMMANDS (this table)
//!     /          |             \              \
//!  Opts::parse   completions    man page       tests: every option of the table is in its
//!  (ls, send,    bash/zsh/fish  emberctl.1     command's help text and every option of the
//!  recv, decode)                               help text is in the table; the other parsers
//!                                              take every option of the table
//! ```
//!
//! The parsers of `ls`, `send`, `recv` and `dbus decode` take their flag and value lists
//! from here ([`Cmd::flags`], [`Cmd::valued`]); `bench` and `dbus call`/`emit`/`monitor`
//! have parsers of their own, and tests feed them every option of the table. `emberctl completions <shell>` and `emberctl man`
//! print what [`completions`] and [`man_page`] make of the table; the copies under
//! `cli/share/` are generated from them (`cargo xtask completions`) and checked current by
//! `cargo xtask test`.
//!
//! Panic contract: none; the generators only format the static table.

use std::fmt::Write as _;

/// What the word after an option, or a positional word, is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Free text (a number, a name): nothing to complete.
    Text,
    /// A file name.
    File,
    /// One of a fixed set of words.
    OneOf(&'static [&'static str]),
    /// An endpoint URI (completes the schemes, then a path after a path scheme).
    Endpoint,
    /// A command of `emberctl` (`help <command>`).
    Command,
}

/// One option.
#[derive(Debug)]
pub struct Opt {
    /// `--name`.
    pub name: &'static str,
    /// The placeholder of its value (`<n>` in the help) and what it is; `None` for a flag.
    pub value: Option<(&'static str, Value)>,
    /// One line of help.
    pub help: &'static str,
}

/// One command or subcommand.
#[derive(Debug)]
pub struct Cmd {
    /// Its word.
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// The synopsis after `emberctl ` (the man page's SYNOPSIS).
    pub synopsis: &'static str,
    /// Its options.
    pub opts: &'static [Opt],
    /// Its positional words, if it takes any.
    pub args: Option<Value>,
    /// Its subcommands (`dbus`).
    pub subs: &'static [Cmd],
}

impl Cmd {
    /// The options that take no value.
    pub fn flags(&self) -> Vec<&'static str> {
        self.opts.iter().filter(|o| o.value.is_none()).map(|o| o.name).collect()
    }

    /// The options that take a value.
    pub fn valued(&self) -> Vec<&'static str> {
        self.opts.iter().filter(|o| o.value.is_some()).map(|o| o.name).collect()
    }

    /// The subcommand called `name`.
    pub fn sub(&self, name: &str) -> Option<&'static Cmd> {
        self.subs.iter().find(|c| c.name == name)
    }
}

/// The endpoint schemes, as completed.
pub const SCHEMES: [&str; 14] = [
    "pipe:",
    "fifo:",
    "mq:",
    "uds:",
    "uds-abstract:",
    "uds-seqpacket:",
    "uds-dgram:",
    "uds-dgram-abstract:",
    "shm-ring:",
    "shm-seqlock:",
    "shm-broadcast:",
    "tcp:",
    "udp:",
    "-",
];

/// The schemes followed by a file system path.
const PATH_SCHEMES: [&str; 4] = ["fifo", "uds", "uds-seqpacket", "uds-dgram"];

/// The shells `emberctl completions` writes for.
pub const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

const fn flag(name: &'static str, help: &'static str) -> Opt {
    Opt { name, value: None, help }
}

const fn valued(name: &'static str, placeholder: &'static str, v: Value, help: &'static str) -> Opt {
    Opt { name, value: Some((placeholder, v)), help }
}

const fn cmd(name: &'static str, summary: &'static str, synopsis: &'static str, opts: &'static [Opt]) -> Cmd {
    Cmd { name, summary, synopsis, opts, args: None, subs: &[] }
}

const PRINT: Value = Value::OneOf(&["text", "hex", "header", "raw"]);
const CHECKSUM: Value = Value::OneOf(&["on", "off", "auto"]);
const TIMEOUT: Opt = valued("--timeout", "<seconds>", Value::Text, "give up after this many seconds");
const FINGERPRINT: Opt =
    valued("--fingerprint", "<n>", Value::Text, "shm-*: the type fingerprint to write, or to insist on");
const MAX_MSGS: Opt = valued("--max-msgs", "<n>", Value::Text, "mq with --create: queue depth (default 10)");
const MSG_SIZE: Opt = valued("--msg-size", "<bytes>", Value::Text, "mq with --create: largest message (default 8192)");
const JSON: Opt = flag("--json", "JSON on standard output (docs/cli.md describes each document)");
const SESSION: Opt = flag("--session", "the session bus, DBUS_SESSION_BUS_ADDRESS (the default)");
const SYSTEM: Opt = flag("--system", "the system bus");
const ADDRESS: Opt =
    valued("--address", "<address>", Value::Text, "a bus address, e.g. unix:path=/run/dbus/system_bus_socket");
const PATH: Opt = valued("--path", "<object>", Value::Text, "the object path");
const MAX_MESSAGE: Opt = valued(
    "--max-message",
    "<bytes>",
    Value::Text,
    "the largest message taken in (default 32 MiB, at most 128 MiB); the receive buffer grows to it",
);
const OBJECT_PATH: Opt = valued("--object-path", "<object>", Value::Text, "the object path (as --path)");

/// Every command of `emberctl`, in the order of its help.
pub const COMMANDS: &[Cmd] = &[
    cmd(
        "bench",
        "measure Ember's mechanisms against same-run baselines",
        "bench [--quick | --full] [--json] [--only <name>] [--size <bytes>] [--cpus <a,b>] [--sweep <name>] [--csv <file>]",
        &[
            flag("--quick", "short run, about 15 s (the default)"),
            flag("--full", "more samples per row (what `cargo xtask bench` runs)"),
            flag("--json", "machine-readable output on stdout (the table goes away)"),
            valued("--only", "<name>", Value::Text, "only rows whose mechanism starts with <name>"),
            valued("--size", "<bytes>", Value::Text, "one payload size instead of the default set"),
            valued("--cpus", "<a,b>", Value::Text, "pin the measuring thread(s) to these CPUs"),
            valued("--samples", "<n>", Value::Text, "samples per row instead of the mode's"),
            valued(
                "--sweep",
                "<name>",
                Value::OneOf(&["size", "readers", "inflight", "all"]),
                "how cost grows: payload size, broadcast readers or rpc requests in flight",
            ),
            valued("--csv", "<file>", Value::File, "write the rows as CSV to <file> too"),
        ],
    ),
    Cmd {
        args: Some(Value::Endpoint),
        ..cmd(
            "ls",
            "list the Ember objects on this machine (shm segments, queues, FIFOs, sockets)",
            "ls [--json] [<uri>...]",
            &[flag("--json", "one JSON object on standard output instead of the tables")],
        )
    },
    Cmd {
        args: Some(Value::Endpoint),
        ..cmd(
            "send",
            "send frames to an endpoint",
            "send <uri> [payload words...] [options]",
            &[
                valued("--file", "<path>", Value::File, "payload from a file"),
                valued("--hex", "<hex>", Value::Text, "payload from hex digits, e.g. 0a1b2c"),
                flag("--lines", "one frame per line of standard input (no newline in the payload)"),
                valued("--kind", "<n>", Value::Text, "the frame's message kind (default 0)"),
                valued("--seq", "<n>", Value::Text, "the first frame's sequence number (default 0; +1 per frame)"),
                valued("--count", "<n>", Value::Text, "send the payload n times (default 1)"),
                valued("--prio", "<n>", Value::Text, "mq: message priority (default 0)"),
                flag("--create", "fifo/mq: create the FIFO or queue if missing (mode 0600)"),
                valued("--capacity", "<bytes>", Value::Text, "shm-*: data area size (default 65536)"),
                valued(
                    "--checksum",
                    "<on|off|auto>",
                    CHECKSUM,
                    "payload checksum: auto (default) checks it on tcp: and udp:, not on local endpoints",
                ),
                FINGERPRINT,
                MAX_MSGS,
                MSG_SIZE,
                TIMEOUT,
            ],
        )
    },
    Cmd {
        args: Some(Value::Endpoint),
        ..cmd(
            "recv",
            "receive frames from an endpoint and print them",
            "recv <uri> [options]",
            &[
                valued("--count", "<n>", Value::Text, "messages to receive, 0 = until the sender goes (default 1)"),
                TIMEOUT,
                valued("--print", "<how>", PRINT, "text (default), hex, header or raw"),
                flag("--json", "one JSON object per frame on standard output"),
                flag("--create", "fifo/mq: create the FIFO or queue if missing"),
                flag("--unlink", "remove the FIFO, queue or shm segment afterwards"),
                flag("--require-checksum", "refuse frames whose payload is not checksummed (reported as damaged)"),
                FINGERPRINT,
                MAX_MSGS,
                MSG_SIZE,
            ],
        )
    },
    Cmd {
        subs: DBUS,
        ..cmd("dbus", "D-Bus: call, emit, monitor, decode", "dbus <call|emit|monitor|decode> [options]", &[])
    },
    Cmd {
        args: Some(Value::Command),
        ..cmd("help", "print the help of emberctl or of a command", "help [<command>]", &[])
    },
    Cmd {
        args: Some(Value::OneOf(&SHELLS)),
        ..cmd("completions", "print the completion script of a shell (bash, zsh, fish)", "completions <shell>", &[])
    },
    cmd("man", "print the manual page (roff)", "man", &[]),
];

/// The subcommands of `emberctl dbus`.
const DBUS: &[Cmd] = &[
    Cmd {
        args: Some(Value::Text),
        ..cmd(
            "call",
            "call a method and print the reply's values",
            "dbus call --dest <name> --path <object> --method <interface.Member> [args...]",
            &[
                SESSION,
                SYSTEM,
                ADDRESS,
                valued("--dest", "<name>", Value::Text, "the bus name to call"),
                PATH,
                OBJECT_PATH,
                valued("--method", "<interface.Member>", Value::Text, "the method"),
                valued("--timeout", "<seconds>", Value::Text, "wait this long for the reply (default 25)"),
                MAX_MESSAGE,
                JSON,
            ],
        )
    },
    Cmd {
        args: Some(Value::Text),
        ..cmd(
            "emit",
            "emit a signal",
            "dbus emit --path <object> --signal <interface.Member> [args...]",
            &[
                SESSION,
                SYSTEM,
                ADDRESS,
                PATH,
                OBJECT_PATH,
                valued("--signal", "<interface.Member>", Value::Text, "the signal"),
                valued("--timeout", "<seconds>", Value::Text, "connect and authenticate within this long (default 10)"),
                MAX_MESSAGE,
                JSON,
            ],
        )
    },
    cmd(
        "monitor",
        "monitor the bus as dbus-monitor does and print each message",
        "dbus monitor [--match <rule>]... [--count <n>]",
        &[
            SESSION,
            SYSTEM,
            ADDRESS,
            valued("--match", "<rule>", Value::Text, "a match rule (repeatable; default: every message)"),
            valued("--count", "<n>", Value::Text, "stop after n messages"),
            valued("--timeout", "<seconds>", Value::Text, "stop after this long (default: never)"),
            MAX_MESSAGE,
            JSON,
        ],
    ),
    Cmd {
        args: Some(Value::File),
        ..cmd("decode", "print the D-Bus messages of a capture (raw, pcap, pcapng)", "dbus decode <file>", &[JSON])
    },
];

/// The command called `name`.
pub fn command(name: &str) -> Option<&'static Cmd> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The table as (key, command) pairs: `recv`, `dbus`, `dbus call`, ...
fn entries() -> Vec<(String, &'static Cmd)> {
    let mut out = Vec::new();
    for c in COMMANDS {
        out.push((c.name.to_string(), c));
        for s in c.subs {
            out.push((format!("{} {}", c.name, s.name), s));
        }
    }
    out
}

/// The completion script for `shell` (bash, zsh or fish).
pub fn completions(shell: &str) -> Option<String> {
    match shell {
        "bash" => Some(bash()),
        "zsh" => Some(zsh()),
        "fish" => Some(fish()),
        _ => None,
    }
}

fn names(cmds: &[Cmd]) -> String {
    cmds.iter().map(|c| c.name).collect::<Vec<_>>().join(" ")
}

fn bash_value(v: Value) -> String {
    match v {
        Value::Text => "return 0".into(),
        Value::File => "_emberctl_files \"$cur\"; return 0".into(),
        Value::OneOf(w) => format!("_emberctl_words \"{}\" \"$cur\"; return 0", w.join(" ")),
        Value::Endpoint => "_emberctl_endpoint; return 0".into(),
        Value::Command => format!("_emberctl_words \"{}\" \"$cur\"; return 0", names(COMMANDS)),
    }
}

fn bash() -> String {
    let mut s = String::from(
        "# bash completion for emberctl -*- shell-script -*-\n\
         # Generated by `emberctl completions bash` from emberctl's command table; do not edit.\n\n\
         _emberctl_words() {\n    local IFS=$' \\t\\n'\n    COMPREPLY=($(compgen -W \"$1\" -- \"$2\"))\n}\n\n\
         _emberctl_files() {\n    local IFS=$'\\n'\n    COMPREPLY=($(compgen -f -- \"$1\"))\n}\n\n",
    );
    // An endpoint: the schemes; after `fifo:` and the other path schemes, a path. Bash
    // splits words at `:` (COMP_WORDBREAKS), so the scheme is a word of its own.
    let _ = write!(
        s,
        "_emberctl_endpoint() {{\n    \
         local schemes=\"{}\"\n    \
         if [[ $cur == : ]]; then cur=\"\"; prev=\":\"; scheme=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n    \
         elif [[ $prev == : ]]; then scheme=\"${{COMP_WORDS[COMP_CWORD-2]}}\"\n    \
         else scheme=\"\"; fi\n    \
         if [[ $prev == : ]]; then\n        \
         case \"$scheme\" in {}) _emberctl_files \"$cur\" ;; *) COMPREPLY=() ;; esac\n        \
         return 0\n    \
         fi\n    \
         _emberctl_words \"$schemes\" \"$cur\"\n    \
         [[ ${{#COMPREPLY[@]}} -eq 1 && ${{COMPREPLY[0]}} == *: ]] && compopt -o nospace 2>/dev/null\n    \
         return 0\n}}\n\n",
        SCHEMES.join(" "),
        PATH_SCHEMES.join("|"),
    );
    s.push_str(
        "_emberctl() {\n    \
         local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" scheme\n    \
         COMPREPLY=()\n    \
         if [[ $COMP_CWORD -eq 1 ]]; then\n        ",
    );
    let _ = write!(s, "_emberctl_words \"{} --help --version\" \"$cur\"\n        return 0\n    fi\n", names(COMMANDS));
    s.push_str("    local key=\"${COMP_WORDS[1]}\"\n");
    let with_subs: Vec<&Cmd> = COMMANDS.iter().filter(|c| !c.subs.is_empty()).collect();
    for c in &with_subs {
        let _ = write!(
            s,
            "    if [[ $key == {} ]]; then\n        \
             if [[ $COMP_CWORD -eq 2 ]]; then _emberctl_words \"{}\" \"$cur\"; return 0; fi\n        \
             key=\"$key ${{COMP_WORDS[2]}}\"\n    fi\n",
            c.name,
            names(c.subs)
        );
    }
    s.push_str("    case \"$key\" in\n");
    for (key, c) in entries() {
        if !c.subs.is_empty() {
            continue;
        }
        let _ = writeln!(s, "    \"{key}\")");
        let valued: Vec<&Opt> = c.opts.iter().filter(|o| o.value.is_some()).collect();
        if !valued.is_empty() {
            s.push_str("        case \"$prev\" in\n");
            for o in valued {
                let (_, v) = o.value.unwrap_or(("", Value::Text));
                let _ = writeln!(s, "        {}) {} ;;", o.name, bash_value(v));
            }
            s.push_str("        esac\n");
        }
        let opts: Vec<&str> = c.opts.iter().map(|o| o.name).chain(["--help"]).collect();
        let _ = writeln!(
            s,
            "        if [[ $cur == -* ]]; then _emberctl_words \"{}\" \"$cur\"; return 0; fi",
            opts.join(" ")
        );
        match c.args {
            Some(v) => {
                let _ = writeln!(s, "        {} ;;", bash_value(v));
            }
            None => s.push_str("        return 0 ;;\n"),
        }
    }
    s.push_str("    esac\n    return 0\n}\n\ncomplete -F _emberctl emberctl\n");
    s
}

/// `text` inside a zsh single-quoted `_arguments` spec: quotes doubled, brackets and colons
/// escaped.
fn zsh_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '[' | ']' | ':' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn zsh_action(v: Value) -> String {
    match v {
        Value::Text => " ".into(),
        Value::File => "_files".into(),
        Value::OneOf(w) => format!("({})", w.join(" ")),
        Value::Endpoint => "_emberctl_endpoint".into(),
        Value::Command => format!("({})", names(COMMANDS)),
    }
}

fn zsh_describe(name: &str, cmds: &[Cmd]) -> String {
    let mut s = format!("    local -a {name}\n    {name}=(\n");
    for c in cmds {
        let _ = writeln!(s, "        '{}:{}'", c.name, zsh_escape(c.summary));
    }
    s.push_str("    )\n");
    s
}

fn zsh_arguments(c: &Cmd, indent: &str) -> String {
    let mut s = format!("{indent}_arguments -S \\\n");
    for o in c.opts {
        let spec = match o.value {
            Some((ph, v)) => {
                let ph = ph.trim_matches(|c| c == '<' || c == '>');
                format!("{}[{}]:{}:{}", o.name, zsh_escape(o.help), zsh_escape(ph), zsh_action(v))
            }
            None => format!("{}[{}]", o.name, zsh_escape(o.help)),
        };
        // --match repeats: a `*` in front lets it appear more than once.
        let repeat = if o.name == "--match" { "*" } else { "" };
        let _ = writeln!(s, "{indent}    '{repeat}{spec}' \\");
    }
    let _ = writeln!(s, "{indent}    '(- *)--help[print the help]' \\");
    match c.args {
        Some(v) => {
            let _ = writeln!(s, "{indent}    '*:argument:{}'", zsh_action(v));
        }
        None => {
            let _ = writeln!(s, "{indent}    ''");
        }
    }
    s
}

fn zsh() -> String {
    let mut s = String::from(
        "#compdef emberctl\n\
         # zsh completion for emberctl.\n\
         # Generated by `emberctl completions zsh` from emberctl's command table; do not edit.\n\n",
    );
    let _ = write!(
        s,
        "_emberctl_endpoint() {{\n    \
         local -a schemes\n    \
         schemes=({})\n    \
         if compset -P '({}):'; then\n        _files\n    \
         elif compset -P '*:'; then\n        _message 'name or address'\n    \
         else\n        compadd -S '' -a schemes\n    fi\n}}\n\n",
        SCHEMES.join(" "),
        PATH_SCHEMES.join("|"),
    );
    s.push_str("_emberctl() {\n");
    s.push_str(&zsh_describe("commands", COMMANDS));
    s.push_str(
        "    if (( CURRENT == 2 )); then\n        _describe -t commands 'emberctl command' commands\n        return\n    fi\n    \
         local cmd=$words[2]\n    shift words\n    (( CURRENT-- ))\n    case $cmd in\n",
    );
    for c in COMMANDS {
        let _ = writeln!(s, "    {})", c.name);
        if c.subs.is_empty() {
            s.push_str(&zsh_arguments(c, "        "));
        } else {
            s.push_str(&zsh_describe("subs", c.subs).replace("\n    ", "\n        ").replacen("    ", "        ", 1));
            s.push_str(
                "        if (( CURRENT == 2 )); then\n            _describe -t commands 'subcommand' subs\n            return\n        fi\n        \
                 local sub=$words[2]\n        shift words\n        (( CURRENT-- ))\n        case $sub in\n",
            );
            for sc in c.subs {
                let _ = writeln!(s, "        {})", sc.name);
                s.push_str(&zsh_arguments(sc, "            "));
                s.push_str("            ;;\n");
            }
            s.push_str("        esac\n");
        }
        s.push_str("        ;;\n");
    }
    s.push_str("    esac\n}\n\nif [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n    _emberctl \"$@\"\nelse\n    compdef _emberctl emberctl\nfi\n");
    s
}

/// `text` inside fish single quotes.
fn fish_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn fish_value(v: Value) -> String {
    match v {
        Value::Text => " -x".into(),
        Value::File => " -rF".into(),
        Value::OneOf(w) => format!(" -xa {}", fish_quote(&w.join(" "))),
        Value::Endpoint => format!(" -xa {}", fish_quote(&SCHEMES.join(" "))),
        Value::Command => format!(" -xa {}", fish_quote(&names(COMMANDS))),
    }
}

fn fish() -> String {
    let mut s = String::from(
        "# fish completion for emberctl.\n\
         # Generated by `emberctl completions fish` from emberctl's command table; do not edit.\n\n\
         complete -c emberctl -f\n",
    );
    let all = names(COMMANDS);
    for c in COMMANDS {
        let _ = writeln!(
            s,
            "complete -c emberctl -n 'not __fish_seen_subcommand_from {all}' -a {} -d {}",
            c.name,
            fish_quote(c.summary)
        );
    }
    for c in COMMANDS {
        let mut conds = Vec::new();
        if c.subs.is_empty() {
            conds.push((format!("__fish_seen_subcommand_from {}", c.name), c));
        } else {
            let subs = names(c.subs);
            for sc in c.subs {
                let _ = writeln!(
                    s,
                    "complete -c emberctl -n '__fish_seen_subcommand_from {}; and not __fish_seen_subcommand_from {subs}' -a {} -d {}",
                    c.name,
                    sc.name,
                    fish_quote(sc.summary)
                );
                conds.push((
                    format!("__fish_seen_subcommand_from {}; and __fish_seen_subcommand_from {}", c.name, sc.name),
                    sc,
                ));
            }
        }
        for (cond, sc) in conds {
            for o in sc.opts {
                let v = o.value.map_or(String::new(), |(_, v)| fish_value(v));
                let _ = writeln!(
                    s,
                    "complete -c emberctl -n '{cond}' -l {}{v} -d {}",
                    o.name.trim_start_matches("--"),
                    fish_quote(o.help)
                );
            }
            if let Some(v) = sc.args {
                let what = match v {
                    Value::File => " -F".to_string(),
                    Value::Text => continue,
                    v => fish_value(v).replacen(" -xa", " -a", 1),
                };
                let _ = writeln!(s, "complete -c emberctl -n '{cond}'{what}");
            }
        }
    }
    s
}

/// `text` as roff: backslashes and hyphens escaped, no line starting with a control
/// character.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') { format!("\\&{s}") } else { s }
}

/// The manual page, emberctl(1), in roff (`man -l` reads it).
pub fn man_page(version: &str, usage: impl Fn(&str) -> Option<&'static str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, ".\\\" emberctl(1). Generated by `emberctl man` from emberctl's command table; do not edit.");
    let _ = writeln!(s, ".TH EMBERCTL 1 \"\" \"emberctl {version}\" \"User Commands\"");
    s.push_str(".SH NAME\nemberctl \\- Ember IPC from the shell: benchmarks, inspection, send and receive, D\\-Bus\n");
    s.push_str(".SH SYNOPSIS\n");
    for c in COMMANDS {
        let syn = if c.subs.is_empty() { vec![c.synopsis] } else { c.subs.iter().map(|s| s.synopsis).collect() };
        for line in syn {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let _ = writeln!(s, ".br\n\\fBemberctl\\fR \\fB{}\\fR {}", roff(word), roff(rest));
        }
    }
    s.push_str(
        ".SH DESCRIPTION\n\\fBemberctl\\fR is the command\\-line face of Ember, an inter\\-process communication \
         library for embedded Linux. It measures Ember's mechanisms, lists the Ember objects on a machine, \
         sends and receives Ember frames on any endpoint, and calls, emits, monitors and decodes D\\-Bus \
         messages with Ember's own client.\n",
    );
    s.push_str(".SH ENDPOINTS\n\\fBsend\\fR, \\fBrecv\\fR and \\fBls\\fR take endpoints as URIs:\n");
    let _ = writeln!(s, ".PP\n{}", roff(crate::uri::SCHEMES));
    s.push_str(".SH COMMANDS\n");
    for (key, c) in entries() {
        let _ = writeln!(s, ".SS \"emberctl {key}\"\n{}", roff(c.summary));
        for o in c.opts {
            let _ = write!(s, ".TP\n\\fB{}\\fR", roff(o.name));
            if let Some((ph, _)) = o.value {
                let _ = write!(s, " \\fI{}\\fR", roff(ph));
            }
            let _ = writeln!(s, "\n{}", roff(o.help));
        }
        // The command's own help, as `emberctl <command> --help` prints it.
        if let Some(text) = usage(&key) {
            s.push_str(".PP\n.nf\n");
            for l in text.lines() {
                let _ = writeln!(s, "{}", roff(l));
            }
            s.push_str(".fi\n");
        }
    }
    s.push_str(
        ".SH EXIT STATUS\n.TP\n0\nsuccess\n.TP\n1\nthe operation failed (a timeout, an unreachable endpoint, a remote \
         D\\-Bus error)\n.TP\n2\nbad usage, a bad URI, or malformed input (a damaged frame, a malformed D\\-Bus \
         message)\n",
    );
    s.push_str(".SH SEE ALSO\n\\fBdbus\\-monitor\\fR(1), \\fBgdbus\\fR(1), \\fBmq_overview\\fR(7), \\fBshm_overview\\fR(7), \\fBunix\\fR(7)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `--option` word of a help text.
    fn options_in(text: &str) -> Vec<String> {
        let mut out: Vec<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2 && w[2..].starts_with(|c: char| c.is_ascii_lowercase()))
            .map(String::from)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn the_table_and_the_help_texts_name_the_same_options() {
        for c in COMMANDS {
            let Some(help) = crate::usage_of(c.name) else { continue };
            let mut table: Vec<String> =
                c.opts.iter().chain(c.subs.iter().flat_map(|s| s.opts)).map(|o| o.name.to_string()).collect();
            table.sort();
            table.dedup();
            let mut in_help = options_in(help);
            // Global options, and the ones named in examples or prose.
            in_help.retain(|o| {
                !["--help", "--create", "--unlink", "--binary", "--pcap"].contains(&o.as_str()) || table.contains(o)
            });
            assert_eq!(table, in_help, "{}: the table and `emberctl {} --help` differ", c.name, c.name);
        }
    }

    #[test]
    fn bench_parser_takes_every_option_of_the_table() {
        let sample = |name: &str| match name {
            "--only" => "codec",
            "--size" => "64",
            "--cpus" => "0",
            "--sweep" => "size",
            "--csv" => "/tmp/x.csv",
            _ => "10",
        };
        for o in command("bench").map_or(&[][..], |c| c.opts) {
            let mut args = vec![o.name.to_string()];
            if o.value.is_some() {
                args.push(sample(o.name).into());
            }
            assert!(crate::bench::Options::parse(&args).is_ok(), "bench {args:?}");
        }
    }

    /// The dbus subcommands keep parsers of their own (their module is shared with other
    /// work): each takes every option of the table. Each option alone stops before a
    /// connection (a required option is missing) or at one to an address that is not there.
    #[test]
    fn dbus_parsers_take_every_option_of_the_table() {
        let dbus = command("dbus").expect("dbus is in the table");
        for sub in dbus.subs {
            for o in sub.opts {
                let mut args = vec![sub.name.to_string(), o.name.to_string()];
                if o.value.is_some() {
                    args.push("1".into());
                }
                if o.name != "--address" && sub.opts.iter().any(|x| x.name == "--address") {
                    args.extend(["--address".into(), "unix:path=/nonexistent/ember-spec-test".into()]);
                }
                if let Err(f) = crate::dbus::run(&args) {
                    assert!(!f.message.contains("unknown option"), "dbus {args:?}: {}", f.message);
                }
            }
        }
    }

    #[test]
    fn every_shell_has_a_script_and_every_command_is_in_it() {
        for sh in SHELLS {
            let s = completions(sh).unwrap_or_default();
            for c in COMMANDS {
                assert!(s.contains(c.name), "{sh}: {}", c.name);
                for o in c.opts.iter().chain(c.subs.iter().flat_map(|s| s.opts)) {
                    assert!(s.contains(o.name.trim_start_matches("--")), "{sh}: {} {}", c.name, o.name);
                }
            }
        }
        assert!(completions("tcsh").is_none());
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff("--x a\\b"), "\\-\\-x a\\eb");
        assert_eq!(roff(".dot"), "\\&.dot");
    }
}
