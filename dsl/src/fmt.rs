//! The formatter: a canonical layout of a document that keeps every comment.
//!
//! The layout: one statement per line, except that statements without a block that
//! the source joined on one line with `;` stay joined as `a; b` while the line fits in
//! [`MAX_WIDTH`] columns (`cpu 1; memory 512M`); two spaces of indentation per block,
//! values separated by one space and printed as written, `keyword values {` … `}` for
//! blocks and `keyword values {}` for empty ones, lists on one line unless the list
//! holds comments or the statement would be wider than [`MAX_WIDTH`] columns (then the
//! list, or the longest of its lists, is printed one item per line). A comment on its
//! own line stays on its own line, indented like what follows it; a comment after a
//! statement stays at the end of that statement's line, two spaces after it. One blank line is kept where the source had one or more between two
//! statements or comments; none after `{`, before `}` or at the start of the file.
//!
//! Comments are placed by walking the tree in source order with a cursor into
//! [`Document::comments`]: every comment that starts before the next thing printed is
//! printed first, so each comment is printed exactly once.

use crate::diag::Diagnostic;
use crate::source::FileId;
use crate::syntax::{Block, Comment, Document, Stmt, Value, ValueKind};

/// Lines longer than this (in characters) have their lists wrapped one item per line.
pub const MAX_WIDTH: usize = 100;

const INDENT: &str = "  ";

/// Parses and formats `text`; returns the diagnostics instead if any is an error, since
/// the layout of a document the parser had to guess at would be a guess too.
pub fn format_source(file: FileId, text: &str) -> Result<String, Vec<Diagnostic>> {
    let (doc, diags) = crate::parser::parse(file, text);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    Ok(format(&doc, text))
}

/// Formats a parsed document; `text` is the source it was parsed from. The result ends
/// with exactly one newline (or is empty for a document with nothing in it).
pub fn format(doc: &Document, text: &str) -> String {
    let mut p = Printer {
        text,
        comments: &doc.comments,
        next: 0,
        out: String::new(),
    };
    p.items(&doc.stmts, 0, usize::MAX);
    p.out
}

struct Printer<'a> {
    text: &'a str,
    comments: &'a [Comment],
    /// The first comment not printed yet.
    next: usize,
    out: String,
}

impl<'a> Printer<'a> {
    fn src(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or("")
    }

