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
        std::fs::read_to_string(path)
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        if builtin(path).is_some() {
            return path.to_path_buf();
        }
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
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
