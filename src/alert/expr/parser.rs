//! Lexer and parser of lambda expressions, after Kapacitor's `tick/ast`
//! (`lex.go`, `parser.go`), restated.
//!
//! The lexer has two states, as Kapacitor's does: after an operand (a number,
//! string, reference, identifier, keyword or `)`) it looks for a binary
//! operator, so `/` is division; anywhere else `/` starts a regex literal and
//! `*` is a star. `-` and `!` are always operator tokens: the parser makes them
//! unary where an operand is expected, so number literals are never negative.
//! The parser is Kapacitor's precedence climbing (left-associative).

use super::ast::{Literal, Node, Op};

/// Why a lambda does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse '{src}' at {}: {msg}", self.location())]
pub struct ParseError {
    /// The input, cut to [`ECHO_BYTES`] each side of the error ([`excerpt`]).
    pub src: String,
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column (in characters) of the offending token on its line.
    pub column: usize,
    pub msg: String,
}

impl ParseError {
    fn location(&self) -> String {
        if self.line == 1 {
            format!("column {}", self.column)
        } else {
            format!("line {}, column {}", self.line, self.column)
        }
    }

    fn at(src: &str, pos: usize, msg: impl Into<String>) -> ParseError {
        let before = &src[..pos.min(src.len())];
        let line = 1 + before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            src: excerpt(src, pos),
            line,
            column,
            msg: msg.into(),
        }
    }
}

/// The most of an expression's text an error repeats, on each side of the
/// error's position: a huge input must not become a huge log line.
pub const ECHO_BYTES: usize = 120;

/// `src` cut to [`ECHO_BYTES`] around byte `pos` (on character boundaries),
/// `…` marking each cut end; short inputs come back whole. The line and
/// column of the error say where the position is in the whole input.
pub fn excerpt(src: &str, pos: usize) -> String {
    if src.len() <= 2 * ECHO_BYTES {
        return src.to_string();
    }
    let pos = pos.min(src.len());
    let mut start = pos.saturating_sub(ECHO_BYTES);
    while !src.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (pos + ECHO_BYTES).min(src.len());
    while !src.is_char_boundary(end) {
        end += 1;
    }
    let mut out = String::with_capacity(end - start + 8);
    if start > 0 {
        out.push('…');
    }
    out.push_str(&src[start..end]);
    if end < src.len() {
        out.push('…');
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Number,
    Duration,
    Str,
    Ref,
    Regex,
    Ident,
    True,
    False,
    /// Any operator, `-` and `!` included.
    Op(Op),
    LParen,
    RParen,
    Comma,
    Star,
    Dot,
    Asgn,
    /// `[ ] | @ var dbrp lambda:`: TICKscript tokens that have no place in a
    /// lambda body.
    Other,
    Eof,
    Error(String),
}

#[derive(Debug, Clone)]
struct Token<'s> {
    tok: Tok,
    pos: usize,
    text: &'s str,
}

/// The lexer's two states (Kapacitor's `lexToken` and `tryLexBinaryOperator`),
/// plus "a regex may follow" after `=~`, `!~` and `=`.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Operand,
    Operator,
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    mode: Mode,
    tokens: Vec<Token<'s>>,
}

