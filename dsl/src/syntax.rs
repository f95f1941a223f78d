//! The syntax tree: statements made of a keyword, values and an optional block.
//!
//! The tree is deliberately generic (like KDL): the parser knows which keywords start
//! a statement in each kind of block (see [`crate::schema`]) so that several
//! statements may share a line, but the meaning of the values is decided later by the
//! compiler. Every node carries its [`Span`].

use crate::source::Span;
use serde::Serialize;
use std::net::Ipv4Addr;

/// A parsed file: its statements and, separately, its comments (for the formatter).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Document {
    pub stmts: Vec<Stmt>,
    pub comments: Vec<Comment>,
}

/// A `#` comment; `text` includes the `#` and excludes the line break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    pub text: String,
    pub span: Span,
}

/// `keyword value* { stmt* }?`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stmt {
    pub keyword: Ident,
    pub args: Vec<Value>,
    pub block: Option<Block>,
    /// From the keyword to the last value or the closing `}`.
    pub span: Span,
}

/// `{ stmt* }`; `span` covers both braces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

/// What a value token is, decided by its shape alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ValueKind {
    /// A bare word: `pool`, `slurm`, `nfs-common`, `eth0`.
    Word(String),
    /// A quoted string, escapes already applied: `"bookworm"`.
    Str(String),
    /// An unsigned integer: `8`.
    Int(u64),
    /// Two unsigned integers, the first at most the second: `1..3`.
    IntRange(u64, u64),
    /// A length of time in seconds: `30s`, `10min`, `2h` (`m` is a size unit).
    Duration(u64),
    /// A size with a binary unit, in bytes: `512M` (K, M, G, T; an optional `i` and/or
    /// `B` after the unit is accepted: `512MiB`).
    Size(u64),
    /// `192.0.2.10`
    Ip(Ipv4Addr),
    /// `10.20.0.0/24`
    Cidr(Ipv4Addr, u8),
    /// A word starting with `/`: `/opt/vdt`.
    Path(String),
    /// `role:path`, as in `head:/opt/vdt`.
    Ref { target: String, path: String },
    /// A name with a numeric range: `c[01-16]` is prefix `c`, 1 to 16, width 2.
    Range {
        prefix: String,
        lo: u64,
        hi: u64,
        width: usize,
        suffix: String,
    },
    /// `[a b c]`
    List(Vec<Value>),
    /// A variable reference: `$workers`.
    Var(String),
    /// A standalone `+`.
    Plus,
    /// A standalone `=`.
    Eq,
}

impl ValueKind {
    /// A short name of the kind for messages: "a size", "a word", ...
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Word(_) => "a name",
            ValueKind::Str(_) => "a string",
            ValueKind::Int(_) => "a number",
            ValueKind::IntRange(..) => "a number range",
            ValueKind::Duration(_) => "a duration",
            ValueKind::Size(_) => "a size",
            ValueKind::Ip(_) => "an address",
            ValueKind::Cidr(..) => "a subnet",
            ValueKind::Path(_) => "a path",
            ValueKind::Ref { .. } => "a `role:/path` reference",
            ValueKind::Range { .. } => "a name range",
            ValueKind::List(_) => "a list",
            ValueKind::Var(_) => "a variable",
            ValueKind::Plus => "`+`",
            ValueKind::Eq => "`=`",
        }
    }
}

impl Stmt {
    /// The statements of this statement's block (empty without one).
    pub fn children(&self) -> &[Stmt] {
        self.block.as_ref().map_or(&[], |b| &b.stmts)
    }
}