    fn pending(&self) -> Option<&'a Comment> {
        self.comments.get(self.next)
    }

    fn pending_before(&self, pos: usize) -> bool {
        self.pending()
            .is_some_and(|c| (c.span.start as usize) < pos)
    }

    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str(INDENT);
        }
    }

    /// Prints the statements of one block (or of the file) at `level`, and the comments
    /// that stand before `end` (the block's `}`).
    fn items(&mut self, stmts: &[Stmt], level: usize, end: usize) {
        // End of the previous statement or comment in the source; `None` at the start of
        // a block, where no blank line is printed.
        let mut prev: Option<usize> = None;
        // The width of the line being printed when it holds joined statements.
        let mut line = 0;
        for (i, s) in stmts.iter().enumerate() {
            let joined = i > 0 && line > 0;
            if !joined {
                self.own_line_comments(s.span.start as usize, level, &mut prev, true);
                self.blank_line(prev, s.span.start as usize);
            }
            let next = stmts.get(i + 1);
            let width = self.joinable(s).unwrap_or(0);
            line = if joined {
                line + 2 + width
            } else {
                level * INDENT.len() + width
            };
            let join_next = next.is_some_and(|n| {
                width > 0 && self.joinable(n).is_some_and(|w| line + 2 + w <= MAX_WIDTH) && {
                    let gap = self.src(s.span.end as usize, n.span.start as usize);
                    gap.contains(';') && !gap.contains('\n')
                }
            });
            prev = Some(self.stmt(s, level, joined, !join_next));
            if !join_next {
                line = 0;
            }
        }
        self.own_line_comments(end, level, &mut prev, true);
    }

    /// The width of a statement that may share its line with others: one without a
    /// block, printed on one line, with no comment inside it.
    fn joinable(&self, s: &Stmt) -> Option<usize> {
        if s.block.is_some() {
            return None;
        }
        let (start, end) = (s.span.start, s.span.end);
        if self.comments[self.next..]
            .iter()
            .any(|c| c.span.start >= start && c.span.start < end)
        {
            return None;
        }
        let width = s.keyword.name.chars().count()
            + s.args
                .iter()
                .map(|v| 1 + self.inline(v).chars().count())
                .sum::<usize>();
        (width <= MAX_WIDTH).then_some(width)
    }

    /// Prints, each on its own line, the pending comments that start before `pos`.
    fn own_line_comments(
        &mut self,
        pos: usize,
        level: usize,
        prev: &mut Option<usize>,
        blank_lines: bool,
    ) {
        while let Some(c) = self.pending().filter(|c| (c.span.start as usize) < pos) {
            let (start, end, text) = (
                c.span.start as usize,
                c.span.end as usize,
                c.text.trim_end(),
            );
            if blank_lines {
                self.blank_line(*prev, start);
            }
            self.indent(level);
            self.out.push_str(text);
            self.out.push('\n');
            self.next += 1;
            *prev = Some(end);
        }
    }

    /// Prints one empty line if the source has an empty line between `prev` and `next`.
    fn blank_line(&mut self, prev: Option<usize>, next: usize) {
        let Some(prev) = prev else { return };
        let gap = self.src(prev, next);
        let mut lines = gap.split('\n');
        lines.next();
        lines.next_back();
        if lines.any(|l| l.trim().is_empty()) {
            self.out.push('\n');
        }
    }

    /// Takes the pending comment if it follows `from` on the same line with only the
    /// given characters (and spaces) in between: it ends the line being printed.
    fn trailing(&mut self, from: usize, allowed: &[char]) -> Option<(String, usize)> {
        let c = self.pending()?;
        let start = c.span.start as usize;
        if start < from {
            return None;
        }
        let gap = self.src(from, start);
        let same_line = gap
            .chars()
            .all(|ch| matches!(ch, ' ' | '\t' | '\r') || allowed.contains(&ch));
        if !same_line {
            return None;
        }
        let found = (c.text.trim_end().to_string(), c.span.end as usize);
        self.next += 1;
        Some(found)
    }

    fn end_line(&mut self, comment: Option<(String, usize)>) {
        if let Some((text, _)) = comment {
            self.out.push_str("  ");
            self.out.push_str(&text);
        }
        self.out.push('\n');
    }

    /// Prints a statement, after `; ` when it is `joined` to the one before; returns
    /// where it ends in the source, including the comment printed at the end of its
    /// line when it `ends_line`.
    fn stmt(&mut self, s: &Stmt, level: usize, joined: bool, ends_line: bool) -> usize {
        let header_end = s.args.last().map_or(s.keyword.span.end, |v| v.span.end) as usize;
        let inline: Vec<String> = s.args.iter().map(|v| self.inline(v)).collect();
        let width = level * INDENT.len()
            + s.keyword.name.chars().count()
            + inline.iter().map(|a| 1 + a.chars().count()).sum::<usize>()
            + if s.block.is_some() { 2 } else { 0 };
        // Too wide: the longest list (the first of equals) goes one item per line.
        let mut wrap = None;
        if width > MAX_WIDTH {
            let mut longest = 0;
            for (i, (v, text)) in s.args.iter().zip(&inline).enumerate() {
                if matches!(v.kind, ValueKind::List(_)) && (wrap.is_none() || text.len() > longest)
                {
                    wrap = Some(i);
                    longest = text.len();
                }
            }
        }

        if joined {
            self.out.push_str("; ");
        } else {
            self.indent(level);
        }
        self.out.push_str(&s.keyword.name);
        for (i, v) in s.args.iter().enumerate() {
            self.out.push(' ');
            self.value(v, level, wrap == Some(i));
        }
        if let Some(b) = &s.block {
            self.block(b, header_end, level);
        }
        let end = s.span.end as usize;
        if !ends_line {
            return end;
        }
        let comment = self.trailing(end, &[';']);
        let end = comment.as_ref().map_or(end, |(_, e)| *e);
        self.end_line(comment);
        end
    }

    fn block(&mut self, b: &Block, header_end: usize, level: usize) {
        let open = b.span.start as usize;
        let close = (b.span.end as usize).saturating_sub(1);
        // A comment right after the header or right after `{` ends the `{` line.
        let mut comment = self.trailing(header_end, &['{']);
        if comment.is_none() && self.pending().is_some_and(|c| c.span.start as usize > open) {
            comment = self.trailing(open + 1, &[]);
        }
        if b.stmts.is_empty() && comment.is_none() && !self.pending_before(close) {
            self.out.push_str(" {}");
            return;
        }
        self.out.push_str(" {");
        self.end_line(comment);
        self.items(&b.stmts, level + 1, close);
        self.indent(level);
        self.out.push('}');
    }

    /// A value as written, lists on one line.
    fn inline(&self, v: &Value) -> String {
        match &v.kind {
            ValueKind::List(items) => {
                let items: Vec<String> = items.iter().map(|i| self.inline(i)).collect();
                format!("[{}]", items.join(" "))
            }
            _ => self
                .src(v.span.start as usize, v.span.end as usize)
                .to_string(),
        }
    }

    /// Prints a value at the current position; a list is wrapped one item per line if
    /// `wrap` is set or a comment stands inside it.
    fn value(&mut self, v: &Value, level: usize, wrap: bool) {
        let ValueKind::List(items) = &v.kind else {
            let text = self.inline(v);
            self.out.push_str(&text);
            return;
        };
        let (start, end) = (v.span.start as usize, v.span.end as usize);
        if items.is_empty() && !self.pending_before(end) {
            self.out.push_str("[]");
            return;
        }
        if !wrap && !self.pending_before(end) {
            let text = self.inline(v);
            self.out.push_str(&text);
            return;
        }
        self.out.push('[');
        let comment = self.trailing(start + 1, &[]);
        self.end_line(comment);
        let mut prev = None;
        for item in items {
            self.own_line_comments(item.span.start as usize, level + 1, &mut prev, false);
            self.indent(level + 1);
            self.value(item, level + 1, false);
            let comment = self.trailing(item.span.end as usize, &[]);
            self.end_line(comment);
        }
        self.own_line_comments(end.saturating_sub(1), level + 1, &mut prev, false);
        self.indent(level);
        self.out.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(text: &str) -> String {
        match format_source(FileId(0), text) {
            Ok(s) => s,
            Err(d) => panic!("{:?}", d.iter().map(|d| &d.message).collect::<Vec<_>>()),
        }
    }

    #[test]
    fn splits_statements_and_normalises_space() {
        assert_eq!(
            fmt("role r {cpu 1   memory 512M;swap 2G}\n\n\n"),
            "role r {\n  cpu 1 memory 512M; swap 2G\n}\n"
        );
        assert_eq!(
            fmt("role r {\n  cpu 1;memory 512M ;  swap 2G # c\n  count 1\n}"),
            "role r {\n  cpu 1; memory 512M; swap 2G  # c\n  count 1\n}\n"
        );
        assert_eq!(
            fmt("role r { count 1; disk x {} ; cpu 1 }"),
            "role r {\n  count 1\n  disk x {}\n  cpu 1\n}\n"
        );
    }

    #[test]
    fn joined_statements_split_when_the_line_is_too_wide() {
        let long = "x".repeat(60);
        let text = format!("role r {{ cmdline {long}; cmdline {long}; cpu 1 }}");
        let out = fmt(&text);
        assert_eq!(
            out,
            format!("role r {{\n  cmdline {long}\n  cmdline {long}; cpu 1\n}}\n")
        );
        assert_eq!(fmt(&out), out);
    }

    #[test]
    fn keeps_comments_in_place() {
        let text =
            "# top\nrole r { # after brace\n  count 1 # trailing\n  # before end\n}  # end\n";
        assert_eq!(
            fmt(text),
            "# top\nrole r {  # after brace\n  count 1  # trailing\n  # before end\n}  # end\n"
        );
    }

    #[test]
    fn empty_input_stays_empty() {
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("\n\n;\n"), "");
        assert_eq!(fmt("role r {}"), "role r {}\n");
    }
}
