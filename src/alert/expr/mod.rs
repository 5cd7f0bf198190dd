//! TICKscript lambda expressions: the level expressions (`crit`, `warnReset`
//! …) of `@pagertree()`, compiled once at Init and evaluated per point with
//! Kapacitor's semantics (`tick/ast` and `tick/stateful`, restated).
//!
//! This module owns the language: the lexer and parser ([`parse`]), the tree
//! and its printing ([`Node`]), the typing rules and evaluator, the built-in
//! functions, and Go-RE2 regexes on the `regex` crate ([`GoRegex`]).
//!
//! The language: `"field"` references, `'strings'` (and `'''raw'''`), ints
//! (a leading `0` is octal, as in Kapacitor), floats, durations (`5m`,
//! `10ms`), `TRUE`/`FALSE`, regexes `/…/` with `=~` and `!~`, `+ - * / %`,
//! comparisons, `AND`/`OR`, unary `!` and `-`, parentheses, and calls of the
//! built-in functions. Precedence, loosest first: `OR`, `AND`,
//! `== != =~ !~`, `< <= > >=`, `+ -`, `* / %`; all left-associative.
//!
//! Stateful functions (`sigma`, `count`, `spread`, `rand`) keep one state per
//! compiled [`Expr`] and function name: two `sigma()` calls in one expression
//! share it, as in Kapacitor; a nested lambda (trees built by hand only) has
//! its own.
//!
//! Where this differs from Kapacitor, knowingly:
//! - an unknown function fails at compile time (Kapacitor fails each
//!   evaluation), so a typo is an Init error;
//! - expressions are limited to [`MAX_TOKENS`] tokens and
//!   [`MAX_DEPTH`] levels of nesting (no stack overflow on hostile
//!   input);
//! - Kapacitor caches a binary node's operand types, and after one type
//!   mismatch an arithmetic node nested in a comparison keeps failing even
//!   when later points have the right types; here every evaluation is typed
//!   afresh;
//! - the math functions answer as Go does bit for bit (checked against Go
//!   1.19: tests/go_functions.rs over tests/data/go_functions.json), except
//!   `exp` (Go's amd64 assembly; here the platform's), `erfc` and the Bessel functions (from `libm`), which
//!   may differ in the last bits, as may what goes through
//!   `exp` (`pow` with a fractional exponent, `sinh`, `cosh`, `tanh`), and
//!   the logarithm of a subnormal number (Go's assembly mishandles those);
//! - a regex that repeats a flag group (`a(?i)*`, which Go reads as `a*`
//!   with the flag set) is refused;
//! - `float('0x1p-2')` (Go's hexadecimal float syntax) is refused;
//!   `strSubstring` cutting through a UTF-8 character keeps the valid part;
//!   `strToUpper`/`strToLower` use single-character mappings (as Go) but keep
//!   a character whose only mapping is to several (`ß`), where Go has a
//!   few more one-to-one special cases.

mod ast;
mod eval;
mod functions;
mod parser;
mod regex;
mod value;

use std::sync::Arc;

pub use ast::{Literal, Node, Op, format_duration};
pub use parser::{MAX_DEPTH, MAX_TOKENS, ParseError, duration_unit_nanos, parse};
pub use regex::{GoRegex, RegexError};
pub use value::{Type, Value, ValueRef};

use eval::{CNode, Ctx};
use functions::{Func, FuncState};
use value::Val;

/// What an expression reads: the values of the names it references, and the
/// point's time.
///
/// How Kapacitor's alert node fills its scope (`fillScope` in `expr.go`), and
/// so how an implementation must answer:
/// - the name `time` is always the point's time (as a time value for
///   `hour()`, `unixNano()` …): the evaluator asks [`Scope::time`] for it and
///   never looks `time` up, even when the point has a field called `time`;
/// - otherwise a field of that name, else a tag of that name;
/// - a name that is **both** a field and a tag is not resolved in favour of
///   either: Kapacitor fails the evaluation (`cannot have field and tags with
///   same name "x"`) — return [`ValueRef::Ambiguous`];
/// - a name that is neither is *missing* — return `None`: comparisons and
///   arithmetic on it fail (the level counts as not matched), `isPresent()`
///   is false.
pub trait Scope {
    /// The value of a field or tag of the point.
    fn lookup(&self, name: &str) -> Option<ValueRef<'_>>;
    /// The point's time, nanoseconds since the epoch.
    fn time(&self) -> i64;
}

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// `cannot parse '"value" >> 90' at column 10: unexpected '>'`.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// It parses but Kapacitor would refuse it: an unknown function, a bare
    /// identifier, `5 + 5.0` (a type error between constants) …
    #[error("cannot compile '{src}': {msg}")]
    Compile { src: String, msg: String },
}

/// Why an evaluation failed; the text follows Kapacitor's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct EvalError {
    msg: String,
}

