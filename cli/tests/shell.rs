//! The completion scripts and the manual page that `emberctl` generates from its command
//! table, checked by the real shells and by groff/man (installed by `cargo xtask test`):
//! each script parses, bash and fish complete subcommands, options and option values, the
//! page renders without a warning, and the copies committed under `cli/share/` are current.

#[path = "../../linux/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

fn ember(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_emberctl")).args(args).output().unwrap();
    assert!(o.status.success(), "emberctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The script written to a file of its own.
fn script(shell: &str) -> String {
    let path = format!("{}/ember-completion-{}.{shell}", std::env::temp_dir().display(), std::process::id());
    std::fs::write(&path, ember(&["completions", shell])).unwrap();
    path
}

fn ok(o: &Output, what: &str) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && err.is_empty(), "{what}: {:?}\nstdout: {out}\nstderr: {err}", o.status);
    out.into_owned()
}

#[test]
fn bash_script_parses_and_completes() {
    common::need_tool("bash");
    let f = script("bash");
    ok(&Command::new("bash").args(["-n", &f]).output().unwrap(), "bash -n");
    // The completion function called as bash calls it: COMP_WORDS split as readline splits
    // them (`:` is a word of its own), COMP_CWORD the word under the cursor.
    let complete = |words: &str| {
        let sh = format!(
            "source {f}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _emberctl; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = ok(&Command::new("bash").args(["-c", &sh]).output().unwrap(), words);
        out.lines().filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(complete("emberctl re"), ["recv"]);
    assert_eq!(complete("emberctl dbus ''"), ["call", "emit", "monitor", "decode"]);
    assert_eq!(complete("emberctl dbus monitor --m"), ["--match", "--max-message"]);
    assert_eq!(complete("emberctl recv mq:/x --print h"), ["hex", "header"]);
    assert_eq!(complete("emberctl recv --j"), ["--json"]);
    assert_eq!(complete("emberctl send uds-d"), ["uds-dgram:", "uds-dgram-abstract:"]);
    assert_eq!(complete("emberctl completions ''"), ["bash", "zsh", "fish"]);
    // A value that is free text completes to nothing; a path after fifo: to files.
    assert!(complete("emberctl send mq:/x --count ''").is_empty());
    let dir = std::env::temp_dir().join(format!("ember-completion-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sensor.fifo"), b"").unwrap();
    let got = complete(&format!("emberctl recv fifo : {}/sen", dir.display()));
    assert_eq!(got, [format!("{}/sensor.fifo", dir.display())]);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(f).unwrap();
}

#[test]
fn zsh_script_parses_and_loads() {
    common::need_tool("zsh");
    let f = script("zsh");
    ok(&Command::new("zsh").args(["-n", &f]).output().unwrap(), "zsh -n");
    // Loaded into a shell with the completion system: it registers itself for emberctl.
    let sh = format!("autoload -Uz compinit; compinit -u -D; source {f}; print -r -- $_comps[emberctl]");
    let out = ok(&Command::new("zsh").args(["-f", "-c", &sh]).output().unwrap(), "zsh compdef");
    assert_eq!(out.trim(), "_emberctl");
    std::fs::remove_file(f).unwrap();
}

#[test]
fn fish_script_parses_and_completes() {
    common::need_tool("fish");
    let f = script("fish");
    ok(&Command::new("fish").args(["--no-execute", &f]).output().unwrap(), "fish --no-execute");
    let complete = |line: &str| {
        let sh = format!("source {f}; complete -C '{line}'");
        let out = ok(&Command::new("fish").args(["--no-config", "-c", &sh]).output().unwrap(), line);
        out.lines().map(|l| l.split('\t').next().unwrap_or("").to_string()).collect::<Vec<_>>()
    };
    assert_eq!(complete("emberctl re"), ["recv"]);
    assert_eq!(complete("emberctl dbus "), ["call", "decode", "emit", "monitor"]);
    assert_eq!(complete("emberctl recv --print "), ["header", "hex", "raw", "text"]);
    assert!(complete("emberctl dbus monitor --").contains(&"--json".to_string()));
    assert!(complete("emberctl send ").contains(&"shm-ring:".to_string()));
    std::fs::remove_file(f).unwrap();
}

#[test]
fn man_page_renders_without_warnings() {
    common::need_tool("groff");
    let page = format!("{}/emberctl-{}.1", std::env::temp_dir().display(), std::process::id());
    std::fs::write(&page, ember(&["man"])).unwrap();
    // -ww: every warning; -z: no output, the diagnostics alone.
    ok(&Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z", &page]).output().unwrap(), "groff");
    common::need_tool("man");
    let o = Command::new("man")
        .args(["--warnings", "-l", &page])
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap();
    // man's overstrike bold (`X\x08X`) taken out: the text as a reader sees it.
    let mut text = String::new();
    for c in ok(&o, "man -l").chars() {
        if c == '\x08' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    for want in ["EMBERCTL(1)", "SYNOPSIS", "emberctl recv <uri>", "--json", "EXIT STATUS", "dbus decode <file>"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    std::fs::remove_file(page).unwrap();
}

#[test]
fn committed_copies_are_current() {
    let share = concat!(env!("CARGO_MANIFEST_DIR"), "/share");
    for (file, args) in [
        ("emberctl.bash", &["completions", "bash"][..]),
        ("_emberctl", &["completions", "zsh"][..]),
        ("emberctl.fish", &["completions", "fish"][..]),
        ("emberctl.1", &["man"][..]),
    ] {
        let committed = std::fs::read_to_string(format!("{share}/{file}")).unwrap_or_default();
        assert!(
            committed == ember(args),
            "cli/share/{file} is not what `emberctl {}` prints: run `cargo xtask completions`",
            args.join(" ")
        );
    }
}

#[test]
fn completions_refuses_an_unknown_shell() {
    let o = Command::new(env!("CARGO_BIN_EXE_emberctl")).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bash, zsh, fish"));
}
