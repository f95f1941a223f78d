//! The parser: text to [`Document`] plus every diagnostic, recovering after errors.
//!
//! Statements are `keyword value* block?`. A statement ends by syntax alone: at a line
//! break, `;`, `}` or the `{` of its block (then at its `}`); no word ends it, so a new
//! keyword never changes how an existing file parses, and `cpu 1; memory 512M` is how
//! two statements share a line. The context of a block ([`Context`]) is used only to
//! report unknown keys. GRAMMAR.md describes the same rules for people.

use crate::classify::classify;
use crate::diag::{suggest, Diagnostic};
use crate::lexer::{lex, Token, TokenKind};
use crate::schema::Context;
use crate::source::{FileId, Span};
use crate::syntax::{Block, Document, Ident, Stmt, Value, ValueKind};

/// How many blocks and lists may nest inside each other. Deeper input is reported and
/// skipped instead of recursing further, so no input can overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Parses one file. Never panics; returns the best tree it could build and every
/// problem found, sorted by position.
pub fn parse(file: FileId, text: &str) -> (Document, Vec<Diagnostic>) {
    let lexed = lex(file, text);
    let mut p = Parser {
        file,
        text,
        tokens: lexed.tokens,
        pos: 0,
        diags: lexed.diags,
    };
    let stmts = p.items(Context::File, 0);
    let mut diags = p.diags;
    crate::diag::sort(&mut diags);
    (
        Document {
            stmts,
            comments: lexed.comments,
        },
        diags,
    )
}