fn is_space(c: char) -> bool {
    c.is_whitespace()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl<'s> Lexer<'s> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
    }

    fn emit(&mut self, tok: Tok, start: usize) {
        let text = &self.src[start..self.pos];
        self.tokens.push(Token {
            tok,
            pos: start,
            text,
        });
    }

    fn error(&mut self, start: usize, msg: String) {
        self.tokens.push(Token {
            tok: Tok::Error(msg),
            pos: start,
            text: "",
        });
    }

    /// Tokenizes the whole input; the last token is `Eof` or an `Error`.
    fn run(mut self) -> Vec<Token<'s>> {
        loop {
            let ok = match self.mode {
                Mode::Operator => self.lex_operator(),
                Mode::Operand => self.lex_token(),
            };
            if !ok {
                return self.tokens;
            }
        }
    }

    /// Kapacitor's `tryLexBinaryOperator`. Returns false when lexing ended.
    fn lex_operator(&mut self) -> bool {
        self.skip_space();
        let start = self.pos;
        let Some(c) = self.peek() else {
            self.mode = Mode::Operand;
            return true;
        };
        let op = match c {
            '+' => Op::Plus,
            '-' => Op::Minus,
            '*' => Op::Mult,
            '%' => Op::Mod,
            '/' => {
                if self.peek2() == Some('/') {
                    self.comment();
                    self.mode = Mode::Operand;
                    return true;
                }
                Op::Div
            }
            '!' => match self.peek2() {
                Some('=') => Op::Ne,
                Some('~') => Op::RegexNe,
                _ => Op::Not,
            },
            '>' | '<' => match (c, self.peek2()) {
                ('>', Some('=')) => Op::Ge,
                ('<', Some('=')) => Op::Le,
                ('>', _) => Op::Gt,
                _ => Op::Lt,
            },
            '=' => match self.peek2() {
                Some('~') => Op::RegexEq,
                Some('=') => Op::Eq,
                _ => {
                    self.bump();
                    self.emit(Tok::Asgn, start);
                    return self.maybe_regex();
                }
            },
            _ => {
                self.mode = Mode::Operand;
                return true;
            }
        };
        for _ in 0..op.as_str().len() {
            self.bump();
        }
        self.emit(Tok::Op(op), start);
        if matches!(op, Op::RegexEq | Op::RegexNe) {
            return self.maybe_regex();
        }
        self.mode = Mode::Operand;
        true
    }

    fn maybe_regex(&mut self) -> bool {
        self.skip_space();
        self.mode = Mode::Operand;
        if self.peek() == Some('/') {
            return self.regex();
        }
        true
    }

    /// Kapacitor's `lexToken`. Returns false when lexing ended.
    fn lex_token(&mut self) -> bool {
        loop {
            let start = self.pos;
            let Some(c) = self.peek() else {
                self.emit(Tok::Eof, start);
                return false;
            };
            match c {
                '-' | '!' => {
                    self.bump();
                    self.emit(Tok::Op(if c == '-' { Op::Minus } else { Op::Not }), start);
                    return true;
                }
                c if is_digit(c) || c == '.' => return self.number(),
                c if c.is_alphabetic() => return self.ident(),
                '"' => return self.reference(),
                '\'' => return self.string(),
                c if is_space(c) => {
                    self.bump();
                }
                '(' | '[' | ']' | '|' | '@' | ',' | '*' => {
                    self.bump();
                    let tok = match c {
                        '(' => Tok::LParen,
                        ',' => Tok::Comma,
                        '*' => Tok::Star,
                        _ => Tok::Other,
                    };
                    self.emit(tok, start);
                    return true;
                }
                ')' => {
                    self.bump();
                    self.emit(Tok::RParen, start);
                    self.mode = Mode::Operator;
                    return true;
                }
                '/' => {
                    if self.peek2() == Some('/') {
                        self.comment();
                        continue;
                    }
                    return self.regex();
                }
                other => {
                    self.error(start, format!("unexpected '{other}'"));
                    return false;
                }
            }
        }
    }

    /// `//` to the end of the line (comments carry no meaning in a lambda).
    fn comment(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn ident(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_ident) {
            self.bump();
        }
        let text = &self.src[start..self.pos];
        let tok = match text {
            "AND" => Tok::Op(Op::And),
            "OR" => Tok::Op(Op::Or),
            "TRUE" => Tok::True,
            "FALSE" => Tok::False,
            "var" | "dbrp" => Tok::Other,
            "lambda" if self.peek() == Some(':') => {
                self.bump();
                Tok::Other
            }
            _ => Tok::Ident,
        };
        self.emit(tok, start);
        self.mode = Mode::Operator;
        true
    }

    /// Kapacitor's `lexNumberOrDurationOrDot`: digits with at most one `.`;
    /// digits directly followed by a unit (`u µ ms s m h d w`) are a duration.
    fn number(&mut self) -> bool {
        let start = self.pos;
        let mut decimal = false;
        let mut first = true;
        loop {
            match self.peek() {
                Some('.') => {
                    if first && !self.peek2().is_some_and(is_digit) {
                        self.bump();
                        self.emit(Tok::Dot, start);
                        self.mode = Mode::Operand;
                        return true;
                    }
                    if decimal {
                        self.error(self.pos, "multiple decimals in number".into());
                        return false;
                    }
                    decimal = true;
                    self.bump();
                }
                Some(c) if is_digit(c) => {
                    self.bump();
                }
                Some(c) if !decimal && "uµsmhdw".contains(c) => {
                    self.bump();
                    if c == 'm' && self.peek() == Some('s') {
                        self.bump();
                    }
                    self.emit(Tok::Duration, start);
                    self.mode = Mode::Operator;
                    return true;
                }
                _ => {
                    self.emit(Tok::Number, start);
                    self.mode = Mode::Operator;
                    return true;
                }
            }
            first = false;
        }
    }

    fn reference(&mut self) -> bool {
        self.delimited(
            '"',
            Tok::Ref,
            Mode::Operator,
            "unterminated field reference",
        )
    }

    /// A token between two `delim`s in which `\` escapes the delimiter:
    /// `"field"` references and `/regex/` literals.
    fn delimited(&mut self, delim: char, tok: Tok, next: Mode, unterminated: &str) -> bool {
        let start = self.pos;
        self.bump();
        loop {
            match self.bump() {
                Some('\\') => {
                    if self.peek() == Some(delim) {
                        self.bump();
                    }
                }
                Some(c) if c == delim => {
                    self.emit(tok, start);
                    self.mode = next;
                    return true;
                }
                Some(_) => {}
                None => {
                    self.error(start, unterminated.into());
                    return false;
                }
            }
        }
    }

    /// `'…'` (with `\'`) or `'''…'''` (raw).
    fn string(&mut self) -> bool {
        let start = self.pos;
        let triple = self.src[start..].starts_with("'''");
        if !triple && self.src[start..].starts_with("''") {
            self.bump();
            self.bump();
            self.emit(Tok::Str, start);
            self.mode = Mode::Operator;
            return true;
        }
        let open = if triple { 3 } else { 1 };
        for _ in 0..open {
            self.bump();
        }
        let mut closing = 0;
        loop {
            match self.bump() {
                Some('\\') if !triple => {
                    if self.peek() == Some('\'') {
                        self.bump();
                    }
                    closing = 0;
                }
                Some('\'') => {
                    closing += 1;
                    if closing == open {
                        self.emit(Tok::Str, start);
                        self.mode = Mode::Operator;
                        return true;
                    }
                }
                Some(_) => closing = 0,
                None => {
                    self.error(start, "unterminated string".into());
                    return false;
                }
            }
        }
    }

    fn regex(&mut self) -> bool {
        self.delimited('/', Tok::Regex, Mode::Operand, "unterminated regex")
    }
}

