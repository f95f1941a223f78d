//! The vocc appliance language: source files, the parser, the syntax tree with spans,
//! diagnostics and the formatter. No I/O happens here: callers hand in text.

mod classify;
pub mod diag;
pub mod dump;
pub mod fmt;
mod lexer;
pub mod parser;
pub mod schema;
pub mod source;
pub mod syntax;

pub use diag::{Diagnostic, Severity};
pub use fmt::{format, format_source};
pub use parser::parse;
pub use schema::Context;
pub use source::{FileId, Location, SourceFile, SourceMap, Span};
pub use syntax::{Block, Comment, Document, Ident, Stmt, Value, ValueKind};
