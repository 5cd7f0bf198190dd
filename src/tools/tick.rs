//! Just enough of TICKscript for `simulate`: the pipeline's nodes and their
//! property calls, with `var` declarations resolved, so the options of a
//! `@pagertree()` node and the grouping and batch schedule of its source can
//! be read without Kapacitor. Lambdas are kept as their source text (they are
//! never evaluated here); nodes are never executed.
//!
//! Grammar read: `dbrp "db"."rp"`; `var NAME = EXPR`; chain statements
//! `SOURCE (|node(args) | @udf(args) | .property(args))*` where SOURCE is
//! `stream`, `batch` or a variable holding a node; arguments are strings
//! (`'…'`, `'''…'''`), numbers, durations (`10s`, `1.5m`, `1w`), `TRUE`/`FALSE`,
//! `lambda: …`, regexes, `"references"`, `*`, lists `[…]`, calls such as
//! `time(1m)`, and variable names. `//` comments run to the end of the line.

use std::collections::HashMap;
use std::fmt;

/// A literal argument of a node or property.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(i64),
    /// The lambda's expression text, `lambda:` removed.
    Lambda(String),
    Regex(String),
    /// A double-quoted field or tag reference.
    Reference(String),
    Star,
    List(Vec<Value>),
    /// A function call used as an argument, e.g. `time(1m)` in `groupBy`.
    Call(String, Vec<Value>),
}

impl Value {
    /// The TICKscript type name Kapacitor uses in its messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "STRING",
            Value::Int(_) => "INT",
            Value::Float(_) => "DOUBLE",
            Value::Bool(_) => "BOOL",
            Value::Duration(_) => "DURATION",
            Value::Lambda(_) => "LAMBDA",
            Value::Regex(_) => "REGEX",
            Value::Reference(_) => "REFERENCE",
            Value::Star => "STAR",
            Value::List(_) => "LIST",
            Value::Call(..) => "FUNCTION",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "'{s}'"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Value::Duration(ns) if *ns < 0 => write!(
                f,
                "-{}",
                humantime::format_duration(std::time::Duration::from_nanos(ns.unsigned_abs()))
            ),
            Value::Duration(ns) => write!(
                f,
                "{}",
                humantime::format_duration(std::time::Duration::from_nanos(*ns as u64))
            ),
            Value::Lambda(s) => write!(f, "lambda: {s}"),
            Value::Regex(s) => write!(f, "/{s}/"),
            Value::Reference(s) => write!(f, "\"{s}\""),
            Value::Star => f.write_str("*"),
            Value::List(v) => {
                let items: Vec<String> = v.iter().map(|v| v.to_string()).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Value::Call(n, a) => {
                let items: Vec<String> = a.iter().map(|v| v.to_string()).collect();
                write!(f, "{n}({})", items.join(", "))
            }
        }
    }
}

/// How a node was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `stream` or `batch`.
    Source,
    /// `|name()`.
    Chain,
    /// `@name()`.
    Udf,
}

/// A property call `.name(args)` on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub args: Vec<Value>,
    pub line: usize,
}

/// One node of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Creation order, as Kapacitor numbers nodes (`stream0`, `from1`, …).
    pub index: usize,
    pub kind: NodeKind,
    pub name: String,
    pub args: Vec<Value>,
    pub properties: Vec<Property>,
    pub parent: Option<usize>,
    pub line: usize,
}

impl Node {
    /// Kapacitor's node id: the name followed by its index.
    pub fn id(&self) -> String {
        format!("{}{}", self.name, self.index)
    }

    /// The arguments of the last call of a property (TICKscript: the last wins).
    pub fn last(&self, name: &str) -> Option<&[Value]> {
        self.properties
            .iter()
            .rev()
            .find(|p| p.name == name)
            .map(|p| p.args.as_slice())
    }
}

/// A parsed script.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Script {
    pub dbrp: Vec<(String, String)>,
    pub nodes: Vec<Node>,
}