/// Removes the backslash of every `\<q>` (Kapacitor unescapes only the
/// delimiter; other backslashes stay).
fn unescape(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&q) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Parses a duration literal as influxql's `ParseDuration` does for one
/// number and one unit (`10ms`, `5m`, `1u`, `2µ`, `3w`). Overflow wraps, as
/// Go's multiplication does.
pub(crate) fn parse_duration_literal(text: &str) -> Option<i64> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit())?;
    if digits_end == 0 {
        return None;
    }
    let n: i64 = text[..digits_end].parse().ok()?;
    let unit = duration_unit_nanos(&text[digits_end..])?;
    Some(n.wrapping_mul(unit))
}

/// Nanoseconds per unit of a TICKscript duration literal (`ns`, `u`/`µ`,
/// `ms`, `s`, `m`, `h`, `d`, `w`).
pub fn duration_unit_nanos(unit: &str) -> Option<i64> {
    Some(match unit {
        "ns" => 1,
        "u" | "µ" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return None,
    })
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token<'s>>,
    i: usize,
    /// Nesting of parentheses, unary operators and calls being parsed.
    nesting: usize,
}

type PResult<T> = Result<T, ParseError>;

impl<'s> Parser<'s> {
    fn peek(&self) -> &Token<'s> {
        // The token list always ends with Eof or Error, and the parser never
        // moves past either.
        &self.tokens[self.i.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token<'s> {
        let t = self.peek().clone();
        if !matches!(t.tok, Tok::Eof | Tok::Error(_)) {
            self.i += 1;
        }
        t
    }

