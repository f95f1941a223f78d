//! The compiler's one window on the outside: reading appliance files. Tests and the
//! built-in site go through the same interface, so the compiler never touches the
//! filesystem directly.

use std::io;
use std::path::{Path, PathBuf};

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
        path.to_path_buf()
    }
}

/// The real filesystem, plus the built-in files.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsWorld;

impl World for FsWorld {
    fn read(&self, path: &Path) -> io::Result<String> {
        if let Some(text) = builtin(path) {
            return Ok(text.to_string());
        }
        decode(std::fs::read(path)?)
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        if builtin(path).is_some() {
            return path.to_path_buf();
        }
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
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
}

impl MemWorld {
    pub fn new() -> MemWorld {
        MemWorld::default()
    }

    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> MemWorld {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl World for MemWorld {
    fn read(&self, path: &Path) -> io::Result<String> {
        if let Some(text) = builtin(path) {
            return Ok(text.to_string());
        }
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
}
