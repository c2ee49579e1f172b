//! Collects every ```rust block of README.md and docs/*.md (and examples' READMEs) into
//! `$OUT_DIR/snippets.rs`, one documented module per block, so that `cargo test --doc`
//! compiles (and, unless the block says `no_run`, runs) each of them as a doctest of a crate
//! that depends on Ember as a user's does. Blocks fenced with another language, or none,
//! are prose and are left alone. `ignore` is refused: a snippet either compiles or is not
//! Rust.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("snippets/ is in the workspace").to_path_buf();
    let mut files: Vec<PathBuf> = vec![root.join("README.md")];
    for dir in ["docs", "examples"] {
        let d = root.join(dir);
        println!("cargo:rerun-if-changed={}", d.display());
        collect(&d, &mut files);
    }
    files.sort();
    let mut out = String::new();
    let mut count = 0;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let rel = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        for (line, info, body) in rust_blocks(&text) {
            assert!(
                !info.split(',').any(|a| a.trim() == "ignore"),
                "{rel}:{line}: a ```rust block may not be `ignore`: make it compile (or `no_run`), or fence it as text"
            );
            count += 1;
            let module: String =
                rel.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
            writeln!(out, "/// `{rel}`, the block at line {line}.\n///").unwrap();
            writeln!(out, "/// ```{info}").unwrap();
            for l in body.lines() {
                writeln!(out, "/// {l}").unwrap();
            }
            writeln!(out, "/// ```\npub mod {module}_line_{line} {{}}\n").unwrap();
        }
    }
    writeln!(out, "/// How many snippets were collected.\npub const COUNT: usize = {count};").unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("snippets.rs");
    std::fs::write(dest, out).expect("write snippets.rs");
}

/// Markdown files under `dir`, recursively.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, files);
        } else if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
}

/// `(line of the fence, info string, body)` of every block fenced as ```rust[,attrs].
fn rust_blocks(text: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match open.as_mut() {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    let info = info.trim();
                    if info == "rust" || info.starts_with("rust,") {
                        open = Some((i + 1, info.to_string(), String::new()));
                    } else {
                        // Another language's block: skip to its end.
                        open = Some((0, String::new(), String::new()));
                    }
                }
            }
            Some((start, info, body)) => {
                if t.starts_with("```") {
                    if *start != 0 {
                        blocks.push((*start, std::mem::take(info), std::mem::take(body)));
                    }
                    open = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}