    fn unexpected(&self, t: &Token<'s>) -> ParseError {
        let msg = match &t.tok {
            Tok::Error(m) => m.clone(),
            Tok::Eof => "unexpected end of expression".to_string(),
            _ => format!("unexpected '{}'", excerpt(t.text, 0)),
        };
        ParseError::at(self.src, t.pos, msg)
    }

    fn expect(&mut self, want: Tok) -> PResult<Token<'s>> {
        let t = self.next();
        if t.tok != want {
            return Err(self.unexpected(&t));
        }
        Ok(t)
    }

    fn binary_op(t: &Token<'_>) -> Option<Op> {
        match t.tok {
            Tok::Op(op) if op != Op::Not => Some(op),
            _ => None,
        }
    }

    /// `primaryExpr`: a primary followed by any binary operators.
    fn expr(&mut self) -> PResult<Node> {
        let lhs = self.primary()?;
        self.precedence(lhs, 0)
    }

    /// Kapacitor's precedence climbing, left-associative.
    fn precedence(&mut self, mut lhs: Node, min: u8) -> PResult<Node> {
        while let Some(op) = Self::binary_op(self.peek()).filter(|o| o.precedence() >= Some(min)) {
            self.next();
            let mut rhs = self.primary()?;
            while let Some(look) =
                Self::binary_op(self.peek()).filter(|o| o.precedence() > op.precedence())
            {
                rhs = self.precedence(rhs, look.precedence().unwrap_or(0))?;
            }
            lhs = Node::binary(op, lhs, rhs);
        }
        Ok(lhs)
    }

    fn primary(&mut self) -> PResult<Node> {
        if self.nesting >= MAX_DEPTH {
            let t = self.peek().clone();
            return Err(ParseError::at(
                self.src,
                t.pos,
                format!("expression nested too deeply: more than {MAX_DEPTH} levels"),
            ));
        }
        self.nesting += 1;
        let n = self.primary_inner();
        self.nesting -= 1;
        n
    }

    fn primary_inner(&mut self) -> PResult<Node> {
        let t = self.next();
        Ok(match t.tok {
            Tok::LParen => {
                let n = self.expr()?;
                self.expect(Tok::RParen)?;
                n
            }
            Tok::Number => Node::Literal(self.number(&t)?),
            Tok::Str => {
                let lit = if t.text.len() >= 6 && t.text.starts_with("'''") {
                    t.text[3..t.text.len() - 3].to_string()
                } else {
                    unescape(&t.text[1..t.text.len() - 1], '\'')
                };
                Node::Literal(Literal::String(lit))
            }
            Tok::True => Node::Literal(Literal::Bool(true)),
            Tok::False => Node::Literal(Literal::Bool(false)),
            Tok::Duration => match parse_duration_literal(t.text) {
                Some(d) => Node::Literal(Literal::Duration(d)),
                None => {
                    return Err(ParseError::at(
                        self.src,
                        t.pos,
                        format!("invalid duration '{}'", t.text),
                    ));
                }
            },
            Tok::Regex => {
                let pattern = unescape(&t.text[1..t.text.len() - 1], '/');
                if let Err(e) = super::regex::GoRegex::new(&pattern) {
                    return Err(ParseError::at(self.src, t.pos, e.to_string()));
                }
                Node::Literal(Literal::Regex(pattern))
            }
            Tok::Ref => Node::Ref(unescape(&t.text[1..t.text.len() - 1], '"')),
            Tok::Ident => {
                if self.peek().tok == Tok::LParen {
                    self.next();
                    let args = self.arguments()?;
                    self.expect(Tok::RParen)?;
                    Node::Call {
                        name: t.text.to_string(),
                        args,
                    }
                } else {
                    Node::Ident(t.text.to_string())
                }
            }
            Tok::Op(op @ (Op::Minus | Op::Not)) => Node::unary(op, self.primary()?),
            _ => return Err(self.unexpected(&t)),
        })
    }

    fn arguments(&mut self) -> PResult<Vec<Node>> {
        let mut args = Vec::new();
        loop {
            if self.peek().tok == Tok::RParen {
                return Ok(args);
            }
            args.push(self.expr()?);
            if self.peek().tok != Tok::Comma {
                return Ok(args);
            }
            self.next();
        }
    }

    /// Kapacitor's `newNumber`: with a `.` a float; else an integer, octal
    /// when it starts with `0`.
    fn number(&self, t: &Token<'s>) -> PResult<Literal> {
        let text = t.text;
        let bad = || {
            ParseError::at(
                self.src,
                t.pos,
                format!("illegal number syntax: \"{text}\""),
            )
        };
        if text.contains('.') {
            return text.parse::<f64>().map(Literal::Float).map_err(|_| bad());
        }
        let (digits, radix) = if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
        i64::from_str_radix(digits, radix)
            .map(Literal::Int)
            .map_err(|_| bad())
    }
}

