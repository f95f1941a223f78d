//! Reproducible ext4 images from directory trees, without mounting anything.
//!
//! `mkfs.ext4 -d` copies a staging tree into a new file system. To make the same tree
//! give the same bytes: the staging tree's times are set to [`EPOCH`]; mke2fs runs with
//! a pinned configuration (its features do not follow the host's `/etc/mke2fs.conf`),
//! `E2FSPROGS_FAKE_TIME`, and a UUID and directory hash seed derived from the recipe
//! key; it reads directories in sorted order by itself. mke2fs copies each file's
//! inode change time from the staging tree, which no program can set, so a `debugfs`
//! pass then sets the change time of every inode in use (and, for trees that vocc
//! assembles itself, owner and group to root).

use super::tools::{Run, DEBUGFS, DUMPE2FS, EPOCH, MKFS_EXT4};
use super::ImageError;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The mke2fs configuration every layer is made with.
const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 0

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// How to make the file system.
pub struct Ext4<'a> {
    /// The staging tree.
    pub tree: &'a Path,
    /// The image file to create.
    pub image: &'a Path,
    /// Bytes; `None`: the tree's size with room to spare.
    pub size: Option<u64>,
    /// 32 hex digits: the UUID and hash seed (from the recipe key).
    pub seed: &'a str,
    /// The volume label.
    pub label: &'a str,
    /// Make every file owned by root (trees vocc assembles); Debian trees keep theirs.
    pub root_owned: bool,
    /// The appliance line, for errors.
    pub source: &'a str,
}

