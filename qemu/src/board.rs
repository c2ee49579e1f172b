//! The board table, `targets/boards.toml`: one entry per supported class of board.

use serde::Deserialize;
use std::path::Path;

/// Where the table lives, relative to the workspace root.
pub const TABLE: &str = "targets/boards.toml";

/// The cargo configuration for plain cross builds (`cargo --config targets/cross.toml`).
pub const CROSS_CONFIG: &str = "targets/cross.toml";

/// The kernel a board boots: a Debian metapackage, resolved to the current ABI each time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// The Debian suite that has it (`bookworm`, `trixie`).
    pub suite: String,
    /// The metapackage (`linux-image-arm64`).
    pub package: String,
    /// The file inside the versioned package that qemu boots (a glob: `boot/vmlinuz-*`).
    pub file: String,
}

/// One supported class of board. The fields are documented in the table itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// What `--board` takes.
    pub name: String,
    /// The class of board.
    pub title: String,
    /// Real boards of this class.
    pub examples: Vec<String>,
    /// The Rust target triple.
    pub triple: String,
    /// The cross gcc that links.
    pub linker: String,
    /// rustc flags for the board's binaries.
    pub rustflags: Vec<String>,
    /// Debian packages the host needs: the cross gcc, its libc, the emulators.
    pub host_packages: Vec<String>,
    /// The qemu-user emulator (tier 1).
    pub qemu_user: String,
    /// The qemu-system binary (tier 2).
    pub qemu_system: String,
    /// qemu-system `-M`.
    pub machine: String,
    /// qemu-system `-cpu`.
    pub cpu: String,
    /// The serial console device.
    pub console: String,
    /// Debian's architecture name.
    pub deb_arch: String,
    /// The kernel tier 2 boots.
    pub kernel: Kernel,
    /// Whether the guest carries the architecture's `dbus-daemon`.
    pub dbus: bool,
    /// Tier 2's time limit, in seconds.
    pub boot_timeout_s: u64,
    /// qemu-user `-cpu` of tier 1's CRC-32C run on a CPU with the architecture's CRC
    /// instructions; empty when the architecture has none.
    #[serde(default)]
    pub qemu_cpu_crc: String,
    /// qemu-user `-cpu` of the run on a CPU without them; empty when qemu emulates no
    /// such CPU of the architecture.
    #[serde(default)]
    pub qemu_cpu_no_crc: String,
}

impl Board {
    /// The CRC-32C runs of tier 1: `(qemu-user -cpu, whether that CPU has the
    /// architecture's CRC instructions)`, the empty ones left out.
    pub fn crc_cpus(&self) -> Vec<(&str, bool)> {
        [(self.qemu_cpu_crc.as_str(), true), (self.qemu_cpu_no_crc.as_str(), false)]
            .into_iter()
            .filter(|(cpu, _)| !cpu.is_empty())
            .collect()
    }

    /// The board's rustflags as a default build has them: without `-C target-cpu`, so
    /// optional instructions are found at run time rather than assumed.
    pub fn default_cpu_rustflags(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.rustflags.iter().peekable();
        while let Some(f) = it.next() {
            if f == "-C" && it.peek().is_some_and(|n| n.starts_with("target-cpu=")) {
                it.next();
                continue;
            }
            if f.starts_with("-Ctarget-cpu=") {
                continue;
            }
            out.push(f.clone());
        }
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    board: Vec<Board>,
}

/// Parses a board table.
pub fn parse(text: &str) -> Result<Vec<Board>, String> {
    let t: Table = toml::from_str(text).map_err(|e| format!("{TABLE}: {e}"))?;
    for (i, b) in t.board.iter().enumerate() {
        if t.board[..i].iter().any(|o| o.name == b.name) {
            return Err(format!("{TABLE}: board `{}` appears twice", b.name));
        }
        if !crate::protocol::is_name(&b.name) {
            return Err(format!("{TABLE}: board name `{}` must be letters, digits, - and _", b.name));
        }
    }
    Ok(t.board)
}

/// Reads the table under the workspace root `root`.
pub fn load(root: &Path) -> Result<Vec<Board>, String> {
    let path = root.join(TABLE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text)
}

/// The board called `name`, or an error listing the known ones.
pub fn find<'a>(boards: &'a [Board], name: &str) -> Result<&'a Board, String> {
    boards.iter().find(|b| b.name == name).ok_or_else(|| {
        let known: Vec<&str> = boards.iter().map(|b| b.name.as_str()).collect();
        format!("no board `{name}` in {TABLE} (known: {})", known.join(", "))
    })
}

impl Board {
    /// Cargo's environment-variable prefix for this board's target (`CARGO_TARGET_<TRIPLE>_`).
    fn cargo_prefix(&self) -> String {
        format!("CARGO_TARGET_{}_", self.triple.to_ascii_uppercase().replace(['-', '.'], "_"))
    }

    /// The environment that makes `cargo build|test --target <triple>` link for the board
    /// and run its binaries under qemu-user.
    pub fn cargo_env(&self) -> Vec<(String, String)> {
        let p = self.cargo_prefix();
        vec![
            (format!("{p}LINKER"), self.linker.clone()),
            (format!("{p}RUSTFLAGS"), self.rustflags.join(" ")),
            (format!("{p}RUNNER"), self.qemu_user.clone()),
        ]
    }

