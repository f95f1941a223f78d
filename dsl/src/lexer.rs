//! The lexer: source text to tokens, comments and lexical errors.
//!
//! Lexing needs no context: strings, brackets, braces, comments and bare runs look the
//! same in every block. What a bare run means is decided by [`crate::classify`], and
//! where a statement ends by [`crate::parser`].

use crate::diag::Diagnostic;
use crate::source::{FileId, Span};
use crate::syntax::Comment;
use nom::character::complete::{char, digit1};
use nom::combinator::recognize;
use nom::sequence::tuple;
use nom::IResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A run of characters that are not whitespace and not one of `{ } [ ] " # ;`,
    /// including any `[lo-hi]` range glued to it.
    Bare,
    /// A quoted string, escapes applied.
    Str(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Semi,
    Newline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// The result of lexing one file.
pub(crate) struct Lexed {
    pub tokens: Vec<Token>,
    pub comments: Vec<Comment>,
    pub diags: Vec<Diagnostic>,
}

/// Characters that may not appear outside strings and comments: control characters and
/// the invisible or non-ASCII spaces that copy-and-paste brings in.
fn is_stray(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        || (c.is_whitespace() && !c.is_ascii())
        || c == '\u{feff}'
}

/// Whether `c` may be part of a bare token.
fn is_bare(c: char) -> bool {
    !matches!(
        c,
        ' ' | '\t' | '\r' | '\n' | '{' | '}' | '[' | ']' | '"' | '#' | ';'
    ) && !is_stray(c)
}

/// `[digits-digits]`, the range part of a name like `c[01-16]`.
fn range_part(s: &str) -> IResult<&str, &str> {
    recognize(tuple((char('['), digit1, char('-'), digit1, char(']'))))(s)
}

/// Splits `text` into tokens. Never fails: problems become diagnostics and the lexer
/// carries on after them.
pub(crate) fn lex(file: FileId, text: &str) -> Lexed {
    let mut lx = Lexer {
        file,
        text,
        pos: 0,
        out: Vec::new(),
        comments: Vec::new(),
        diags: vec![],
    };
    // A byte order mark at the very start is an encoding artefact, not content.
    if text.starts_with('\u{feff}') {
        lx.pos = '\u{feff}'.len_utf8();
    }
    lx.run();
    Lexed {
        tokens: lx.out,
        comments: lx.comments,
        diags: lx.diags,
    }
}

struct Lexer<'a> {
    file: FileId,
    text: &'a str,
    pos: usize,
    out: Vec<Token>,
    comments: Vec<Comment>,
    diags: Vec<Diagnostic>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.out.push(Token {
            kind,
            start,
            end: self.pos,
        });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.pos;
            let single = match c {
                '\n' => Some(TokenKind::Newline),
                '{' => Some(TokenKind::LBrace),
                '}' => Some(TokenKind::RBrace),
                '[' => Some(TokenKind::LBracket),
                ']' => Some(TokenKind::RBracket),
                ';' => Some(TokenKind::Semi),
                _ => None,
            };
            if let Some(kind) = single {
                self.pos += 1;
                self.push(kind, start);
                continue;
            }
            match c {
                ' ' | '\t' | '\r' => self.pos += 1,
                '#' => self.comment(),
                '"' => self.string(),
                c if is_stray(c) => self.stray(c),
                _ => self.bare(),
            }
        }
    }

    fn comment(&mut self) {
        let start = self.pos;
        let rest = &self.text[start..];
        let line = rest.find('\n').map_or(rest, |i| &rest[..i]);
        self.pos = start + line.len();
        // A CRLF file's `\r` belongs to the line break, not to the comment.
        let text = line.trim_end_matches('\r');
        self.comments.push(Comment {
            text: text.to_string(),
            span: self.span(start, start + text.len()),
        });
    }

    fn stray(&mut self, first: char) {
        let start = self.pos;
        // One diagnostic for a run of the same character (a file full of NULs should not
        // produce a diagnostic per byte).
        while self.peek() == Some(first) {
            self.pos += first.len_utf8();
        }
        let hint = if first.is_whitespace() {
            "replace it with a plain space"
        } else {
            "remove it; control characters are only allowed inside strings and comments"
        };
        self.diags.push(
            Diagnostic::error(
                self.span(start, self.pos),
                format!("unexpected character U+{:04X}", u32::from(first)),
            )
            .with_label("stray character")
            .with_hint(hint),
        );
    }

    fn bare(&mut self) {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_bare(c) {
                self.pos += c.len_utf8();
            } else if c == '[' && self.pos > start {
                match range_part(&self.text[self.pos..]) {
                    Ok((_, range)) => self.pos += range.len(),
                    Err(_) => break,
                }
            } else {
                break;
            }
        }
        self.push(TokenKind::Bare, start);
    }

    fn string(&mut self) {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.unterminated(start);
                break;
            };
            match c {
                '"' => {
                    self.pos += 1;
                    break;
                }
                '\n' => {
                    self.unterminated(start);
                    break;
                }
                '\\' => {
                    let esc = self.pos;
                    self.pos += 1;
                    match self.peek() {
                        None | Some('\n') => {
                            self.unterminated(start);
                            break;
                        }
                        Some(e) => {
                            self.pos += e.len_utf8();
                            match e {
                                '"' => value.push('"'),
                                '\\' => value.push('\\'),
                                'n' => value.push('\n'),
                                't' => value.push('\t'),
                                other => {
                                    value.push('\\');
                                    value.push(other);
                                    self.diags.push(
                                        Diagnostic::error(
                                            self.span(esc, self.pos),
                                            format!("unknown escape `\\{other}`"),
                                        )
                                        .with_label("unknown escape")
                                        .with_hint(
                                            "use `\\\"`, `\\\\`, `\\n` or `\\t`; write `\\\\` \
                                             for a backslash",
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }
                c => {
                    self.pos += c.len_utf8();
                    value.push(c);
                }
            }
        }
        self.push(TokenKind::Str(value), start);
    }

    /// Reports a string that reaches a line break or the end of the file; the token
    /// ends there so that lexing resumes on the next line.
    fn unterminated(&mut self, start: usize) {
        self.diags.push(
            Diagnostic::error(self.span(start, self.pos), "unterminated string")
                .with_label("this string is never closed")
                .with_hint("add `\"` at its end; a string cannot span lines (write `\\n` instead)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(TokenKind, &str)> {
        lex(FileId(0), text)
            .tokens
            .into_iter()
            .map(|t| (t.kind, &text[t.start..t.end]))
            .collect()
    }

    #[test]
    fn ranges_glue_to_the_name_before_them() {
        let toks = kinds("c[01-16] c[01-16]-ib x[a b] [1-2]");
        let texts: Vec<&str> = toks.iter().map(|(_, t)| *t).collect();
        assert_eq!(
            texts,
            [
                "c[01-16]",
                "c[01-16]-ib",
                "x",
                "[",
                "a",
                "b",
                "]",
                "[",
                "1-2",
                "]"
            ]
        );
    }

    #[test]
    fn strings_apply_escapes_and_stop_at_line_ends() {
        let lexed = lex(FileId(0), "\"a\\\"b\\n\" \"open\nx");
        assert_eq!(lexed.tokens[0].kind, TokenKind::Str("a\"b\n".into()));
        assert_eq!(lexed.tokens[1].kind, TokenKind::Str("open".into()));
        assert_eq!(lexed.tokens[2].kind, TokenKind::Newline);
        assert_eq!(lexed.diags.len(), 1);
        assert_eq!(lexed.diags[0].message, "unterminated string");
    }

    #[test]
    fn comments_exclude_the_line_break() {
        let lexed = lex(FileId(0), "a # one\r\n# two");
        let texts: Vec<&str> = lexed.comments.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["# one", "# two"]);
    }

    #[test]
    fn stray_characters_are_reported_once_per_run() {
        let lexed = lex(FileId(0), "a\0\0\0b\u{a0}c");
        assert_eq!(lexed.tokens.len(), 3);
        assert_eq!(lexed.diags.len(), 2);
        assert_eq!(lexed.diags[0].message, "unexpected character U+0000");
    }
}
