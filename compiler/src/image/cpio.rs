//! A writer for the `newc` cpio format the kernel unpacks as an initramfs, with fixed
//! inode numbers, owners and times so that the same entries give the same bytes.

/// One entry of the archive.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A character device (such as `/dev/console`, which the kernel opens before /init).
    CharDev {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::CharDev { path, .. } => path,
        }
    }
}

/// The archive of `entries`, sorted by path (parents before children), every entry
/// owned by root with modification time `mtime`.
pub fn archive(mut entries: Vec<Entry>, mtime: u32) -> Vec<u8> {
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match e {
            Entry::Dir { mode, .. } => (0o040000 | mode, &[], (0, 0)),
            Entry::File { mode, data, .. } => (0o100000 | mode, data, (0, 0)),
            Entry::Symlink { target, .. } => (0o120777, target.as_bytes(), (0, 0)),
            Entry::CharDev {
                mode, major, minor, ..
            } => (0o020000 | mode, &[], (*major, *minor)),
        };
        let nlink = if matches!(e, Entry::Dir { .. }) { 2 } else { 1 };
        header(
            &mut out,
            ino,
            mode,
            nlink,
            mtime,
            data.len() as u32,
            rdev,
            e.path().trim_start_matches('/'),
        );
        out.extend_from_slice(data);
        pad(&mut out);
    }
    header(&mut out, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!");
    // The kernel reads the archive in 512-byte blocks; pad like cpio does.
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) {
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        mtime,
        size,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_sorted() {
        let a = archive(
            vec![
                Entry::File {
                    path: "/init".into(),
                    mode: 0o755,
                    data: b"#!/bin/sh\n".to_vec(),
                },
                Entry::Dir {
                    path: "/bin".into(),
                    mode: 0o755,
                },
                Entry::Symlink {
                    path: "/bin/sh".into(),
                    target: "busybox".into(),
                },
            ],
            0,
        );
        assert_eq!(a.len() % 512, 0);
        let text = String::from_utf8_lossy(&a);
        let bin = text.find("bin\0").unwrap();
        let sh = text.find("bin/sh\0").unwrap();
        let init = text.find("init\0").unwrap();
        assert!(bin < sh && sh < init);
        assert!(text.contains("TRAILER!!!"));
        // The header of the first entry: magic, inode 1, a directory 0755.
        assert!(text.starts_with("07070100000001000041ed"));
    }

    #[test]
    fn the_same_entries_give_the_same_bytes() {
        let e = || {
            vec![Entry::Dir {
                path: "/a".into(),
                mode: 0o700,
            }]
        };
        assert_eq!(archive(e(), 7), archive(e(), 7));
    }
}
