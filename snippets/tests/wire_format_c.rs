//! The C reference code of docs/wire-format.md (`crc32c` and `em_check`), taken from the
//! document as it stands, compiled with gcc and run over the same frames as
//! `ember_core::frame::Frame::new_checked`: both must give the same verdict on every one
//! (checked and unchecked frames, every single-bit flip of each, truncations, resealed
//! headers with unknown flags, another version and an absurd length). The worked examples'
//! hex dumps are checked against what `ember_core` emits.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_core::frame::{Flags, Frame, FrameRepr, MAX_PAYLOAD_LEN};
use ember_core::{Error, crc32c::crc32c};

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/wire-format.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bodies of the fenced blocks of `lang` in `text`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            None if line.trim_end() == format!("```{lang}") => cur = Some(String::new()),
            Some(b) if line.trim_end() == "```" => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

/// The hex dump (first ```text block) of the section whose heading starts with `heading`.
fn example_bytes(text: &str, heading: &str) -> Vec<u8> {
    let at = text.find(heading).unwrap_or_else(|| panic!("no section {heading}"));
    let dump = &blocks(&text[at..], "text")[0];
    dump.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect()
}

/// The status `em_check` must return for `bytes`, from the Rust implementation (the C enum's
/// order: OK, TRUNCATED, BAD_MAGIC, BAD_HEADER_CRC, UNSUPPORTED_VERSION, UNKNOWN_FLAGS,
/// TOO_LARGE, BAD_CRC).
fn rust_status(bytes: &[u8]) -> u32 {
    match Frame::new_checked(bytes) {
        Ok(_) => 0,
        Err(Error::Truncated { .. }) => 1,
        Err(Error::BadMagic) => 2,
        Err(Error::BadHeaderCrc) => 3,
        Err(Error::UnsupportedVersion(_)) => 4,
        Err(Error::UnknownFlags(_)) => 5,
        Err(Error::TooLarge { .. }) => 6,
        Err(Error::BadCrc) => 7,
        Err(e) => panic!("not a frame-check error: {e:?}"),
    }
}

/// Builds the document's C with a `main` that checks each length-prefixed record of the
/// file it is given and prints one status per line.
fn build_checker(dir: &Path) -> PathBuf {
    let c = blocks(&doc(), "c").join("\n");
    assert!(c.contains("uint32_t crc32c(") && c.contains("enum em_status em_check("), "the reference code moved");
    let main = r#"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 2;
    uint8_t len4[4];
    while (fread(len4, 1, 4, f) == 4) {
        uint32_t n = le32(len4);
        uint8_t *b = malloc(n ? n : 1);
        if (!b || fread(b, 1, n, f) != n) return 2;
        uint64_t total = 0;
        printf("%d\n", (int)em_check(b, n, &total));
        free(b);
    }
    fclose(f);
    return 0;
}
"#;
    let src = dir.join("em_check.c");
    std::fs::write(&src, format!("{c}\n{main}")).unwrap();
    let exe = dir.join("em_check");
    let out = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"])
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("gcc (the C reference code is compiled with it)");
    assert!(out.status.success(), "gcc failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

fn frame(flags: Flags, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; payload.len() + 24];
    let repr = FrameRepr { flags, kind: 0x0102, seq, payload_len: payload.len() };
    repr.emit_with_payload(payload, &mut b).unwrap();
    b
}

/// Rewrites header byte `at` and reseals `hcrc` only (as a sender of another version, or a
/// buggy one, would).
fn resealed(mut b: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    b[at] = value;
    let h = crc32c(&b[..20]);
    b[20..24].copy_from_slice(&h.to_le_bytes());
    b
}

#[test]
fn worked_examples_match_the_codec() {
    let text = doc();
    let checked = frame(Flags::empty(), 7, b"hi!");
    let unchecked = frame(Flags::UNCHECKED, 7, b"hi!");
    assert_eq!(example_bytes(&text, "### 10.1"), checked);
    assert_eq!(example_bytes(&text, "### 10.3"), unchecked);
    let typed = example_bytes(&text, "### 10.2");
    assert!(Frame::new_checked(&typed[..]).is_ok());
}

#[test]
fn c_reference_checker_agrees_with_the_codec() {
    let dir = std::env::temp_dir().join(format!("ember-wire-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build_checker(&dir);

    let mut cases: Vec<Vec<u8>> = Vec::new();
    let payload: Vec<u8> = (0..40u8).collect();
    for flags in [Flags::empty(), Flags::UNCHECKED, Flags::RESPONSE | Flags::UNCHECKED, Flags::from_bits_retain(0xF3)] {
        for len in [0, 1, 3, 40] {
            let f = frame(flags, len as u32, &payload[..len]);
            // Every single-bit flip, every truncation.
            for i in 0..f.len() {
                for bit in [0x01, 0x10, 0x80] {
                    let mut g = f.clone();
                    g[i] ^= bit;
                    cases.push(g);
                }
                cases.push(f[..i].to_vec());
            }
            // Header rewrites with a valid `hcrc`: unknown critical flags, another version,
            // the flag `UNCHECKED` set or cleared over an unchanged `crc`.
            cases.push(resealed(f.clone(), 3, f[3] | 0x08));
            cases.push(resealed(f.clone(), 3, f[3] ^ 0x04));
            cases.push(resealed(f.clone(), 2, 2));
            cases.push(f);
        }
    }
    let mut absurd = frame(Flags::UNCHECKED, 1, b"");
    absurd[12..16].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
    let h = crc32c(&absurd[..20]);
    absurd[20..24].copy_from_slice(&h.to_le_bytes());
    cases.push(absurd);

    let mut input = Vec::new();
    for c in &cases {
        input.extend_from_slice(&(c.len() as u32).to_le_bytes());
        input.extend_from_slice(c);
    }
    let file = dir.join("frames.bin");
    std::fs::write(&file, &input).unwrap();
    let out = Command::new(&exe).arg(&file).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    let got: Vec<u32> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got.len(), cases.len());
    let mut seen = [0usize; 8];
    for (c, g) in cases.iter().zip(&got) {
        assert_eq!(*g, rust_status(c), "C and Rust disagree on {c:02x?}");
        seen[*g as usize] += 1;
    }
    // Every verdict occurred, so the comparison covered every branch of the checker.
    assert!(seen.iter().all(|&n| n > 0), "verdicts seen: {seen:?}");
}
