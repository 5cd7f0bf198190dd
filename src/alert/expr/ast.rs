//! The syntax tree of a lambda expression, and its printing back to
//! TICKscript ([`Node`]'s `Display`), which re-parses to an equal tree.

use std::fmt::{self, Write as _};

/// An operator of the lambda language, as Kapacitor's lexer names them. One
/// enum for unary and binary operators because Kapacitor's tree stores either
/// kind as a token type: a tree built by hand (see [`super::Expr::from_ast`])
/// may put a binary operator in a unary node, and compiling it must fail the
/// way Kapacitor fails (`Invalid unary operator: "AND"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Plus,
    Minus,
    Mult,
    Div,
    Mod,
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    RegexEq,
    RegexNe,
    Not,
}

impl Op {
    /// Every operator, for lookups by text.
    pub const ALL: [Op; 16] = [
        Op::Plus,
        Op::Minus,
        Op::Mult,
        Op::Div,
        Op::Mod,
        Op::And,
        Op::Or,
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Gt,
        Op::Le,
        Op::Ge,
        Op::RegexEq,
        Op::RegexNe,
        Op::Not,
    ];

    /// The operator's TICKscript spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Plus => "+",
            Op::Minus => "-",
            Op::Mult => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::And => "AND",
            Op::Or => "OR",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
            Op::RegexEq => "=~",
            Op::RegexNe => "!~",
            Op::Not => "!",
        }
    }

    /// The operator spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Kapacitor's binding strength (`tick/ast/parser.go`): OR 0, AND 1,
    /// equality and regex matches 2, ordering 3, `+ -` 4, `* / %` 5.
    /// `None` for `!`, which is not a binary operator.
    pub fn precedence(self) -> Option<u8> {
        Some(match self {
            Op::Or => 0,
            Op::And => 1,
            Op::Eq | Op::Ne | Op::RegexEq | Op::RegexNe => 2,
            Op::Gt | Op::Ge | Op::Lt | Op::Le => 3,
            Op::Plus | Op::Minus => 4,
            Op::Mult | Op::Div | Op::Mod => 5,
            Op::Not => return None,
        })
    }

    /// `+ - * / %`.
    pub fn is_math(self) -> bool {
        matches!(self, Op::Plus | Op::Minus | Op::Mult | Op::Div | Op::Mod)
    }

    /// `AND OR`.
    pub fn is_logical(self) -> bool {
        matches!(self, Op::And | Op::Or)
    }

    /// `== != < > <= >= =~ !~`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            Op::Eq | Op::Ne | Op::Lt | Op::Gt | Op::Le | Op::Ge | Op::RegexEq | Op::RegexNe
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A literal value written in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Int(i64),
    Float(f64),
    String(String),
    Bool(bool),
    /// Nanoseconds.
    Duration(i64),
    /// A Go RE2 pattern (the text between the slashes, `\/` already unescaped).
    Regex(String),
}

/// One node of a lambda expression's tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Literal(Literal),
    /// A double-quoted field or tag name: `"value"`.
    Ref(String),
    /// A bare identifier that is not a function call. It parses (Kapacitor's
    /// parser accepts it) but does not compile.
    Ident(String),
    Unary {
        op: Op,
        node: Box<Node>,
    },
    Binary {
        op: Op,
        left: Box<Node>,
        right: Box<Node>,
    },
    Call {
        name: String,
        args: Vec<Node>,
    },
    /// A nested lambda: its stateful functions keep their own state. There is
    /// no TICKscript spelling for it inside a lambda; trees built by hand only.
    Lambda(Box<Node>),
}

