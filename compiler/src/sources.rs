//! Where an appliance's sources may come from, and how they are read. Imports, `from
//! dir` trees and pinned `from image` files stay inside the appliance's directory
//! tree (the directory of the file named on the command line) or a directory the user
//! allows with `--allow-path`; symbolic links are resolved before containment is
//! judged. Only regular files are read (a directory for `from dir`), opened so that a
//! FIFO or a device never blocks, with a bounded read. Also the shapes of the names
//! that reach external programs: Debian release names and package versions.

use crate::model::Layer;
use crate::world::{builtin, World};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The largest appliance file vocc reads.
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// The directories sources may come from, as resolved (canonical) paths.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    roots: Vec<PathBuf>,
}

/// Why a source path is refused.
#[derive(Debug)]
pub enum Refusal {
    /// It lies outside every allowed directory (`via` is where a symbolic link led).
    Outside { via: Option<PathBuf> },
    /// It cannot be resolved (missing, permission).
    Unreadable(io::Error),
}

impl Sandbox {
    /// The directory of `top` (the file named on the command line) and `allowed`.
    pub fn new(world: &dyn World, top: &Path, allowed: &[PathBuf]) -> Sandbox {
        let mut roots = Vec::new();
        if builtin(top).is_none() {
            let dir = top.parent().unwrap_or(Path::new(""));
            roots.push(world.resolve(dir).unwrap_or_else(|_| absolute(dir)));
        }
        for a in allowed {
            roots.push(world.resolve(a).unwrap_or_else(|_| absolute(a)));
        }
        Sandbox { roots }
    }

    /// The allowed directories, for messages.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    fn contains(&self, path: &Path) -> bool {
        self.roots.iter().any(|r| inside(path, r))
    }

    /// The resolved path of `path` when it may be read: inside an allowed directory
    /// both as written and once its symbolic links are resolved. A path outside is
    /// refused before it is looked at.
    pub fn admit(&self, world: &dyn World, path: &Path) -> Result<PathBuf, Refusal> {
        if builtin(path).is_some() {
            return Ok(path.to_path_buf());
        }
        if !self.contains(&absolute(path)) {
            return Err(Refusal::Outside { via: None });
        }
        let resolved = world.resolve(path).map_err(Refusal::Unreadable)?;
        if self.contains(&resolved) {
            Ok(resolved)
        } else {
            Err(Refusal::Outside {
                via: Some(resolved),
            })
        }
    }

    /// A hint naming the allowed directories and the flag that adds one.
    pub fn hint(&self, what: &str) -> String {
        let roots: Vec<String> = self
            .roots
            .iter()
            .map(|r| format!("`{}`", r.display()))
            .collect();
        let within = if roots.is_empty() {
            "no directory".to_string()
        } else {
            roots.join(", ")
        };
        format!(
            "{what} must lie inside {within}: move it there, or allow its directory with \
             `--allow-path DIR`"
        )
    }
}

/// `path` made absolute (against the working directory) and `.`/`..` resolved
/// lexically, without looking at the file system.
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_path_buf(),
        }
    };
    normalise(&joined)
}

/// `.` and `..` resolved lexically; a relative path keeps the `..` it cannot resolve.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    out.iter().collect()
}

/// Whether the normalised `path` is `root` or below it.
fn inside(path: &Path, root: &Path) -> bool {
    match path.strip_prefix(root) {
        Ok(rest) => !rest.components().any(|c| matches!(c, Component::ParentDir)),
        Err(_) => false,
    }
}

/// The path of a layer's `from dir`/`from image` source: relative paths are relative
/// to the directory of the file that defines the layer.
pub fn layer_path(layer: &Layer, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    // `file:line:col`: the file is what precedes the last two fields.
    let loc = &layer.origin.location;
    let file = loc.rsplitn(3, ':').nth(2).unwrap_or("");
    Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(p)
}

/// What a path is, its final symbolic link not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File {
        size: u64,
    },
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

impl Kind {
    pub fn of(meta: &std::fs::Metadata) -> Kind {
        let ft = meta.file_type();
        if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File { size: meta.len() }
        } else {
            Kind::Special
        }
    }

    /// How a person would name it.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File { .. } => "a file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Special => "a FIFO, socket or device",
        }
    }
}

/// Opens `path` for reading as a regular file only: a final symbolic link is not
/// followed, and opening a FIFO does not wait for a writer (it is then refused).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: `c` is a valid NUL-terminated path; the flags ask for nothing unusual.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ELOOP) {
            return Err(io::Error::other(
                "a symbolic link where a file was expected",
            ));
        }
        return Err(e);
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{}, not a regular file",
            Kind::of(&meta).describe()
        )));
    }
    // Reads block normally again (a regular file never would; this is for clarity).
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok(file)
}

/// Reads a regular file of at most `limit` bytes as UTF-8 text.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<String> {
    let file = open_regular(path)?;
    let too_big = || {
        io::Error::other(format!(
            "larger than {} MiB, the most an appliance file may be",
            limit >> 20
        ))
    };
    if file.metadata()?.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    crate::world::decode(bytes)
}

/// Why `suite` cannot be a Debian release name (`bookworm`, `bookworm-backports`,
/// `sid`, `stable`), if it cannot: lowercase letters and digits in `-`-separated
/// parts, starting with a letter. Anything else could be read by mmdebstrap as an
/// option or a path.
pub fn suite_problem(suite: &str) -> Option<String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let ok = suite.len() <= 64
        && suite.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && suite.split('-').all(part_ok);
    (!ok).then(|| {
        "a Debian release is a name such as `bookworm`, `trixie`, `sid` or \
         `bookworm-backports`: lowercase letters and digits, parts joined by `-`"
            .to_string()
    })
}

/// Whether `version` (after `=` in `package=VERSION`) has the shape of a Debian
/// version: `[EPOCH:]UPSTREAM[-REVISION]`, starting with a digit, of letters, digits
/// and `.+~:-`. (A comma or a space would split it into more packages.)
pub fn version_ok(version: &str) -> bool {
    version.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_are_names() {
        for good in [
            "bookworm",
            "sid",
            "bookworm-backports",
            "stable",
            "trixie-updates",
        ] {
            assert_eq!(suite_problem(good), None, "{good}");
        }
        for bad in [
            "--setup-hook=touch /tmp/PWNED",
            "../../etc",
            "",
            "Bookworm",
            "bookworm/updates",
            "-x",
            "bookworm-",
            "a--b",
            "12",
            "bookworm main",
        ] {
            assert!(suite_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn versions_have_a_debian_shape() {
        assert!(version_ok("1:2.3~rc1-4+deb12u1"));
        assert!(!version_ok("1,--evil"));
        assert!(!version_ok("-1"));
        assert!(!version_ok(""));
    }

    #[test]
    fn containment_is_judged_after_normalising() {
        let root = Path::new("/a/b");
        assert!(inside(&normalise(Path::new("/a/b/c/../d")), root));
        assert!(!inside(&normalise(Path::new("/a/b/../../etc")), root));
        assert!(!inside(Path::new("/a/bc"), root));
        assert!(inside(&normalise(Path::new("x/y")), Path::new("")));
        assert!(!inside(&normalise(Path::new("x/../../y")), Path::new("")));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.voc");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo, MAX_SOURCE_BYTES).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), MAX_SOURCE_BYTES).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.voc");
        std::fs::write(&big, vec![b'#'; 2048]).unwrap();
        assert!(read_bounded(&big, 1024).is_err());
        assert_eq!(read_bounded(&big, 4096).unwrap().len(), 2048);
    }
}