/// The longest expression accepted. It bounds the depth of the tree, and so
/// the recursion of the parser, compiler and evaluator, far below what a
/// 2 MiB thread stack holds; level expressions are a few dozen tokens.
pub const MAX_TOKENS: usize = 1024;

/// The deepest tree accepted (nesting of operators, parentheses and calls),
/// for the same reason.
pub const MAX_DEPTH: usize = 200;

/// Parses a lambda body (the text after `lambda:`, which may be included)
/// into its tree.
pub fn parse(src: &str) -> Result<Node, ParseError> {
    let tokens = Lexer {
        src,
        pos: 0,
        mode: Mode::Operand,
        tokens: Vec::new(),
    }
    .run();
    if tokens.len() > MAX_TOKENS {
        let pos = tokens[MAX_TOKENS].pos;
        return Err(ParseError::at(
            src,
            pos,
            format!("expression too long: more than {MAX_TOKENS} tokens"),
        ));
    }
    // Accept the `lambda:` that TICKscript writes before a lambda body.
    let start = usize::from(
        tokens
            .first()
            .is_some_and(|t| t.tok == Tok::Other && t.text == "lambda:"),
    );
    let mut p = Parser {
        src,
        tokens,
        i: start,
        nesting: 0,
    };
    let node = p.expr()?;
    let t = p.next();
    if t.tok != Tok::Eof {
        return Err(p.unexpected(&t));
    }
    if depth(&node) > MAX_DEPTH {
        return Err(ParseError::at(
            src,
            0,
            format!("expression nested too deeply: more than {MAX_DEPTH} levels"),
        ));
    }
    Ok(node)
}

/// The depth of a tree, computed without recursion (the tree may be deep).
pub(crate) fn depth(root: &Node) -> usize {
    let mut max = 0;
    let mut stack = vec![(root, 1)];
    while let Some((n, d)) = stack.pop() {
        max = max.max(d);
        match n {
            Node::Literal(_) | Node::Ref(_) | Node::Ident(_) => {}
            Node::Unary { node, .. } | Node::Lambda(node) => stack.push((node, d + 1)),
            Node::Binary { left, right, .. } => {
                stack.push((left, d + 1));
                stack.push((right, d + 1));
            }
            Node::Call { args, .. } => stack.extend(args.iter().map(|a| (a, d + 1))),
        }
    }
    max
}

#[cfg(test)]
mod tests;
