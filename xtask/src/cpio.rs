//! A writer for the SVR4 `newc` cpio format (magic `070701`), the format
//! Linux unpacks an initramfs from.
//!
//! Each entry is a 110-byte ASCII header (the magic, then thirteen 8-digit
//! hexadecimal fields), the NUL-terminated name, padding to a multiple of
//! four bytes, the data, and padding again to a multiple of four. The
//! archive ends with an entry named `TRAILER!!!`.

/// File type bits of a cpio `mode` (the same values as `st_mode`).
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// Builds a `newc` archive in memory. Names are stored as given, without a
/// leading `/` (the usual form, which extractors accept without warnings);
/// a directory must be added before what it contains. Owners are root and
/// every time stamp is 0, so the same inputs give the same bytes.
pub struct Writer {
    buf: Vec<u8>,
    next_ino: u32,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

/// The fields of one header, in the order the format stores them after the
/// magic (`check` is always 0 for `070701`).
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
}

impl Writer {
    pub fn new() -> Writer {
        // Inode 0 is left unused: some extractors treat it as "no inode".
        Writer {
            buf: Vec::new(),
            next_ino: 1,
        }
    }

    /// Adds a directory with permission bits `perm` (e.g. `0o755`).
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
    }

    /// Adds a regular file with permission bits `perm` and contents `data`.
    ///
    /// # Panics
    /// If `data` is 4 GiB or larger (the size field has 32 bits).
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
    }

    /// Adds a character device node `major:minor`.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.header(
            TRAILER,
            &Header {
                ino: 0,
                mode: 0,
                nlink: 1,
                filesize: 0,
                rdevmajor: 0,
                rdevminor: 0,
            },
        );
        self.buf
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        assert!(
            !name.is_empty() && name != TRAILER,
            "cpio: bad entry name `{name}`"
        );
        let filesize = u32::try_from(data.len()).expect("cpio: newc files are below 4 GiB");
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(
            name,
            &Header {
                ino,
                mode,
                nlink,
                filesize,
                rdevmajor: rdev.0,
                rdevminor: rdev.1,
            },
        );
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn header(&mut self, name: &str, h: &Header) {
        let namesize = u32::try_from(name.len() + 1).expect("cpio: name too long");
        let fields = [
            h.ino,
            h.mode,
            0, // uid
            0, // gid
            h.nlink,
            0, // mtime
            h.filesize,
            0, // devmajor
            0, // devminor
            h.rdevmajor,
            h.rdevminor,
            namesize,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// Zero bytes up to the next multiple of four. The archive starts at
    /// offset 0, so the buffer's length is the archive offset.
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One header as the format defines it, built field by field from
    /// strings so a mistake in [`Writer::header`] cannot hide here.
    fn hdr(ino: &str, mode: &str, nlink: &str, size: &str, rdev: (&str, &str), ns: &str) -> String {
        let z = "00000000";
        [
            "070701", ino, mode, z, z, nlink, z, size, z, z, rdev.0, rdev.1, ns, z,
        ]
        .concat()
    }

    #[test]
    fn tiny_archive_has_the_exact_newc_bytes() {
        let mut w = Writer::new();
        w.dir("/dev", 0o755);
        w.file("init", 0o755, b"hello");
        w.char_dev("dev/console", 0o600, 5, 1);
        let bytes = w.finish();

        let mut want: Vec<u8> = Vec::new();
        // 110-byte header + "dev\0" = 114, padded to 116.
        want.extend(
            hdr(
                "00000001",
                "000041ED",
                "00000002",
                "00000000",
                ("00000000", "00000000"),
                "00000004",
            )
            .bytes(),
        );
        want.extend(b"dev\0\0\0");
        // 110 + "init\0" = 115 -> 116; 5 data bytes -> 8.
        want.extend(
            hdr(
                "00000002",
                "000081ED",
                "00000001",
                "00000005",
                ("00000000", "00000000"),
                "00000005",
            )
            .bytes(),
        );
        want.extend(b"init\0\0");
        want.extend(b"hello\0\0\0");
        // 110 + "dev/console\0" = 122 -> 124.
        want.extend(
            hdr(
                "00000003",
                "00002180",
                "00000001",
                "00000000",
                ("00000005", "00000001"),
                "0000000C",
            )
            .bytes(),
        );
        want.extend(b"dev/console\0\0\0");
        // 110 + "TRAILER!!!\0" = 121 -> 124.
        want.extend(
            hdr(
                "00000000",
                "00000000",
                "00000001",
                "00000000",
                ("00000000", "00000000"),
                "0000000B",
            )
            .bytes(),
        );
        want.extend(b"TRAILER!!!\0\0\0\0");

        // Every header is exactly 110 bytes: the magic and 13 fields of 8.
        assert_eq!(want.len() % 4, 0);
        assert_eq!(&want[110..114], b"dev\0");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(bytes, want);
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn every_entry_starts_on_a_four_byte_boundary() {
        // Names and sizes of every length modulo 4 (header + name and data
        // each pad separately).
        let mut w = Writer::new();
        for n in 1..=8usize {
            let name = "abcdefgh"[..n].to_string();
            w.file(&name, 0o644, &vec![b'x'; n]);
        }
        let bytes = w.finish();
        // Walk the archive with the sizes its headers give.
        let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
        let mut off = 0;
        let mut names = Vec::new();
        loop {
            assert_eq!(off % 4, 0);
            assert_eq!(&bytes[off..off + 6], b"070701");
            let size = hex(&bytes[off + 54..off + 62]) as usize;
            let namesize = hex(&bytes[off + 94..off + 102]) as usize;
            let name = &bytes[off + 110..off + 110 + namesize - 1];
            assert_eq!(bytes[off + 110 + namesize - 1], 0);
            let data = (off + 110 + namesize).next_multiple_of(4);
            let name = String::from_utf8(name.to_vec()).unwrap();
            if name == TRAILER {
                assert_eq!(data, bytes.len());
                break;
            }
            assert_eq!(&bytes[data..data + size], vec![b'x'; size].as_slice());
            assert!(
                bytes[data + size..(data + size).next_multiple_of(4)]
                    .iter()
                    .all(|b| *b == 0)
            );
            names.push(name);
            off = (data + size).next_multiple_of(4);
        }
        assert_eq!(names.len(), 8);
        assert_eq!(names[7], "abcdefgh");
    }

    /// Extracts an archive with the host's `cpio`, when there is one, and
    /// compares what comes out with what went in.
    #[test]
    fn host_cpio_extracts_the_same_files() {
        let cpio = std::path::Path::new("/usr/bin/cpio");
        if !cpio.exists() {
            eprintln!("note: /usr/bin/cpio is not installed; extraction check skipped");
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let big: Vec<u8> = (0..10_001u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = Writer::new();
        w.dir("proc", 0o755);
        w.dir("sub", 0o700);
        w.file("init", 0o755, &big);
        w.file("sub/a", 0o644, b"abc");
        let archive = w.finish();
        let mut child = std::process::Command::new(cpio)
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode();
        assert_eq!(std::fs::read(dir.join("init")).unwrap(), big);
        assert_eq!(std::fs::read(dir.join("sub/a")).unwrap(), b"abc");
        assert_eq!(mode("init") & 0o777, 0o755);
        assert_eq!(mode("sub") & 0o777, 0o700);
        assert!(dir.join("proc").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
