//! The one diagnostic type of vocc, and its rendering (rustc-like text or JSON).

use crate::source::{Location, SourceMap, Span};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Error as FilesError, Files};
use codespan_reporting::term;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A secondary label: another place in the source that explains the primary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// A problem found in the input. Messages are lowercase, quote names in backticks,
/// have no trailing period, and hints say what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Where the mistake is; the caret goes under this span.
    pub span: Span,
    /// Text printed beside the caret (may be empty).
    pub label: String,
    pub secondary: Vec<Label>,
    pub hints: Vec<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            label: String::new(),
            secondary: Vec::new(),
            hints: Vec::new(),
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hints.push(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A one-line form, `file:line:col: error: message`, used by tests and logs.
    pub fn short(&self, map: &SourceMap) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!("{}: {sev}: {}", map.locate(self.span), self.message)
    }

    pub fn to_json(&self, map: &SourceMap) -> JsonDiagnostic {
        let start = map.locate(self.span);
        let end = map.locate(Span {
            start: self.span.end,
            ..self.span
        });
        JsonDiagnostic {
            severity: self.severity,
            message: self.message.clone(),
            file: start.file.clone(),
            line: start.line,
            col: start.col,
            end_line: end.line,
            end_col: end.col,
            label: self.label.clone(),
            secondary: self
                .secondary
                .iter()
                .map(|l| JsonLabel {
                    location: map.locate(l.span),
                    message: l.message.clone(),
                })
                .collect(),
            hints: self.hints.clone(),
        }
    }
}

/// The machine-readable form of a diagnostic (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct JsonDiagnostic {
    pub severity: Severity,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub end_line: usize,
    pub end_col: usize,
    pub label: String,
    pub secondary: Vec<JsonLabel>,
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JsonLabel {
    #[serde(flatten)]
    pub location: Location,
    pub message: String,
}

/// Sorts diagnostics by position so output is stable whatever order checks ran in.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (a.span.file, a.span.start, a.span.end, &a.message).cmp(&(
            b.span.file,
            b.span.start,
            b.span.end,
            &b.message,
        ))
    });
}

/// Renders diagnostics like rustc: `error: message`, ` --> file:line:col`, the source
/// line and carets, then `= help:` lines. `color` is decided by the caller (terminal
/// and no NO_COLOR).
pub fn render(map: &SourceMap, diags: &[Diagnostic], color: bool) -> String {
    let mut buf = if color {
        term::termcolor::Buffer::ansi()
    } else {
        term::termcolor::Buffer::no_color()
    };
    let config = term::Config::default();
    let files = MapFiles(map);
    for d in diags {
        let sev = match d.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let mut labels = vec![cs::Label::primary(d.span.file.0 as usize, d.span.range())
            .with_message(d.label.clone())];
        for l in &d.secondary {
            labels.push(
                cs::Label::secondary(l.span.file.0 as usize, l.span.range())
                    .with_message(l.message.clone()),
            );
        }
        let notes = d.hints.iter().map(|h| format!("help: {h}")).collect();
        let diag = cs::Diagnostic::new(sev)
            .with_message(&d.message)
            .with_labels(labels)
            .with_notes(notes);
        // Rendering into an in-memory buffer only fails on a span outside its file,
        // which the parser never produces; fall back to the short form just in case.
        if term::emit(&mut buf, &config, &files, &diag).is_err() {
            use std::io::Write;
            let _ = writeln!(buf, "{}", d.short(map));
        }
    }
    String::from_utf8_lossy(buf.as_slice()).into_owned()
}

struct MapFiles<'a>(&'a SourceMap);

impl<'a> Files<'a> for MapFiles<'a> {
    type FileId = usize;
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, id: usize) -> Result<&'a str, FilesError> {
        Ok(&self.0.get(crate::FileId(id as u32)).name)
    }

    fn source(&'a self, id: usize) -> Result<&'a str, FilesError> {
        Ok(&self.0.get(crate::FileId(id as u32)).text)
    }

    fn line_index(&'a self, id: usize, byte_index: usize) -> Result<usize, FilesError> {
        let starts = self.0.get(crate::FileId(id as u32)).line_starts();
        Ok(match starts.binary_search(&byte_index) {
            Ok(l) => l,
            Err(l) => l - 1,
        })
    }

    fn line_range(
        &'a self,
        id: usize,
        line_index: usize,
    ) -> Result<std::ops::Range<usize>, FilesError> {
        let f = self.0.get(crate::FileId(id as u32));
        let starts = f.line_starts();
        let start = *starts.get(line_index).ok_or(FilesError::LineTooLarge {
            given: line_index,
            max: starts.len() - 1,
        })?;
        let end = starts.get(line_index + 1).copied().unwrap_or(f.text.len());
        Ok(start..end)
    }
}

/// The closest candidate to a misspelt name, for "did you mean" hints.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        // The same word in another case (`RW` for `rw`) is the closest of all.
        if c.to_lowercase() == word.to_lowercase() {
            return Some(c);
        }
        let d = edit_distance(word, c);
        let limit = (word.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The optimal string alignment distance between two words, in characters: insertions,
/// deletions, substitutions and transpositions of neighbours (`memroy` → `memory`)
/// each count as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the distance table.
    let mut before: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            let mut d = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb {
                d = d.min(before[j - 1] + 1);
            }
            cur[j + 1] = d;
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transposition_is_one_edit() {
        assert_eq!(edit_distance("memroy", "memory"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("privat", "private"), 1);
        assert_eq!(edit_distance("wörker", "worker"), 1);
        assert_eq!(suggest("cpu", ["cup"]), Some("cup"));
        // Three letters allow one edit; a transposition is one.
        assert_eq!(suggest("mmeory", ["memory", "mount"]), Some("memory"));
        assert_eq!(suggest("RW", ["ro", "rw"]), Some("rw"));
        assert_eq!(suggest("Wörker", ["worker", "wörker"]), Some("wörker"));
    }
}