    /// This board's section of [`CROSS_CONFIG`], for a plain `cargo build --target`.
    pub fn cargo_config(&self) -> String {
        let flags: Vec<String> = self.rustflags.iter().map(|f| format!("\"{f}\"")).collect();
        format!(
            "# {} ({})\n[target.{}]\nlinker = \"{}\"\nrustflags = [{}]\nrunner = \"{}\"\n",
            self.name,
            self.title,
            self.triple,
            self.linker,
            flags.join(", "),
            self.qemu_user
        )
    }
}

/// The board table of docs/boards.md, as generated from the table.
pub fn markdown_table(boards: &[Board]) -> String {
    let mut s = String::from(
        "| `--board` | Class | Real boards | Rust target | qemu-system (tier 2) | Kernel (Debian) | D-Bus in guest |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for b in boards {
        s.push_str(&format!(
            "| `{}` | {} | {} | `{}` | `{} -M {} -cpu {}`, console `{}` | `{}` ({}) | {} |\n",
            b.name,
            b.title,
            b.examples.join(", "),
            b.triple,
            b.qemu_system,
            b.machine,
            b.cpu,
            b.console,
            b.kernel.package,
            b.kernel.suite,
            if b.dbus { "yes" } else { "no" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    #[test]
    fn the_table_has_the_three_board_classes() {
        let boards = load(&root()).unwrap();
        let triples: Vec<&str> = boards.iter().map(|b| b.triple.as_str()).collect();
        for t in ["aarch64-unknown-linux-gnu", "armv7-unknown-linux-gnueabihf", "riscv64gc-unknown-linux-gnu"] {
            assert!(triples.contains(&t), "{t} missing from {TABLE}");
        }
        assert!(boards.iter().any(|b| b.dbus), "at least one board carries dbus-daemon");
        for b in &boards {
            assert!(b.rustflags.iter().any(|f| f == "target-feature=+crt-static"), "{}: static", b.name);
            assert!(b.host_packages.iter().any(|p| p.starts_with("libc6-dev-")), "{}: libc6-dev-*-cross", b.name);
        }
        assert!(find(&boards, "no-such-board").unwrap_err().contains("known: "));
    }

    #[test]
    fn docs_and_cargo_config_are_in_step_with_the_table() {
        let boards = load(&root()).unwrap();
        let docs = std::fs::read_to_string(root().join("docs/boards.md")).unwrap();
        assert!(
            docs.contains(&markdown_table(&boards)),
            "docs/boards.md's table is stale; it must contain:\n{}",
            markdown_table(&boards)
        );
        let config = std::fs::read_to_string(root().join(CROSS_CONFIG)).unwrap();
        for b in &boards {
            assert!(config.contains(&b.cargo_config()), "{CROSS_CONFIG} must contain:\n{}", b.cargo_config());
            assert!(b.qemu_user.contains(std::env::consts::ARCH) || b.qemu_user.starts_with("qemu-"));
        }
        assert!(config.contains("EMBER_TEST_RUNNER = \"qemu-{arch}-static\""));
    }

    #[test]
    fn every_board_has_a_crc_run_and_default_flags_drop_the_cpu() {
        let boards = load(&root()).unwrap();
        for b in &boards {
            assert!(!b.crc_cpus().is_empty(), "{}: no qemu_cpu_crc / qemu_cpu_no_crc", b.name);
            let flags = b.default_cpu_rustflags();
            assert!(flags.iter().all(|f| !f.contains("target-cpu")), "{}: {flags:?}", b.name);
            assert!(flags.iter().any(|f| f == "target-feature=+crt-static"), "{}: {flags:?}", b.name);
        }
        let rpi4 = find(&boards, "rpi4").unwrap();
        assert!(rpi4.crc_cpus().iter().any(|&(_, has)| has), "aarch64 runs on a CPU with the CRC extension");
        let rv = find(&boards, "visionfive2").unwrap();
        assert_eq!(rv.crc_cpus().len(), 2, "riscv64 runs with and without Zbc");
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(parse("[[board]]\nname = \"x\"\n").unwrap_err().contains("missing field"));
        let one = std::fs::read_to_string(root().join(TABLE)).unwrap();
        let first = one.split("\n[[board]]\n").nth(1).unwrap();
        let twice = format!("[[board]]\n{first}\n[[board]]\n{first}");
        let err = parse(&twice).unwrap_err();
        assert!(err.contains("appears twice"), "{err}");
        assert!(parse(&one.replace("dbus = true", "dbus = true\nspeed = 3")).unwrap_err().contains("unknown field"));
    }

    #[test]
    fn cargo_env_names_the_target() {
        let boards = load(&root()).unwrap();
        let b = find(&boards, "beaglebone").unwrap();
        let env = b.cargo_env();
        assert_eq!(
            env[0],
            ("CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER".into(), "arm-linux-gnueabihf-gcc".into())
        );
        assert_eq!(env[2].1, "qemu-arm-static");
    }
}