impl EvalError {
    pub(crate) fn new(msg: impl Into<String>) -> EvalError {
        EvalError { msg: msg.into() }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

/// One compiled lambda expression. It owns the state of its stateful
/// functions, so each level expression of a node is one `Expr` (Kapacitor
/// shares that state across all groups of the node).
#[derive(Debug, Clone)]
pub struct Expr {
    src: String,
    ast: Node,
    root: CNode,
    /// Index 0: the expression's own function state; then one per nested
    /// lambda.
    states: Vec<FuncState>,
    references: Vec<String>,
    uses_now: bool,
}

fn uses_now(n: &Node) -> bool {
    match n {
        Node::Call { name, args } => name == "now" || args.iter().any(uses_now),
        Node::Unary { node, .. } | Node::Lambda(node) => uses_now(node),
        Node::Binary { left, right, .. } => uses_now(left) || uses_now(right),
        Node::Literal(_) | Node::Ref(_) | Node::Ident(_) => false,
    }
}

fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Expr {
    /// Parses and compiles a lambda body (the text Kapacitor writes after
    /// `lambda:`).
    pub fn compile(src: &str) -> Result<Expr, ExprError> {
        let ast = parse(src)?;
        Expr::build(src.to_string(), ast)
    }

    /// Compiles a tree built by hand. For tests and tools: it is how trees
    /// with no TICKscript spelling (a 5 ns duration, a nested lambda) are
    /// compiled.
    pub fn from_ast(ast: Node) -> Result<Expr, ExprError> {
        if parser::depth(&ast) > parser::MAX_DEPTH {
            let msg = format!(
                "expression nested too deeply: more than {} levels",
                parser::MAX_DEPTH
            );
            return Err(ExprError::Compile {
                src: String::new(),
                msg,
            });
        }
        Expr::build(ast.to_string(), ast)
    }

    fn build(src: String, ast: Node) -> Result<Expr, ExprError> {
        let mut lambdas = 0;
        let root = eval::compile(&ast, &mut lambdas).map_err(|msg| ExprError::Compile {
            // Cut like a parse error's echo: the message names the culprit.
            src: parser::excerpt(&src, 0),
            msg: parser::excerpt(&msg, 0),
        })?;
        Ok(Expr {
            references: ast.references(),
            uses_now: uses_now(&ast),
            states: vec![FuncState::default(); lambdas + 1],
            src,
            ast,
            root,
        })
    }

    /// The text it was compiled from (or the printed tree).
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The parsed tree.
    pub fn ast(&self) -> &Node {
        &self.ast
    }

    fn eval_val<'a>(&'a mut self, scope: &'a dyn Scope) -> Result<Val<'a>, EvalError> {
        let now = if self.uses_now { wall_clock_ns() } else { 0 };
        let mut ctx = Ctx {
            scope,
            states: &mut self.states,
            now,
        };
        eval::eval(&self.root, &mut ctx, 0)
    }

    /// Evaluates as a level expression does: the result must be a boolean.
    pub fn eval_bool(&mut self, scope: &dyn Scope) -> Result<bool, EvalError> {
        match self.eval_val(scope)? {
            Val::Bool(b) => Ok(b),
            Val::Missing => Err(missing(&self.root)),
            other => Err(EvalError::new(format!(
                "TypeGuard: expression returned unexpected type {}, expected boolean",
                other
                    .typ()
                    .map_or("invalid type".to_string(), |t| t.to_string())
            ))),
        }
    }

    /// Evaluates to any value, as Kapacitor's `Eval`: an int, float, string,
    /// boolean or duration; a missing name, a regex or a time is an error.
    pub fn eval(&mut self, scope: &dyn Scope) -> Result<Value, EvalError> {
        let v = self.eval_val(scope)?;
        match v {
            Val::Missing => Err(missing(&self.root)),
            Val::Regex(_) | Val::Time(_) | Val::Nil => Err(EvalError::new(format!(
                "expression returned unexpected type {}",
                v.typ()
                    .map_or("invalid type".to_string(), |t| t.to_string())
            ))),
            v => Ok(v.to_value(|r| Arc::new(r.clone()))),
        }
    }

    /// Evaluates and requires the result to have type `want`, as Kapacitor's
    /// typed `EvalInt`, `EvalFloat` … do (no conversion: an int is not a
    /// float).
    pub fn eval_as(&mut self, scope: &dyn Scope, want: Type) -> Result<Value, EvalError> {
        let v = self.eval_val(scope)?;
        match v.typ() {
            Some(t) if t == want => Ok(v.to_value(|r| Arc::new(r.clone()))),
            Some(Type::Missing) => Err(missing(&self.root)),
            got => Err(EvalError::new(format!(
                "TypeGuard: expression returned unexpected type {}, expected {want}",
                got.map_or("invalid type".to_string(), |t| t.to_string())
            ))),
        }
    }

    /// Resets the stateful functions, as Kapacitor's `Reset` does: the
    /// expression's own state only (a nested lambda keeps its state, in
    /// Kapacitor too).
    pub fn reset(&mut self) {
        if let Some(st) = self.states.first_mut() {
            st.reset();
        }
    }

    /// The field/tag names the expression references, first occurrence
    /// first (`time` included when referenced).
    pub fn references(&self) -> Vec<String> {
        self.references.clone()
    }
}

fn missing(root: &CNode) -> EvalError {
    match root {
        CNode::Ref(name) => EvalError::new(format!("missing value: \"{name}\"")),
        _ => EvalError::new("expression returned a missing value"),
    }
}

/// Calls a built-in function directly with argument values, as Kapacitor's
/// Go-level `f.Call(args…)` does: no signature check, the function's own
/// argument checks. Stateful functions start from a fresh state. For tests
/// and tools.
pub fn call_function(name: &str, args: &[Value]) -> Result<Value, EvalError> {
    let func = Func::lookup(name)
        .ok_or_else(|| EvalError::new(format!("undefined function: \"{name}\"")))?;
    let mut vals: Vec<Val<'_>> = args.iter().map(Value::as_val).collect();
    let mut st = FuncState::default();
    let out = func
        .call(&mut vals, &mut st, wall_clock_ns())
        .map_err(EvalError::new)?;
    Ok(out.to_value(|r| Arc::new(r.clone())))
}

/// The names of all built-in functions.
pub fn function_names() -> Vec<&'static str> {
    functions::names().collect()
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