/// Normalises the times of `tree` and makes the image.
pub fn make(spec: &Ext4) -> Result<(), ImageError> {
    normalise_times(spec.tree)
        .map_err(|e| ImageError::io(format!("cannot set times in `{}`", spec.tree.display()), e))?;
    let used = tree_bytes(spec.tree);
    let size = match spec.size {
        Some(s) => {
            // The tree plus the file system's own metadata (inode tables, journal) must fit.
            let overhead = s / 16 + (8 << 20);
            if used + overhead > s {
                return Err(ImageError::TooSmall {
                    layer: spec.label.to_owned(),
                    size: s,
                    needed: used + overhead,
                    source_line: spec.source.to_owned(),
                });
            }
            s
        }
        None => round_up(used + used / 3 + (32 << 20), 16 << 20),
    };
    let uuid = uuid(spec.seed);
    let conf = spec.image.with_extension("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF)
        .map_err(|e| ImageError::io("cannot write mke2fs.conf".into(), e))?;
    let _ = fs::remove_file(spec.image);
    let result = Run::new(MKFS_EXT4, spec.source)
        .env("MKE2FS_CONFIG", &conf)
        .args(["-q", "-F", "-t", "ext4", "-L", spec.label, "-U", &uuid])
        .arg("-E")
        .arg(format!(
            "hash_seed={uuid},root_owner=0:0,lazy_itable_init=0,nodiscard"
        ))
        .arg("-d")
        .arg(spec.tree)
        .arg("--")
        .arg(spec.image)
        .arg(format!("{}k", size / 1024))
        .run();
    let _ = fs::remove_file(&conf);
    result?;
    fix_inodes(spec.image, spec.root_owned, spec.source)
}

/// A UUID (8-4-4-4-12) from the first 32 hex digits of `seed`.
pub fn uuid(seed: &str) -> String {
    let h: String = seed
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain("0".repeat(32).chars())
        .take(32)
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// The bytes the files of `tree` take (4 KiB blocks per file and directory).
pub fn tree_bytes(tree: &Path) -> u64 {
    walkdir::WalkDir::new(tree)
        .into_iter()
        .flatten()
        .map(|e| {
            e.metadata()
                .map(|m| round_up(m.len().max(1), 4096))
                .unwrap_or(4096)
        })
        .sum()
}

/// Sets access and modification times of everything in `tree` (symbolic links
/// included, not followed) to [`EPOCH`].
pub fn normalise_times(tree: &Path) -> io::Result<()> {
    let times = [
        libc::timespec {
            tv_sec: EPOCH,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: EPOCH,
            tv_nsec: 0,
        },
    ];
    for entry in walkdir::WalkDir::new(tree).contents_first(true) {
        let entry = entry?;
        let path = CString::new(entry.path().as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: `path` is a valid NUL-terminated string and `times` has two entries.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                path.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets the change, access and modification times (and for root-owned trees, owner
/// and group) of every inode in use, found from the free-inode ranges dumpe2fs prints
/// per group.
fn fix_inodes(image: &Path, root_owned: bool, source: &str) -> Result<(), ImageError> {
    let text = Run::new(DUMPE2FS, source).arg("--").arg(image).output()?;
    let text = String::from_utf8_lossy(&text);
    let used = used_inodes(&text).ok_or_else(|| ImageError::ToolFailed {
        command: format!("dumpe2fs {}", image.display()),
        status: "unexpected output".into(),
        stderr: super::tools::tail(&text, 5),
        source_line: source.to_owned(),
    })?;
    let mut script = String::with_capacity(used.len() * 40);
    for ino in used {
        // Reading the staging tree moved access times; change times are the copy's.
        // The `_extra` fields hold nanoseconds and the high bits of the seconds.
        for field in ["ctime", "atime", "mtime"] {
            script.push_str(&format!(
                "sif <{ino}> {field} @{EPOCH}\nsif <{ino}> {field}_extra 0\n"
            ));
        }
        if root_owned && ino > 11 {
            script.push_str(&format!("sif <{ino}> uid 0\nsif <{ino}> gid 0\n"));
        }
    }
    let cmds = image.with_extension("debugfs");
    fs::write(&cmds, script)
        .map_err(|e| ImageError::io("cannot write debugfs commands".into(), e))?;
    let out = Run::new(DEBUGFS, source)
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg("--")
        .arg(image)
        .output();
    let _ = fs::remove_file(&cmds);
    // debugfs exits 0 even when a command fails: look for its complaints.
    let out = String::from_utf8_lossy(&out?).into_owned();
    if let Some(bad) = out
        .lines()
        .find(|l| !l.starts_with("debugfs:") && !l.trim().is_empty())
    {
        return Err(ImageError::ToolFailed {
            command: format!("debugfs -w -f <commands> {}", image.display()),
            status: "reported an error".into(),
            stderr: bad.to_owned(),
            source_line: source.to_owned(),
        });
    }
    Ok(())
}

/// The inodes in use: every inode of every group less the `Free inodes:` ranges.
fn used_inodes(dumpe2fs: &str) -> Option<Vec<u32>> {
    let field = |name: &str| -> Option<u32> {
        dumpe2fs
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let count = field("Inode count:")?;
    let per_group = field("Inodes per group:")?;
    let mut used = vec![true; count as usize + 1];
    used[0] = false;
    let mut groups = 0;
    for line in dumpe2fs.lines() {
        // Group lines are indented; the summary line `Free inodes: N` is not.
        let Some(ranges) = line.strip_prefix("  Free inodes:") else {
            continue;
        };
        groups += 1;
        for r in ranges.split(',').filter(|r| !r.trim().is_empty()) {
            let (a, b) = r.trim().split_once('-').unwrap_or((r.trim(), r.trim()));
            let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
            for slot in used.get_mut(a..=b)? {
                *slot = false;
            }
        }
    }
    if groups as u64 * u64::from(per_group) != u64::from(count) {
        return None;
    }
    Some((1..=count).filter(|&i| used[i as usize]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_come_from_the_seed() {
        assert_eq!(
            uuid("0123456789abcdef0123456789abcdefffff"),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
    }

    #[test]
    fn used_inodes_are_the_complement_of_the_free_ranges() {
        let text = "Inode count:              12\nFree inodes:              5\nInodes per group:         4\n\
                    Group 0: (Blocks 1-8192)\n  Free inodes: 3-4\n\
                    Group 1: (Blocks 8193-16383)\n  Free inodes: 5, 7-8\n\
                    Group 2: (Blocks 16384-24575)\n  Free inodes:\n";
        assert_eq!(used_inodes(text), Some(vec![1, 2, 6, 9, 10, 11, 12]));
        assert_eq!(used_inodes("Inode count: 8\nInodes per group: 4\n"), None);
    }
}
