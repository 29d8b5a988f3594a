//! A newc ("070701") cpio archive, the format Linux unpacks as an initramfs. Written here
//! rather than shelling out to cpio, which a fresh machine may lack.

#[derive(Debug, Default)]
pub struct Initramfs {
    out: Vec<u8>,
    inode: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.inode += 1;
        let name_len = name.len() + 1;
        let fields = [
            self.inode,
            mode,
            0,
            0,
            1,
            0,
            u32::try_from(data.len()).expect("a guest file under 4 GiB"),
            0,
            0,
            0,
            0,
            u32::try_from(name_len).expect("a short file name"),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    /// `path` without a leading slash, e.g. `bin`.
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | mode, data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, target.as_bytes());
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_and_four_byte_aligned() {
        let mut a = Initramfs::new();
        a.dir("bin");
        a.file("bin/x", 0o755, b"hello");
        a.symlink("sh", "bin/x");
        let bytes = a.finish();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("070701").count(), 4);
        assert!(text.contains("bin/x\0"));
        assert!(text.contains("TRAILER!!!"));
        // The file header: mode 0o100755 and size 5, in hex.
        assert!(text.contains(&format!("{:08x}", 0o100_755)));
    }
}
