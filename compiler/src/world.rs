//! The compiler's one window on the outside: reading appliance files, and looking at
//! the files layers are made from (`from dir`, `from image`). Tests and the built-in
//! site go through the same interface, so the compiler never touches the filesystem
//! directly. Reads go through [`crate::sources`]: regular files only, bounded.

use crate::packages::Index;
use crate::sources::{self, Kind};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name under which built-in files are addressed, e.g. `<builtin>/local.voc`.
pub const BUILTIN_PREFIX: &str = "<builtin>/";

/// The built-in local site: this machine running qemu, used when no `--site` is given.
pub const LOCAL_SITE: &str = include_str!("../../appliances/local.voc");

/// The embedded default appliance: the tiny demo cluster, built when no file is given.
pub const DEMO: &str = include_str!("../../appliances/demo.voc");

/// Reads source files for the compiler.
pub trait World: Sync {
    /// Reads a file as UTF-8 text.
    fn read(&self, path: &Path) -> io::Result<String>;

    /// A canonical key for a path, so one file imported twice is loaded once.
    fn canonical(&self, path: &Path) -> PathBuf {
        self.resolve(path).unwrap_or_else(|_| path.to_path_buf())
    }

    /// The path with every symbolic link resolved; an error when it does not exist.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf>;

    /// What is at `path`, a final symbolic link not followed.
    fn kind(&self, path: &Path) -> io::Result<Kind>;

    /// Up to `limit` entries below the directory `dir` (not following symbolic links)
    /// that are neither files, directories nor symbolic links, relative to `dir`.
    fn special_entries(&self, dir: &Path, limit: usize) -> io::Result<Vec<PathBuf>>;

    /// Whether anything below the directory `dir` (itself included) is hidden from
    /// other users: a file without read permission for others.
    fn private_entries(&self, dir: &Path) -> bool;

    /// The sha256 of a regular file.
    fn sha256(&self, path: &Path) -> io::Result<String>;

    /// The package index of a Debian release, if this machine has one.
    fn packages(&self, suite: &str) -> Option<Arc<Index>>;
}

/// The real filesystem, plus the built-in files.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsWorld;

impl World for FsWorld {
    fn read(&self, path: &Path) -> io::Result<String> {
        if let Some(text) = builtin(path) {
            return Ok(text.to_string());
        }
        sources::read_bounded(path, sources::MAX_SOURCE_BYTES)
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        if builtin(path).is_some() {
            return Ok(path.to_path_buf());
        }
        std::fs::canonicalize(path)
    }

    fn kind(&self, path: &Path) -> io::Result<Kind> {
        std::fs::symlink_metadata(path).map(|m| Kind::of(&m))
    }

    fn special_entries(&self, dir: &Path, limit: usize) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
            let e = e?;
            let ft = e.file_type();
            if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
                out.push(e.path().strip_prefix(dir).unwrap_or(e.path()).to_path_buf());
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn private_entries(&self, dir: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        walkdir::WalkDir::new(dir).into_iter().flatten().any(|e| {
            e.file_type().is_file()
                && e.metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o004 == 0)
        })
    }

    fn sha256(&self, path: &Path) -> io::Result<String> {
        crate::image::hash_source_file(path)
    }

    fn packages(&self, suite: &str) -> Option<Arc<Index>> {
        crate::packages::host_index(suite)
    }
}

/// The error [`World::read`] gives (inside an `io::Error` of kind `InvalidData`) for a
/// file that is not UTF-8: where its first bad byte is, and the text with every bad
/// sequence replaced by U+FFFD (the same as the file up to `offset`).
#[derive(Debug)]
pub struct NotUtf8 {
    pub text: String,
    /// The byte offset of the first bad byte, in the file and in `text`.
    pub offset: usize,
    pub byte: u8,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not UTF-8: byte 0x{:02x} at line {}, column {}",
            self.byte, self.line, self.col
        )
    }
}

impl std::error::Error for NotUtf8 {}

/// A file's bytes as text, or a [`NotUtf8`] error.
pub fn decode(bytes: Vec<u8>) -> io::Result<String> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let before = &bytes[..offset];
            let line = 1 + before.iter().filter(|b| **b == b'\n').count();
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            // Valid UTF-8 up to `offset`: the column counts characters.
            let col = 1 + String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count();
            let err = NotUtf8 {
                text: String::from_utf8_lossy(bytes).into_owned(),
                offset,
                byte: bytes.get(offset).copied().unwrap_or(0),
                line,
                col,
            };
            Err(io::Error::new(io::ErrorKind::InvalidData, err))
        }
    }
}

/// The text of a built-in file, if `path` names one.
pub fn builtin(path: &Path) -> Option<&'static str> {
    match path.to_str()?.strip_prefix(BUILTIN_PREFIX)? {
        "local.voc" => Some(LOCAL_SITE),
        "demo.voc" => Some(DEMO),
        _ => None,
    }
}

/// An in-memory world for tests: a map from path to text.
#[derive(Debug, Default, Clone)]
pub struct MemWorld {
    pub files: std::collections::BTreeMap<PathBuf, String>,
    /// Package indexes by release.
    pub packages: std::collections::BTreeMap<String, Arc<Index>>,
}

impl MemWorld {
    pub fn new() -> MemWorld {
        MemWorld::default()
    }

    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> MemWorld {
        self.files
            .insert(sources::normalise(&path.into()), text.into());
        self
    }

    /// The release `suite` has exactly the packages `names`.
    pub fn with_packages<'a>(
        mut self,
        suite: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> MemWorld {
        self.packages
            .insert(suite.to_owned(), Arc::new(Index::of(names)));
        self
    }
}

impl World for MemWorld {
    fn read(&self, path: &Path) -> io::Result<String> {
        if let Some(text) = builtin(path) {
            return Ok(text.to_string());
        }
        self.files
            .get(&sources::normalise(path))
            .cloned()
            .ok_or_else(not_found)
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let p = sources::normalise(path);
        if builtin(path).is_some() || p.as_os_str().is_empty() {
            return Ok(p);
        }
        self.kind(&p).map(|_| p)
    }

    fn kind(&self, path: &Path) -> io::Result<Kind> {
        let p = sources::normalise(path);
        if let Some(text) = self.files.get(&p) {
            return Ok(Kind::File {
                size: text.len() as u64,
            });
        }
        if self.files.keys().any(|f| f.starts_with(&p)) {
            return Ok(Kind::Dir);
        }
        Err(not_found())
    }

    fn special_entries(&self, _dir: &Path, _limit: usize) -> io::Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }

    fn private_entries(&self, _dir: &Path) -> bool {
        false
    }

    fn sha256(&self, path: &Path) -> io::Result<String> {
        use sha2::{Digest, Sha256};
        let text = self.read(path)?;
        Ok(crate::render::hex(&Sha256::digest(text.as_bytes()).into()))
    }

    fn packages(&self, suite: &str) -> Option<Arc<Index>> {
        self.packages.get(suite).cloned()
    }
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file")
}