struct Parser<'a> {
    file: FileId,
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    diags: Vec<Diagnostic>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<&TokenKind> {
        self.peek().map(|t| &t.kind)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn span(&self, t: &Token) -> Span {
        Span::new(self.file, t.start, t.end)
    }

    fn slice(&self, t: &Token) -> &str {
        self.text.get(t.start..t.end).unwrap_or("")
    }

    /// The statements of a block (`depth > 0`) or of the file (`depth == 0`), up to
    /// but not including the closing `}` or the end of the file.
    fn items(&mut self, ctx: Context, depth: usize) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        while let Some(tok) = self.peek().cloned() {
            match tok.kind {
                TokenKind::Newline | TokenKind::Semi => {
                    self.pos += 1;
                }
                TokenKind::RBrace if depth > 0 => break,
                TokenKind::RBrace => {
                    self.pos += 1;
                    self.diags.push(
                        Diagnostic::error(self.span(&tok), "unexpected `}`")
                            .with_label("no block to close here")
                            .with_hint("remove it, or add the `{` it was meant to close"),
                    );
                }
                TokenKind::RBracket => {
                    self.pos += 1;
                    self.diags.push(
                        Diagnostic::error(self.span(&tok), "unexpected `]`")
                            .with_label("no list to close here")
                            .with_hint("remove it, or add the `[` it was meant to close"),
                    );
                }
                TokenKind::Bare => stmts.push(self.stmt(ctx, depth)),
                TokenKind::Str(_) | TokenKind::LBracket | TokenKind::LBrace => {
                    self.keyless(ctx, &tok, depth)
                }
            }
        }
        stmts
    }

    /// A statement that starts with something other than a bare word: reported, then
    /// parsed as an unknown statement (so its lists and blocks are skipped as a whole)
    /// and dropped.
    fn keyless(&mut self, ctx: Context, tok: &Token, depth: usize) {
        let found = match tok.kind {
            TokenKind::Str(_) => "a string",
            TokenKind::LBracket => "a list",
            _ => "a block",
        };
        let hint = match ctx.keywords().first() {
            Some(k) => format!(
                "start the statement with a key such as `{k}`, or move the value onto the \
                 line of its key"
            ),
            None => "start the statement with a bare word".to_string(),
        };
        self.diags.push(
            Diagnostic::error(self.span(tok), format!("expected a key, found {found}"))
                .with_label("a statement starts with a key")
                .with_hint(hint),
        );
        let _ = self.tail(Context::Unknown, "", depth);
    }

    fn stmt(&mut self, ctx: Context, depth: usize) -> Stmt {
        let Some(tok) = self.bump() else {
            // Unreachable: `items` only calls this on a bare token. An empty statement
            // keeps the parser total anyway.
            let span = Span::new(self.file, self.text.len(), self.text.len());
            return Stmt {
                keyword: Ident {
                    name: String::new(),
                    span,
                },
                args: vec![],
                block: None,
                span,
            };
        };
        let keyword = Ident {
            name: self.slice(&tok).to_string(),
            span: self.span(&tok),
        };
        if ctx != Context::Unknown && !ctx.is_keyword(&keyword.name) {
            self.unknown_key(ctx, &keyword);
        }
        let child = ctx.child(&keyword.name);
        let (args, block) = self.tail(child, &keyword.name, depth);
        let mut span = keyword.span;
        if let Some(last) = args.last() {
            span = span.to(last.span);
        }
        if let Some(b) = &block {
            span = span.to(b.span);
        }
        Stmt {
            keyword,
            args,
            block,
            span,
        }
    }

    fn unknown_key(&mut self, ctx: Context, keyword: &Ident) {
        let name = &keyword.name;
        let mut d = Diagnostic::error(
            keyword.span,
            format!("unknown key `{name}` in {}", ctx.name()),
        )
        .with_label("unknown key");
        d = match suggest(name, ctx.keywords().iter().copied()) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None => {
                let list: Vec<String> = ctx.keywords().iter().map(|k| format!("`{k}`")).collect();
                d.with_hint(format!("expected one of {}", list.join(", ")))
            }
        };
        let elsewhere: Vec<&str> = Context::ALL
            .iter()
            .filter(|c| c.is_keyword(name))
            .map(|c| c.name())
            .collect();
        if !elsewhere.is_empty() {
            d = d.with_hint(format!("`{name}` is a key of {}", elsewhere.join(" or ")));
        }
        self.diags.push(d);
    }

    /// The values and the optional block of a statement whose keyword was just read;
    /// `child` is the context of its block.
    fn tail(&mut self, child: Context, keyword: &str, depth: usize) -> (Vec<Value>, Option<Block>) {
        let mut args = Vec::new();
        while let Some(tok) = self.peek().cloned() {
            match tok.kind {
                TokenKind::Newline | TokenKind::Semi | TokenKind::RBrace => break,
                TokenKind::LBrace => return (args, Some(self.block(child, keyword, depth))),
                TokenKind::Bare | TokenKind::Str(_) | TokenKind::LBracket => {
                    args.push(self.value(depth))
                }
                TokenKind::RBracket => {
                    self.pos += 1;
                    self.diags.push(
                        Diagnostic::error(self.span(&tok), "unexpected `]`")
                            .with_label("no list to close here")
                            .with_hint("remove it, or add the `[` it was meant to close"),
                    );
                }
            }
        }
        // The `{` of a block may follow the header after line breaks (and comments,
        // which are not tokens).
        if self.peek_kind() == Some(&TokenKind::Newline) {
            let mut ahead = self.pos;
            while self.tokens.get(ahead).map(|t| &t.kind) == Some(&TokenKind::Newline) {
                ahead += 1;
            }
            if self.tokens.get(ahead).map(|t| &t.kind) == Some(&TokenKind::LBrace) {
                self.pos = ahead;
                return (args, Some(self.block(child, keyword, depth)));
            }
        }
        (args, None)
    }

    /// A `{ ... }` block; the current token is its `{`.
    fn block(&mut self, ctx: Context, keyword: &str, depth: usize) -> Block {
        let Some(open) = self.bump() else {
            let span = Span::new(self.file, self.text.len(), self.text.len());
            return Block {
                stmts: vec![],
                span,
            };
        };
        let open_span = self.span(&open);
        if depth + 1 > MAX_DEPTH {
            self.too_deep(open_span);
            let end = self.skip_nested(&TokenKind::LBrace, &TokenKind::RBrace, open.end);
            return Block {
                stmts: vec![],
                span: Span::new(self.file, open.start, end),
            };
        }
        let stmts = self.items(ctx, depth + 1);
        match self.peek() {
            Some(close) if close.kind == TokenKind::RBrace => {
                let end = close.end;
                self.pos += 1;
                Block {
                    stmts,
                    span: Span::new(self.file, open.start, end),
                }
            }
            _ => {
                let of = if keyword.is_empty() {
                    "unclosed block".to_string()
                } else {
                    format!("unclosed block of `{keyword}`")
                };
                self.diags.push(
                    Diagnostic::error(open_span, of)
                        .with_label("this `{` is never closed")
                        .with_hint("add `}` to close it"),
                );
                let end = stmts.last().map_or(open.end, |s| s.span.end as usize);
                Block {
                    stmts,
                    span: Span::new(self.file, open.start, end),
                }
            }
        }
    }

    fn value(&mut self, depth: usize) -> Value {
        let Some(tok) = self.bump() else {
            let span = Span::new(self.file, self.text.len(), self.text.len());
            return Value {
                kind: ValueKind::Word(String::new()),
                span,
            };
        };
        let span = self.span(&tok);
        match tok.kind {
            TokenKind::Str(s) => Value {
                kind: ValueKind::Str(s),
                span,
            },
            TokenKind::LBracket => self.list(tok, depth),
            _ => {
                let raw = self.slice(&tok).to_string();
                let kind = match classify(&raw) {
                    Ok(kind) => kind,
                    Err(bad) => {
                        self.diags.push(
                            Diagnostic::error(span, bad.message)
                                .with_label(bad.label)
                                .with_hint(bad.hint),
                        );
                        ValueKind::Word(raw)
                    }
                };
                Value { kind, span }
            }
        }
    }

    /// A `[ ... ]` list; `open` is its `[`, already consumed.
    fn list(&mut self, open: Token, depth: usize) -> Value {
        let open_span = self.span(&open);
        if depth + 1 > MAX_DEPTH {
            self.too_deep(open_span);
            let end = self.skip_nested(&TokenKind::LBracket, &TokenKind::RBracket, open.end);
            return Value {
                kind: ValueKind::List(vec![]),
                span: Span::new(self.file, open.start, end),
            };
        }
        let mut items = Vec::new();
        let mut end = open.end;
        loop {
            let Some(tok) = self.peek().cloned() else {
                self.unclosed_list(open_span);
                break;
            };
            match tok.kind {
                TokenKind::RBracket => {
                    self.pos += 1;
                    end = tok.end;
                    break;
                }
                // A brace cannot be inside a list: the `]` is missing. Stopping here lets
                // the brace open or close its block as the author meant.
                TokenKind::LBrace | TokenKind::RBrace => {
                    self.unclosed_list(open_span);
                    break;
                }
                TokenKind::Newline => self.pos += 1,
                TokenKind::Semi => {
                    self.pos += 1;
                    self.diags.push(
                        Diagnostic::error(self.span(&tok), "unexpected `;` in a list")
                            .with_label("not allowed in a list")
                            .with_hint("separate list items with spaces or line breaks"),
                    );
                }
                TokenKind::Bare | TokenKind::Str(_) | TokenKind::LBracket => {
                    let v = self.value(depth + 1);
                    end = v.span.end as usize;
                    items.push(v);
                }
            }
        }
        Value {
            kind: ValueKind::List(items),
            span: Span::new(self.file, open.start, end),
        }
    }

    fn unclosed_list(&mut self, open: Span) {
        self.diags.push(
            Diagnostic::error(open, "unclosed list")
                .with_label("this `[` is never closed")
                .with_hint("add `]` to close it"),
        );
    }

    fn too_deep(&mut self, open: Span) {
        self.diags.push(
            Diagnostic::error(open, "blocks and lists are nested too deeply")
                .with_label("nesting limit reached here")
                .with_hint(format!(
                    "at most {MAX_DEPTH} levels of `{{` and `[` may nest; flatten the input"
                )),
        );
    }

    /// Skips to the token that balances an already consumed `open`, without recursion.
    /// Returns the end offset of the last skipped token.
    fn skip_nested(&mut self, open: &TokenKind, close: &TokenKind, mut end: usize) -> usize {
        let mut level = 1usize;
        while let Some(tok) = self.bump() {
            end = tok.end;
            if &tok.kind == open {
                level += 1;
            } else if &tok.kind == close {
                level -= 1;
                if level == 0 {
                    break;
                }
            }
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> (String, Vec<String>) {
        let (doc, diags) = parse(FileId(0), text);
        (
            crate::dump::shape(&doc),
            diags.into_iter().map(|d| d.message).collect(),
        )
    }

    #[test]
    fn semicolons_split_a_line_into_statements() {
        let (tree, diags) = shape("role r { cpu 1; memory 512M;swap 200M }");
        assert_eq!(diags, Vec::<String>::new());
        assert_eq!(
            tree,
            "role word(r) {\n  cpu int(1)\n  memory size(536870912)\n  swap size(209715200)\n}\n"
        );
    }

    #[test]
    fn keywords_do_not_end_statements() {
        // A layer named like a key of the block is an ordinary value: adding a keyword
        // to the language never changes how an existing file parses.
        let (tree, diags) = shape("role r { root swap + disk\n cpu 1 memory 2 }");
        assert_eq!(diags, Vec::<String>::new());
        assert_eq!(
            tree,
            "role word(r) {\n  root word(swap) plus word(disk)\n  cpu int(1) word(memory) int(2)\n}\n"
        );
    }

    #[test]
    fn unknown_blocks_split_only_at_line_ends() {
        let (tree, diags) = shape("thing { cpu 1 memory 2\n}");
        assert_eq!(diags, ["unknown key `thing` in the top level"]);
        assert_eq!(tree, "thing {\n  cpu int(1) word(memory) int(2)\n}\n");
    }

    #[test]
    fn a_block_may_open_on_a_later_line() {
        let (tree, diags) = shape("role r # comment\n\n{\n count 1 }");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(tree, "role word(r) {\n  count int(1)\n}\n");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("role r {}{}", "{".repeat(100_000), "}".repeat(100_000));
        let (_, diags) = shape(&text);
        assert!(
            diags.iter().any(|d| d.contains("nested too deeply")),
            "{diags:?}"
        );
        let text = format!("layer l {{ packages {} }}", "[".repeat(100_000));
        let (_, diags) = shape(&text);
        assert!(
            diags.iter().any(|d| d.contains("nested too deeply")),
            "{diags:?}"
        );
    }

    #[test]
    fn value_spans_cover_their_tokens() {
        let text = "layer os { packages [a \"b\"\n c]; size 2G }";
        let (doc, diags) = parse(FileId(0), text);
        assert!(diags.is_empty());
        let layer = &doc.stmts[0];
        let pk = &layer.children()[0];
        assert_eq!(&text[pk.span.range()], "packages [a \"b\"\n c]");
        assert_eq!(&text[pk.args[0].span.range()], "[a \"b\"\n c]");
        let ValueKind::List(items) = &pk.args[0].kind else {
            panic!("not a list")
        };
        assert_eq!(&text[items[1].span.range()], "\"b\"");
        assert_eq!(&text[layer.children()[1].span.range()], "size 2G");
        assert_eq!(
            &text[layer.block.as_ref().map_or(0..0, |b| b.span.range())],
            &text[9..]
        );
    }
}
