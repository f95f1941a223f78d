//! Console logs: the readiness marker the boot hook prints, the failure line, and the
//! last lines of a console for error messages. The markers are part of the contract
//! with the image side (`agent.md`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Printed by the node's init once it is up: `vocc: ready <node id>`.
pub const READY: &str = "vocc: ready ";
/// Printed by the initramfs when it cannot go on: `vocc: boot failed: <why>`.
pub const FAILED: &str = "vocc: boot failed: ";

/// What a console says about a boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Ready,
    Failed(String),
}

/// Scans a console log for the node's readiness marker or a boot failure. `names` are
/// the names the node may call itself (its id, its host name).
pub fn scan(path: &Path, names: &[&str]) -> Option<Seen> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        let line = clean(line);
        if let Some(i) = line.find(READY) {
            let who = line[i + READY.len()..].trim();
            if names.contains(&who) {
                return Some(Seen::Ready);
            }
        }
        if let Some(i) = line.find(FAILED) {
            return Some(Seen::Failed(line[i..].to_owned()));
        }
    }
    None
}

/// The last `n` non-empty lines of a console log, cleaned of control characters.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text
        .lines()
        .map(clean)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// A console line without carriage returns, escape sequences or other control
/// characters, so that it can be shown on a terminal safely.
pub fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip an ANSI sequence: ESC [ ... final byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_marker_of_this_node_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(&log, "boot\r\nvocc: ready demo-head2\r\n").unwrap();
        assert_eq!(scan(&log, &["demo-head"]), None);
        std::fs::write(&log, "boot\r\n\x1b[0mvocc: ready demo-head\r\n").unwrap();
        assert_eq!(scan(&log, &["demo-head"]), Some(Seen::Ready));
        std::fs::write(&log, "vocc: boot failed: no root device /dev/vda\n").unwrap();
        assert!(matches!(scan(&log, &["demo-head"]), Some(Seen::Failed(_))));
        assert_eq!(
            tail(&log, 5),
            ["vocc: boot failed: no root device /dev/vda"]
        );
    }
}