impl Script {
    /// The path from the source to `index`, source first.
    pub fn lineage(&self, index: usize) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut cur = Some(index);
        while let Some(i) = cur {
            let Some(n) = self.nodes.get(i) else { break };
            out.push(n);
            cur = n.parent;
        }
        out.reverse();
        out
    }
}

/// A script that cannot be read, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct TickError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Ref(String),
    Int(i64),
    Float(f64),
    Duration(i64),
    Regex(String),
    /// Any operator or punctuation.
    Punct(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
    /// Byte offsets in the source (for lambda text).
    start: usize,
    end: usize,
}

const PUNCTS: [&str; 26] = [
    "==", "!=", "<=", ">=", "=~", "!~", "|", "@", ".", "(", ")", ",", "=", ":", "*", "+", "-", "/",
    "%", "<", ">", "!", "[", "]", "{", "}",
];

/// The lambda parser's units, plus `us`/`µs` (accepted here too; Kapacitor's
/// lexer knows only `u`/`µ`).
fn unit_nanos(unit: &str) -> Option<i64> {
    match unit {
        "us" | "µs" => Some(1_000),
        u => crate::alert::expr::duration_unit_nanos(u),
    }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    line_start: usize,
    out: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, reason: impl Into<String>) -> TickError {
        let line_start = self.src[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
        TickError {
            line: self.src[..at].matches('\n').count() + 1,
            column: self.src[line_start..at].chars().count() + 1,
            reason: reason.into(),
        }
    }

    fn push(&mut self, tok: Tok, start: usize) {
        let (line, column) = if start >= self.line_start {
            (
                self.line,
                self.src[self.line_start..start].chars().count() + 1,
            )
        } else {
            // The token spans lines: report where it began.
            let e = self.err(start, "");
            (e.line, e.column)
        };
        self.out.push(Token {
            tok,
            line,
            column,
            start,
            end: self.pos,
        });
    }

    /// A `/` starts a regex where an operand is expected, i.e. not after a value.
    fn regex_allowed(&self) -> bool {
        match self.out.last().map(|t| &t.tok) {
            None => true,
            Some(Tok::Punct(p)) => !matches!(*p, ")" | "]"),
            Some(Tok::Ident(i)) => i == "lambda",
            Some(_) => false,
        }
    }

    fn run(mut self) -> Result<Vec<Token>, TickError> {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() {
            let c = bytes[self.pos];
            let start = self.pos;
            match c {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'/' if bytes.get(self.pos + 1) == Some(&b'/') => {
                    while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'\'' => {
                    let s = self.string()?;
                    self.push(Tok::Str(s), start);
                }
                b'"' => {
                    let s = self.quoted(b'"', start)?;
                    self.push(Tok::Ref(s), start);
                }
                b'/' if self.regex_allowed() => {
                    let s = self.quoted(b'/', start)?;
                    self.push(Tok::Regex(s), start);
                }
                b'0'..=b'9' => {
                    let t = self.number(start)?;
                    self.push(t, start);
                }
                _ if c == b'_' || c.is_ascii_alphabetic() => {
                    while self.pos < bytes.len()
                        && (bytes[self.pos] == b'_' || bytes[self.pos].is_ascii_alphanumeric())
                    {
                        self.pos += 1;
                    }
                    let word = self.src[start..self.pos].to_string();
                    self.push(Tok::Ident(word), start);
                }
                _ => {
                    let rest = &self.src[self.pos..];
                    let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
                        let ch = rest.chars().next().unwrap_or('?');
                        return Err(self.err(start, format!("unexpected character {ch:?}")));
                    };
                    self.pos += p.len();
                    self.push(Tok::Punct(p), start);
                }
            }
        }
        Ok(self.out)
    }

    /// `'…'` with `\'` escapes, or `'''…'''` taken verbatim.
    fn string(&mut self) -> Result<String, TickError> {
        let start = self.pos;
        let rest = &self.src[self.pos..];
        if let Some(body) = rest.strip_prefix("'''") {
            let Some(end) = body.find("'''") else {
                return Err(self.err(start, "unterminated '''string'''"));
            };
            let s = body[..end].to_string();
            self.pos += 3 + end + 3;
            self.lines_between(start);
            return Ok(s);
        }
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.src[self.pos..].char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '\\' => match chars.next() {
                    Some((_, '\'')) => out.push('\''),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                '\'' => {
                    self.pos += i + 1;
                    self.lines_between(start);
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(self.err(start, "unterminated 'string'"))
    }

    /// Keeps line bookkeeping right after a token that spans lines.
    fn lines_between(&mut self, from: usize) {
        let consumed = &self.src[from..self.pos];
        if let Some(last) = consumed.rfind('\n') {
            self.line += consumed.matches('\n').count();
            self.line_start = from + last + 1;
        }
    }

    /// `"…"` or `/…/` with backslash escapes of the delimiter.
    fn quoted(&mut self, delim: u8, start: usize) -> Result<String, TickError> {
        let bytes = self.src.as_bytes();
        self.pos += 1;
        let mut out = Vec::new();
        while self.pos < bytes.len() {
            let c = bytes[self.pos];
            if c == b'\\' && bytes.get(self.pos + 1) == Some(&delim) {
                if delim == b'/' {
                    out.push(b'\\');
                }
                out.push(delim);
                self.pos += 2;
                continue;
            }
            if c == b'\n' {
                break;
            }
            self.pos += 1;
            if c == delim {
                return String::from_utf8(out).map_err(|_| self.err(start, "not UTF-8"));
            }
            out.push(c);
        }
        Err(self.err(
            start,
            format!(
                "unterminated {}",
                if delim == b'/' { "regex" } else { "reference" }
            ),
        ))
    }

    /// An integer, float or duration (`10`, `0.5`, `5m`, `1.5h`, `100ms`).
    fn number(&mut self, start: usize) -> Result<Tok, TickError> {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && bytes[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let mut float = false;
        if bytes.get(self.pos) == Some(&b'.')
            && bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            float = true;
            self.pos += 1;
            while self.pos < bytes.len() && bytes[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
        }
        let digits = &self.src[start..self.pos];
        let unit_start = self.pos;
        let rest = &self.src[self.pos..];
        let unit_len: usize = rest
            .chars()
            .take_while(|c| c.is_alphabetic())
            .map(char::len_utf8)
            .sum();
        if unit_len > 0 {
            let unit = &rest[..unit_len];
            let Some(scale) = unit_nanos(unit) else {
                return Err(self.err(
                    unit_start,
                    format!("unknown duration unit {unit:?} (use ns, u, ms, s, m, h, d, w)"),
                ));
            };
            self.pos += unit_len;
            let ns = if float {
                let v: f64 = digits.parse().map_err(|_| self.err(start, "bad number"))?;
                (v * scale as f64).round() as i64
            } else {
                let v: i64 = digits
                    .parse()
                    .map_err(|_| self.err(start, "number out of range"))?;
                v.checked_mul(scale)
                    .ok_or_else(|| self.err(start, "duration out of range"))?
            };
            return Ok(Tok::Duration(ns));
        }
        if float {
            digits
                .parse()
                .map(Tok::Float)
                .map_err(|_| self.err(start, "bad number"))
        } else {
            digits
                .parse()
                .map(Tok::Int)
                .map_err(|_| self.err(start, "integer out of range"))
        }
    }
}

fn is_operator_word(w: &str) -> bool {
    matches!(w, "AND" | "OR")
}

fn ends_operand(t: &Tok) -> bool {
    match t {
        Tok::Ident(w) => !is_operator_word(w) && w != "lambda",
        Tok::Punct(p) => matches!(*p, ")" | "]"),
        _ => true,
    }
}

fn starts_operand(t: &Tok) -> bool {
    match t {
        Tok::Ident(w) => !is_operator_word(w),
        Tok::Punct(_) => false,
        _ => true,
    }
}

enum Binding {
    Value(Value),
    Node(usize),
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    vars: HashMap<String, Binding>,
    script: Script,
}

/// Parses a TICKscript.
pub fn parse(src: &str) -> Result<Script, TickError> {
    let toks = Lexer {
        src,
        pos: 0,
        line: 1,
        line_start: 0,
        out: Vec::new(),
    }
    .run()?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        vars: HashMap::new(),
        script: Script::default(),
    };
    while p.pos < p.toks.len() {
        p.statement()?;
    }
    Ok(p.script)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn err_here(&self, reason: impl Into<String>) -> TickError {
        let (line, column) = match self.toks.get(self.pos).or(self.toks.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
        };
        TickError {
            line,
            column,
            reason: reason.into(),
        }
    }

    fn line(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.line).unwrap_or(0)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, p: &'static str) -> Result<(), TickError> {
        if self.peek() == Some(&Tok::Punct(p)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err_here(format!("expected '{p}'")))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, TickError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.err_here(format!("expected {what}"))),
        }
    }

    fn statement(&mut self) -> Result<(), TickError> {
        match self.peek() {
            Some(Tok::Ident(w)) if w == "var" => {
                self.pos += 1;
                let name = self.ident("a variable name after var")?;
                self.expect("=")?;
                let b = self.expression()?;
                self.vars.insert(name, b);
                Ok(())
            }
            Some(Tok::Ident(w)) if w == "dbrp" => {
                self.pos += 1;
                let db = match self.next() {
                    Some(Tok::Ref(s)) => s,
                    _ => return Err(self.err_here("expected \"database\" after dbrp")),
                };
                self.expect(".")?;
                let rp = match self.next() {
                    Some(Tok::Ref(s)) => s,
                    _ => {
                        return Err(
                            self.err_here("expected \"retention_policy\" after the database")
                        );
                    }
                };
                self.script.dbrp.push((db, rp));
                Ok(())
            }
            _ => self.expression().map(|_| ()),
        }
    }

    /// A chain (a source or node variable followed by `|`, `@`, `.`) or a value.
    fn expression(&mut self) -> Result<Binding, TickError> {
        let line = self.line();
        let mut current = match self.peek() {
            Some(Tok::Ident(w)) if w == "stream" || w == "batch" => {
                let name = w.clone();
                self.pos += 1;
                Some(self.add_node(NodeKind::Source, name, Vec::new(), None, line))
            }
            Some(Tok::Ident(w)) if w != "lambda" && w != "TRUE" && w != "FALSE" => {
                let name = w.clone();
                match self.vars.get(&name) {
                    Some(Binding::Node(i)) => {
                        let i = *i;
                        self.pos += 1;
                        Some(i)
                    }
                    Some(Binding::Value(_)) => None,
                    None if matches!(
                        self.toks.get(self.pos + 1).map(|t| &t.tok),
                        Some(Tok::Punct("("))
                    ) =>
                    {
                        None
                    }
                    None => return Err(self.err_here(format!("undefined variable {name:?}"))),
                }
            }
            _ => None,
        };
        let Some(mut node) = current.take() else {
            return Ok(Binding::Value(self.value()?));
        };
        loop {
            let line = self.line();
            match self.peek() {
                Some(Tok::Punct("|")) | Some(Tok::Punct("@")) => {
                    let kind = if self.peek() == Some(&Tok::Punct("|")) {
                        NodeKind::Chain
                    } else {
                        NodeKind::Udf
                    };
                    self.pos += 1;
                    let name = self.ident("a node name")?;
                    let args = self.args()?;
                    node = self.add_node(kind, name, args, Some(node), line);
                }
                Some(Tok::Punct(".")) => {
                    self.pos += 1;
                    let name = self.ident("a property name")?;
                    let args = self.args()?;
                    self.script.nodes[node]
                        .properties
                        .push(Property { name, args, line });
                }
                _ => break,
            }
        }
        Ok(Binding::Node(node))
    }

    fn add_node(
        &mut self,
        kind: NodeKind,
        name: String,
        args: Vec<Value>,
        parent: Option<usize>,
        line: usize,
    ) -> usize {
        let index = self.script.nodes.len();
        self.script.nodes.push(Node {
            index,
            kind,
            name,
            args,
            properties: Vec::new(),
            parent,
            line,
        });
        index
    }

    fn args(&mut self) -> Result<Vec<Value>, TickError> {
        self.expect("(")?;
        self.list_until(")")
    }

    fn list_until(&mut self, close: &'static str) -> Result<Vec<Value>, TickError> {
        let mut out = Vec::new();
        if self.peek() == Some(&Tok::Punct(close)) {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(self.value()?);
            match self.next() {
                Some(Tok::Punct(",")) => continue,
                Some(Tok::Punct(p)) if p == close => return Ok(out),
                _ => {
                    self.pos -= 1;
                    return Err(self.err_here(format!("expected ',' or '{close}'")));
                }
            }
        }
    }

    fn value(&mut self) -> Result<Value, TickError> {
        let Some(tok) = self.next() else {
            return Err(self.err_here("unexpected end of script"));
        };
        Ok(match tok {
            Tok::Str(s) => Value::String(s),
            Tok::Ref(s) => Value::Reference(s),
            Tok::Int(i) => Value::Int(i),
            Tok::Float(f) => Value::Float(f),
            Tok::Duration(d) => Value::Duration(d),
            Tok::Regex(r) => Value::Regex(r),
            Tok::Punct("*") => Value::Star,
            Tok::Punct("[") => Value::List(self.list_until("]")?),
            Tok::Punct("-") => match self.next() {
                Some(Tok::Int(i)) => Value::Int(-i),
                Some(Tok::Float(f)) => Value::Float(-f),
                Some(Tok::Duration(d)) => Value::Duration(-d),
                _ => {
                    self.pos -= 1;
                    return Err(self.err_here("expected a number after '-'"));
                }
            },
            Tok::Ident(w) if w == "TRUE" => Value::Bool(true),
            Tok::Ident(w) if w == "FALSE" => Value::Bool(false),
            Tok::Ident(w) if w == "lambda" => {
                self.expect(":")?;
                self.lambda()?
            }
            Tok::Ident(w) => {
                if self.peek() == Some(&Tok::Punct("(")) {
                    let args = self.args()?;
                    return Ok(Value::Call(w, args));
                }
                match self.vars.get(&w) {
                    Some(Binding::Value(v)) => v.clone(),
                    Some(Binding::Node(_)) => {
                        self.pos -= 1;
                        return Err(self.err_here(format!("{w:?} holds a node, not a value")));
                    }
                    None => {
                        self.pos -= 1;
                        return Err(self.err_here(format!("undefined variable {w:?}")));
                    }
                }
            }
            Tok::Punct(p) => {
                self.pos -= 1;
                return Err(self.err_here(format!("unexpected '{p}'")));
            }
        })
    }

    /// The lambda's text up to the `,` or `)` that ends the argument (or the
    /// end of a `var` statement: the next statement's first token).
    fn lambda(&mut self) -> Result<Value, TickError> {
        let first = self.pos;
        let mut depth = 0usize;
        while let Some(t) = self.toks.get(self.pos) {
            // Two operands in a row end the expression: the next statement began.
            if depth == 0
                && self.pos > first
                && ends_operand(&self.toks[self.pos - 1].tok)
                && starts_operand(&t.tok)
            {
                break;
            }
            match &t.tok {
                Tok::Punct("(") | Tok::Punct("[") => depth += 1,
                Tok::Punct(")") | Tok::Punct("]") | Tok::Punct(",") if depth == 0 => break,
                Tok::Punct(")") | Tok::Punct("]") => depth -= 1,
                Tok::Ident(w) if depth == 0 && (w == "var" || w == "dbrp") => break,
                Tok::Punct("|") | Tok::Punct("@") if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == first {
            return Err(self.err_here("empty lambda"));
        }
        let (start, end) = (self.toks[first].start, self.toks[self.pos - 1].end);
        Ok(Value::Lambda(self.src[start..end].trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"
// High CPU, classic.
dbrp "telegraf"."autogen"
var period = 1m
var crit = 90.5
var msg = '''{{ .ID }} is {{ .Level }}
value: {{ index .Fields "value" }}'''
var data = stream
    |from()
        .measurement('cpu')
        .groupBy('host', 'dc')
        .where(lambda: "cpu" == 'cpu-total' AND "host" =~ /^web,\/x/)
    |window().period(period).every(period)
data
    |mean('usage_user').as('value')
    @pagertree()
        .crit('"value" > 90')
        .warn('"value" > 80') // trailing comment
        .message(msg)
        .flapping(0.25, 0.5)
        .history(21)
        .renotifyEvery(10m)
        .stateChangesOnly()
        .urgency('WARNING', 'high')
        .urgency('CRITICAL', 'critical')
        .tags('it''s')
"#;

    #[test]
    fn reads_a_pipeline_with_vars_and_comments() {
        let s = parse(SCRIPT).unwrap_err();
        // 'it''s' is two adjacent strings, which TICKscript refuses too.
        assert!(s.reason.contains("expected ','"), "{s}");
        let s = parse(&SCRIPT.replace("'it''s'", r"'it\'s'")).unwrap();
        assert_eq!(s.dbrp, vec![("telegraf".into(), "autogen".into())]);
        let names: Vec<String> = s.nodes.iter().map(Node::id).collect();
        assert_eq!(
            names,
            ["stream0", "from1", "window2", "mean3", "pagertree4"]
        );
        let from = &s.nodes[1];
        assert_eq!(
            from.last("groupBy").unwrap(),
            &[Value::String("host".into()), Value::String("dc".into())]
        );
        assert_eq!(
            from.last("where").unwrap(),
            &[Value::Lambda(
                r#""cpu" == 'cpu-total' AND "host" =~ /^web,\/x/"#.into()
            )]
        );
        assert_eq!(
            s.nodes[2].last("period").unwrap(),
            &[Value::Duration(60_000_000_000)]
        );
        let udf = &s.nodes[4];
        assert_eq!(udf.kind, NodeKind::Udf);
        assert_eq!(udf.parent, Some(3));
        assert_eq!(
            udf.last("message").unwrap(),
            &[Value::String(
                "{{ .ID }} is {{ .Level }}\nvalue: {{ index .Fields \"value\" }}".into()
            )]
        );
        assert_eq!(
            udf.last("flapping").unwrap(),
            &[Value::Float(0.25), Value::Float(0.5)]
        );
        assert_eq!(udf.last("history").unwrap(), &[Value::Int(21)]);
        assert_eq!(
            udf.last("renotifyEvery").unwrap(),
            &[Value::Duration(600_000_000_000)]
        );
        assert_eq!(udf.last("stateChangesOnly").unwrap(), &[]);
        assert_eq!(udf.last("tags").unwrap(), &[Value::String("it's".into())]);
        assert_eq!(
            udf.properties
                .iter()
                .filter(|p| p.name == "urgency")
                .count(),
            2
        );
        assert_eq!(udf.properties[0].line, 17);
        let lineage: Vec<&str> = s.lineage(4).iter().map(|n| n.name.as_str()).collect();
        assert_eq!(lineage, ["stream", "from", "window", "mean", "pagertree"]);
    }

    #[test]
    fn batch_queries_and_calls() {
        let s = parse(
            "batch\n  |query('''SELECT mean(usage_user) AS value\n FROM \"telegraf\".\"autogen\".\"cpu\"''')\n    .period(5m)\n    .every(1m)\n    .groupBy(time(1m), 'host')\n  @pagertreeBatch().all().crit('\"value\" > 1.5e2').history(-3)",
        )
        .unwrap();
        let q = &s.nodes[1];
        assert!(matches!(&q.args[0], Value::String(t) if t.contains("FROM \"telegraf\"")));
        assert_eq!(q.last("every").unwrap(), &[Value::Duration(60_000_000_000)]);
        assert_eq!(
            q.last("groupBy").unwrap(),
            &[
                Value::Call("time".into(), vec![Value::Duration(60_000_000_000)]),
                Value::String("host".into())
            ]
        );
        let udf = &s.nodes[2];
        assert_eq!(udf.line, 7);
        assert_eq!(udf.last("history").unwrap(), &[Value::Int(-3)]);
    }

    #[test]
    fn durations_units_and_star() {
        let s = parse("stream|from().groupBy(*)|window().period(1.5h).every(100ms).x(2w, 3d, 4u, 5ns, 10s, TRUE)").unwrap();
        assert_eq!(s.nodes[1].last("groupBy").unwrap(), &[Value::Star]);
        assert_eq!(
            s.nodes[2].last("period").unwrap(),
            &[Value::Duration(5_400_000_000_000)]
        );
        assert_eq!(
            s.nodes[2].last("every").unwrap(),
            &[Value::Duration(100_000_000)]
        );
        assert_eq!(
            s.nodes[2].last("x").unwrap(),
            &[
                Value::Duration(1_209_600_000_000_000),
                Value::Duration(259_200_000_000_000),
                Value::Duration(4_000),
                Value::Duration(5),
                Value::Duration(10_000_000_000),
                Value::Bool(true),
            ]
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("stream\n  |from().x(nope)").unwrap_err();
        assert_eq!((e.line, e.column), (2, 13));
        assert!(e.reason.contains("undefined variable \"nope\""), "{e}");
        let e = parse("stream|from().x('open").unwrap_err();
        assert!(e.reason.contains("unterminated"), "{e}");
        let e = parse("stream|from().x(5y)").unwrap_err();
        assert!(e.reason.contains("unknown duration unit \"y\""), "{e}");
        let e = parse("stream|from().x(1 2)").unwrap_err();
        assert!(e.reason.contains("expected ','"), "{e}");
        let e = parse("stream|from()#").unwrap_err();
        assert!(e.reason.contains("unexpected character"), "{e}");
    }

    #[test]
    fn lambdas_end_at_their_argument() {
        let s = parse(
            "var l = lambda: \"a\" / 2 > (1 + sigma(\"b\"))\nstream|alert().crit(lambda: \"v\" > 9, ).warn(lambda: \"r\" =~ /a)b/)",
        );
        // a trailing comma is an error in TICKscript as well
        assert!(s.is_err());
        let s = parse(
            "var l = lambda: \"a\" / 2 > (1 + sigma(\"b\"))\nstream|alert().crit(l).warn(lambda: \"r\" =~ /a)b/)",
        )
        .unwrap();
        assert_eq!(
            s.nodes[1].last("crit").unwrap(),
            &[Value::Lambda("\"a\" / 2 > (1 + sigma(\"b\"))".into())]
        );
        assert_eq!(
            s.nodes[1].last("warn").unwrap(),
            &[Value::Lambda("\"r\" =~ /a)b/".into())]
        );
    }

    proptest::proptest! {
        /// Whatever the bytes, the parser answers with a value or an error, never a panic.
        #[test]
        fn never_panics(s in "(?s).{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_near_misses(s in "[a-z'\"/\\|@.(),=:*0-9 \n#µ_-]{0,120}") {
            let _ = parse(&s);
        }
    }
}
