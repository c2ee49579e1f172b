//! A writer of initramfs archives: cpio in the `newc` format the kernel unpacks, with
//! directories, regular files, symlinks and device nodes (so `/dev/console` exists before
//! devtmpfs is mounted, which needs no root on the host).

use std::io::{self, Write};

/// An archive being written.
pub struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

/// `S_IFDIR`, `S_IFREG`, `S_IFLNK` and `S_IFCHR`.
const DIR: u32 = 0o040000;
const REG: u32 = 0o100000;
const LNK: u32 = 0o120000;
const CHR: u32 = 0o020000;

impl<W: Write> Cpio<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        Cpio { out, ino: 1, written: 0 }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8], rdev: (u32, u32)) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    /// A directory (`0755`); its parents must come first.
    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, DIR | 0o755, 2, &[], (0, 0))
    }

    /// A regular file with `mode`'s permission bits.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, REG | (mode & 0o7777), 1, data, (0, 0))
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, LNK | 0o777, 1, target.as_bytes(), (0, 0))
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, CHR | (mode & 0o7777), 1, &[], (major, minor))
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, &[], (0, 0))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GNU cpio, the reference, lists and extracts what we wrote.
    #[test]
    fn gnu_cpio_reads_it_back() {
        let mut a = Cpio::new(Vec::new());
        a.dir("bin").unwrap();
        a.file("/bin/hello", 0o755, b"hello, board\n").unwrap();
        a.symlink("init", "bin/hello").unwrap();
        a.dir("dev").unwrap();
        a.char_device("dev/console", 0o600, 5, 1).unwrap();
        let bytes = a.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        let dir = std::env::temp_dir().join(format!("ember-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.cpio");
        std::fs::write(&archive, &bytes).unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-itv", "--quiet", "-F"])
            .arg(&archive)
            .output()
            .expect("cpio (installed by cargo xtask test)");
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{list} {}", String::from_utf8_lossy(&out.stderr));
        assert!(list.contains("-rwxr-xr-x") && list.contains("bin/hello"), "{list}");
        assert!(list.contains("init -> bin/hello"), "{list}");
        assert!(list.contains("crw-------") && list.contains("5,") && list.contains("dev/console"), "{list}");
        let x = std::process::Command::new("cpio")
            .args(["-id", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive)
            .arg("bin/hello")
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(x.success());
        assert_eq!(std::fs::read(dir.join("bin/hello")).unwrap(), b"hello, board\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