impl Node {
    /// Shorthand for tests and tools.
    pub fn binary(op: Op, left: Node, right: Node) -> Node {
        Node::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    /// Shorthand for tests and tools.
    pub fn unary(op: Op, node: Node) -> Node {
        Node::Unary {
            op,
            node: Box::new(node),
        }
    }

    /// Every field/tag name the tree references, first occurrence first.
    pub fn references(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs(&self, out: &mut Vec<String>) {
        match self {
            Node::Ref(name) => {
                if !out.iter().any(|n| n == name) {
                    out.push(name.clone());
                }
            }
            Node::Literal(_) | Node::Ident(_) => {}
            Node::Unary { node, .. } | Node::Lambda(node) => node.collect_refs(out),
            Node::Binary { left, right, .. } => {
                left.collect_refs(out);
                right.collect_refs(out);
            }
            Node::Call { args, .. } => args.iter().for_each(|a| a.collect_refs(out)),
        }
    }
}

/// Formats a float as Kapacitor's formatter writes number literals:
/// shortest round-trip digits, never an exponent, always a decimal point.
pub(crate) fn float_literal(f: f64) -> String {
    let mut s = format!("{f}");
    if !s.contains('.') && f.is_finite() {
        s.push_str(".0");
    }
    s
}

/// Formats nanoseconds as influxql's `FormatDuration`: the largest unit that
/// divides the value exactly (`w d h m s ms u`), else nanoseconds.
pub fn format_duration(d: i64) -> String {
    const UNITS: [(i64, &str); 7] = [
        (7 * 24 * 3_600_000_000_000, "w"),
        (24 * 3_600_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "u"),
    ];
    if d == 0 {
        return "0s".to_string();
    }
    for (unit, name) in UNITS {
        if d % unit == 0 {
            return format!("{}{name}", d / unit);
        }
    }
    format!("{d}ns")
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => f.write_str(&float_literal(*x)),
            // A trailing backslash would escape the closing quote: such a
            // string (a `'''raw'''` literal can hold one) prints raw.
            Literal::String(s) if s.ends_with('\\') && !s.contains("'''") => {
                write!(f, "'''{s}'''")
            }
            Literal::String(s) => {
                f.write_char('\'')?;
                for c in s.chars() {
                    if c == '\'' {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('\'')
            }
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Duration(d) => f.write_str(&format_duration(*d)),
            Literal::Regex(p) => {
                f.write_char('/')?;
                for c in p.chars() {
                    if c == '/' {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('/')
            }
        }
    }
}

impl Node {
    /// Writes `child` of a binary node with operator `parent`, in parentheses
    /// when the parser would otherwise group it differently (Kapacitor's
    /// operators are left-associative).
    fn fmt_operand(
        child: &Node,
        parent: Op,
        right: bool,
        f: &mut fmt::Formatter<'_>,
    ) -> fmt::Result {
        if let Node::Binary { op, .. } = child {
            let (cp, pp) = (
                op.precedence().unwrap_or(0),
                parent.precedence().unwrap_or(0),
            );
            if cp < pp || (right && cp == pp) {
                return write!(f, "({child})");
            }
        }
        // After a regex literal Kapacitor's lexer expects an operand, so only
        // the keyword operators may follow one unparenthesized.
        if !right && !parent.is_logical() && child.ends_with_regex() {
            return write!(f, "({child})");
        }
        // After the keywords `AND`/`OR` it expects an operator, so `/` there
        // is a division, not the start of a regex.
        if right && parent.is_logical() && child.starts_with_regex() {
            return write!(f, "({child})");
        }
        write!(f, "{child}")
    }

    /// Whether the printed text starts with a regex literal.
    fn starts_with_regex(&self) -> bool {
        match self {
            Node::Literal(Literal::Regex(_)) => true,
            Node::Binary { op, left, .. } => {
                let parenthesized = matches!(&**left, Node::Binary { op: lop, .. } if lop.precedence() < op.precedence())
                    || (!op.is_logical() && left.ends_with_regex());
                !parenthesized && left.starts_with_regex()
            }
            Node::Lambda(node) => node.starts_with_regex(),
            _ => false,
        }
    }

    /// Whether the printed text ends with a regex literal.
    fn ends_with_regex(&self) -> bool {
        match self {
            Node::Literal(Literal::Regex(_)) => true,
            Node::Unary { node, .. } => {
                !matches!(**node, Node::Binary { .. }) && node.ends_with_regex()
            }
            // A binary's right operand ends its text unless it is parenthesized.
            Node::Binary { op, right, .. } => match &**right {
                Node::Binary { op: rop, .. } if rop.precedence() <= op.precedence() => false,
                r => r.ends_with_regex(),
            },
            Node::Lambda(node) => node.ends_with_regex(),
            _ => false,
        }
    }
}

impl fmt::Display for Node {
    /// TICKscript text that parses back to this tree. Not every tree has one:
    /// a negative number literal prints as `-5`, which parses as unary minus,
    /// and a duration that is not a whole number of microseconds prints as
    /// `5ns`, which the lexer does not accept, an empty regex prints as `//`,
    /// which starts a comment, and a string that ends in a backslash and
    /// contains `'''` cannot be quoted (Kapacitor has the same limits).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Literal(l) => write!(f, "{l}"),
            Node::Ref(name) => {
                f.write_char('"')?;
                for c in name.chars() {
                    if c == '"' {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('"')
            }
            Node::Ident(name) => f.write_str(name),
            Node::Unary { op, node } => {
                write!(f, "{op}")?;
                match **node {
                    Node::Binary { .. } => write!(f, "({node})"),
                    _ => write!(f, "{node}"),
                }
            }
            Node::Binary { op, left, right } => {
                Node::fmt_operand(left, *op, false, f)?;
                write!(f, " {op} ")?;
                Node::fmt_operand(right, *op, true, f)
            }
            Node::Call { name, args } => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_char(')')
            }
            Node::Lambda(node) => write!(f, "lambda: {node}"),
        }
    }
}
