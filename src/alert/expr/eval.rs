//! The compiled form of an expression and its evaluation, with Kapacitor's
//! typing rules (`tick/stateful`, restated):
//! - the operator table: which (operator, left type, right type) exist and
//!   what they produce (comparison promotes int to float; arithmetic does
//!   not mix int and float; `%` is int-only; durations scale by numbers);
//! - a binary node whose operands are both constant-typed is checked at
//!   compile time (`5 + 5.0` does not compile);
//! - types are checked before values are computed where it is observable:
//!   `AND`/`OR` refuse a non-boolean right side even when they would
//!   short-circuit, and a function's signature is checked before its
//!   arguments run (so stateful functions do not advance on a type error).

use std::borrow::Cow;
use std::sync::Arc;

use super::EvalError;
use super::Scope;
use super::ast::{Literal, Node, Op};
use super::functions::{Func, FuncState, MAX_ARGS};
use super::regex::GoRegex;
use super::value::{Type, Val, ValueRef, go_f64_to_i64};

/// A literal, ready to lend.
#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Duration(i64),
    Regex(Arc<GoRegex>),
}

#[derive(Debug, Clone)]
pub(crate) enum CNode {
    Lit(Lit),
    Ref(String),
    /// `op` is `Minus` or `Not`.
    Unary {
        op: Op,
        node: Box<CNode>,
    },
    Binary {
        op: Op,
        left: Box<CNode>,
        right: Box<CNode>,
        has_call: bool,
    },
    Call {
        func: Func,
        args: Vec<CNode>,
        args_have_calls: bool,
    },
    /// A nested lambda with its own function state (index into the states).
    Lambda {
        node: Box<CNode>,
        state: usize,
    },
}

impl CNode {
    fn has_call(&self) -> bool {
        match self {
            CNode::Lit(_) | CNode::Ref(_) => false,
            CNode::Unary { node, .. } | CNode::Lambda { node, .. } => node.has_call(),
            CNode::Binary { has_call, .. } => *has_call,
            CNode::Call { .. } => true,
        }
    }

    /// Kapacitor's `getConstantNodeType`: the type known without a scope.
    fn const_type(&self) -> Option<Type> {
        match self {
            CNode::Lit(l) => Some(lit_type(l)),
            CNode::Ref(_) | CNode::Call { .. } => None,
            CNode::Unary { op: Op::Not, .. } => Some(Type::Bool),
            CNode::Unary { node, .. } | CNode::Lambda { node, .. } => node.const_type(),
            CNode::Binary {
                op, left, right, ..
            } => {
                if op.is_comparison() || op.is_logical() {
                    Some(Type::Bool)
                } else {
                    binary_type(*op, left.const_type()?, right.const_type()?)
                }
            }
        }
    }

    /// Kapacitor's `IsDynamic`: whether the type depends on the scope.
    fn is_dynamic(&self) -> bool {
        match self {
            CNode::Lit(_) => false,
            CNode::Ref(_) | CNode::Call { .. } => true,
            CNode::Unary { node, .. } => self.const_type().is_none() && node.is_dynamic(),
            CNode::Lambda { node, .. } => node.is_dynamic(),
            CNode::Binary { left, right, .. } => {
                self.const_type().is_none() && (left.is_dynamic() || right.is_dynamic())
            }
        }
    }
}

fn lit_type(l: &Lit) -> Type {
    match l {
        Lit::Int(_) => Type::Int,
        Lit::Float(_) => Type::Float,
        Lit::Str(_) => Type::String,
        Lit::Bool(_) => Type::Bool,
        Lit::Duration(_) => Type::Duration,
        Lit::Regex(_) => Type::Regex,
    }
}

/// Kapacitor's operator table: the result type of `left op right`, if the
/// combination exists.
pub(crate) fn binary_type(op: Op, l: Type, r: Type) -> Option<Type> {
    use Type::*;
    let cmp = matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Gt | Op::Le | Op::Ge);
    let eq = matches!(op, Op::Eq | Op::Ne);
    Some(match (op, l, r) {
        (Op::And | Op::Or, Bool, Bool) => Bool,
        (_, Bool, Bool) if eq => Bool,
        (_, Float | Int, Float | Int) if cmp => Bool,
        (_, String, String) if cmp => Bool,
        (_, Duration, Duration) if cmp => Bool,
        (Op::RegexEq | Op::RegexNe, String, Regex) => Bool,
        (Op::Plus | Op::Minus | Op::Mult | Op::Div, Float, Float) => Float,
        (Op::Plus | Op::Minus | Op::Mult | Op::Div | Op::Mod, Int, Int) => Int,
        (Op::Plus | Op::Minus, Duration, Duration) => Duration,
        (Op::Div, Duration, Duration) => Int,
        (Op::Mult, Duration, Int | Float) | (Op::Mult, Int | Float, Duration) => Duration,
        (Op::Div, Duration, Int | Float) => Duration,
        (Op::Plus, String, String) => String,
        _ => return None,
    })
}

/// Kapacitor's `typeToBinaryOperators`: the operators a type takes part in.
fn type_has_op(t: Type, op: Op) -> bool {
    use Type::*;
    match t {
        Bool => matches!(op, Op::And | Op::Or | Op::Eq | Op::Ne),
        Float => matches!(
            op,
            Op::Lt
                | Op::Le
                | Op::Gt
                | Op::Ge
                | Op::Eq
                | Op::Ne
                | Op::Plus
                | Op::Minus
                | Op::Mult
                | Op::Div
        ),
        // Int has every float operator, and `%`.
        Int => op == Op::Mod || type_has_op(Float, op),
        String => {
            matches!(
                op,
                Op::Lt
                    | Op::Le
                    | Op::Gt
                    | Op::Ge
                    | Op::Eq
                    | Op::Ne
                    | Op::RegexEq
                    | Op::RegexNe
                    | Op::Plus
            )
        }
        Regex => matches!(op, Op::RegexEq | Op::RegexNe),
        Duration => matches!(
            op,
            Op::Lt
                | Op::Le
                | Op::Gt
                | Op::Ge
                | Op::Eq
                | Op::Ne
                | Op::Plus
                | Op::Minus
                | Op::Mult
                | Op::Div
        ),
        Time | Missing => false,
    }
}

fn op_kind(op: Op) -> &'static str {
    if op.is_math() {
        "math"
    } else if op.is_comparison() {
        "comparison"
    } else if op.is_logical() {
        "logical"
    } else {
        "INVALID"
    }
}

fn ref_name(n: &CNode) -> &str {
    match n {
        CNode::Ref(name) => name,
        _ => "",
    }
}

/// Kapacitor's `determineError` for a combination the table lacks.
fn type_error(op: Op, lt: Option<Type>, rt: Option<Type>, left: &CNode, right: &CNode) -> String {
    if lt == Some(Type::Missing) {
        return format!(
            "left reference value \"{}\" is missing value",
            ref_name(left)
        );
    }
    if rt == Some(Type::Missing) {
        return format!(
            "right reference value \"{}\" is missing value",
            ref_name(right)
        );
    }
    let name = |t: Option<Type>| t.map_or("invalid type".to_string(), |t| t.to_string());
    if let Some(l) = lt
        && !type_has_op(l, op)
    {
        return format!("invalid {} operator {op} for type {l}", op_kind(op));
    }
    format!(
        "mismatched type to binary operator. got {} {op} {}. see bool(), int(), float(), string(), duration()",
        name(lt),
        name(rt)
    )
}

/// Builds the compiled tree; `lambdas` counts nested lambdas (state 0 is the
/// expression's own).
pub(crate) fn compile(node: &Node, lambdas: &mut usize) -> Result<CNode, String> {
    Ok(match node {
        Node::Literal(l) => CNode::Lit(match l {
            Literal::Int(i) => Lit::Int(*i),
            Literal::Float(f) => Lit::Float(*f),
            Literal::String(s) => Lit::Str(s.clone()),
            Literal::Bool(b) => Lit::Bool(*b),
            Literal::Duration(d) => Lit::Duration(*d),
            Literal::Regex(p) => Lit::Regex(Arc::new(GoRegex::new(p).map_err(|e| e.to_string())?)),
        }),
        Node::Ref(name) => CNode::Ref(name.clone()),
        Node::Ident(name) => {
            return Err(format!(
                "unknown identifier {name}: field and tag names must be double-quoted (\"{name}\"), strings single-quoted"
            ));
        }
        Node::Unary { op, node } => {
            if !matches!(op, Op::Minus | Op::Not) {
                return Err(format!("Invalid unary operator: \"{op}\""));
            }
            CNode::Unary {
                op: *op,
                node: Box::new(compile(node, lambdas)?),
            }
        }
        Node::Binary { op, left, right } => {
            if *op == Op::Not {
                return Err(format!("unknown binary operator {op}"));
            }
            let (l, r) = (compile(left, lambdas)?, compile(right, lambdas)?);
            if !l.is_dynamic() && !r.is_dynamic() {
                let (lt, rt) = (l.const_type(), r.const_type());
                let ok = matches!((lt, rt), (Some(a), Some(b)) if binary_type(*op, a, b).is_some());
                if !ok {
                    return Err(type_error(*op, lt, rt, &l, &r));
                }
            }
            let has_call = l.has_call() || r.has_call();
            CNode::Binary {
                op: *op,
                left: Box::new(l),
                right: Box::new(r),
                has_call,
            }
        }
        Node::Call { name, args } => {
            let func =
                Func::lookup(name).ok_or_else(|| format!("undefined function: \"{name}\""))?;
            if args.len() > MAX_ARGS {
                return Err(format!(
                    "too many arguments to {name}: at most {MAX_ARGS} are allowed"
                ));
            }
            let args = args
                .iter()
                .map(|a| compile(a, lambdas))
                .collect::<Result<Vec<_>, _>>()?;
            let args_have_calls = args.iter().any(CNode::has_call);
            CNode::Call {
                func,
                args,
                args_have_calls,
            }
        }
        Node::Lambda(node) => {
            *lambdas += 1;
            let state = *lambdas;
            CNode::Lambda {
                node: Box::new(compile(node, lambdas)?),
                state,
            }
        }
    })
}

/// What evaluation needs besides the tree: the point, the function states,
/// the wall clock for `now()`.
pub(crate) struct Ctx<'s, 'a> {
    pub(crate) scope: &'a dyn Scope,
    pub(crate) states: &'s mut [FuncState],
    pub(crate) now: i64,
}

fn lookup<'a>(name: &str, scope: &'a dyn Scope) -> Result<Val<'a>, EvalError> {
    if name == "time" {
        return Ok(Val::Time(scope.time()));
    }
    Ok(match scope.lookup(name) {
        None => Val::Missing,
        Some(ValueRef::Int(i)) => Val::Int(i),
        Some(ValueRef::Float(f)) => Val::Float(f),
        Some(ValueRef::Str(s)) => Val::Str(Cow::Borrowed(s)),
        Some(ValueRef::Bool(b)) => Val::Bool(b),
        Some(ValueRef::Nil) => {
            return Err(EvalError::new(format!(
                "referenced value \"{name}\" is nil."
            )));
        }
        Some(ValueRef::Ambiguous) => {
            return Err(EvalError::new(format!(
                "cannot have field and tags with same name \"{name}\""
            )));
        }
    })
}

fn signature_error(func: &Func, types: &[Type], args: &[CNode]) -> EvalError {
    let missing: Vec<String> = types
        .iter()
        .zip(args)
        .filter(|(t, _)| **t == Type::Missing)
        .map(|(_, a)| format!("\"{}\"", ref_name(a)))
        .collect();
    if !missing.is_empty() {
        let (noun, verb) = if missing.len() > 1 {
            ("arguments", "are")
        } else {
            ("argument", "is")
        };
        return EvalError::new(format!(
            "Cannot call function \"{}\" {noun} {} {verb} missing",
            func.name,
            missing.join(", ")
        ));
    }
    let list: Vec<String> = types.iter().map(Type::to_string).collect();
    EvalError::new(format!(
        "Cannot call function \"{}\" with args ({})",
        func.name,
        list.join(",")
    ))
}

/// Kapacitor's `Type(scope)`: the type a node will produce, computed without
/// calling any function.
pub(crate) fn type_of(n: &CNode, scope: &dyn Scope) -> Result<Type, EvalError> {
    Ok(match n {
        CNode::Lit(l) => lit_type(l),
        CNode::Ref(name) => match lookup(name, scope)?.typ() {
            Some(t) => t,
            None => {
                return Err(EvalError::new(format!(
                    "referenced value \"{name}\" is nil."
                )));
            }
        },
        CNode::Unary { op: Op::Not, .. } => Type::Bool,
        CNode::Unary { node, .. } | CNode::Lambda { node, .. } => type_of(node, scope)?,
        CNode::Binary {
            op, left, right, ..
        } => {
            if op.is_comparison() || op.is_logical() {
                Type::Bool
            } else {
                let (lt, rt) = (type_of(left, scope)?, type_of(right, scope)?);
                binary_type(*op, lt, rt).ok_or_else(|| {
                    EvalError::new(type_error(*op, Some(lt), Some(rt), left, right))
                })?
            }
        }
        CNode::Call { func, args, .. } => {
            let mut types = [Type::Missing; MAX_ARGS];
            for (i, a) in args.iter().enumerate() {
                types[i] = type_of(a, scope).map_err(|e| {
                    EvalError::new(format!("Failed to handle {} argument: {e}", i + 1))
                })?;
            }
            let types = &types[..args.len()];
            func.signature(types)
                .ok_or_else(|| signature_error(func, types, args))?
        }
    })
}

fn divide_by_zero() -> EvalError {
    EvalError::new("runtime error: integer divide by zero")
}

/// `left op right` on values whose combination the table has; the caller
/// reports other combinations.
fn apply<'a>(op: Op, l: &Val<'a>, r: &Val<'a>) -> Result<Option<Val<'a>>, EvalError> {
    use Val::*;
    let b = |x: bool| Ok(Some(Bool(x)));
    fn cmp<T: PartialOrd>(op: Op, a: T, b: T) -> bool {
        match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Gt => a > b,
            Op::Le => a <= b,
            Op::Ge => a >= b,
            _ => false,
        }
    }
    let is_cmp = matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Gt | Op::Le | Op::Ge);
    match (l, r) {
        (Bool(x), Bool(y)) if matches!(op, Op::Eq | Op::Ne) => b(cmp(op, x, y)),
        (Float(x), Float(y)) if is_cmp => b(cmp(op, *x, *y)),
        (Int(x), Int(y)) if is_cmp => b(cmp(op, *x, *y)),
        (Float(x), Int(y)) if is_cmp => b(cmp(op, *x, *y as f64)),
        (Int(x), Float(y)) if is_cmp => b(cmp(op, *x as f64, *y)),
        (Str(x), Str(y)) if is_cmp => b(cmp(op, x.as_ref(), y.as_ref())),
        (Duration(x), Duration(y)) if is_cmp => b(cmp(op, *x, *y)),
        (Str(s), Regex(re)) if op == Op::RegexEq => b(re.is_match(s)),
        (Str(s), Regex(re)) if op == Op::RegexNe => b(!re.is_match(s)),
        (Float(x), Float(y)) => Ok(match op {
            Op::Plus => Some(Float(x + y)),
            Op::Minus => Some(Float(x - y)),
            Op::Mult => Some(Float(x * y)),
            Op::Div => Some(Float(x / y)),
            _ => None,
        }),
        (Int(x), Int(y)) => Ok(match op {
            Op::Plus => Some(Int(x.wrapping_add(*y))),
            Op::Minus => Some(Int(x.wrapping_sub(*y))),
            Op::Mult => Some(Int(x.wrapping_mul(*y))),
            Op::Div if *y == 0 => return Err(divide_by_zero()),
            Op::Div => Some(Int(x.wrapping_div(*y))),
            Op::Mod if *y == 0 => return Err(divide_by_zero()),
            Op::Mod => Some(Int(x.wrapping_rem(*y))),
            _ => None,
        }),
        (Duration(x), Duration(y)) => Ok(match op {
            Op::Plus => Some(Duration(x.wrapping_add(*y))),
            Op::Minus => Some(Duration(x.wrapping_sub(*y))),
            Op::Div if *y == 0 => return Err(divide_by_zero()),
            Op::Div => Some(Int(x.wrapping_div(*y))),
            _ => None,
        }),
        (Duration(d), Int(i)) | (Int(i), Duration(d)) if op == Op::Mult => {
            Ok(Some(Duration(d.wrapping_mul(*i))))
        }
        (Duration(d), Float(f)) | (Float(f), Duration(d)) if op == Op::Mult => {
            Ok(Some(Duration(go_f64_to_i64(*d as f64 * f))))
        }
        (Duration(d), Int(i)) if op == Op::Div => {
            if *i == 0 {
                return Err(divide_by_zero());
            }
            Ok(Some(Duration(d.wrapping_div(*i))))
        }
        (Duration(d), Float(f)) if op == Op::Div => {
            Ok(Some(Duration(go_f64_to_i64(*d as f64 / f))))
        }
        (Str(x), Str(y)) if op == Op::Plus => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(Some(Str(Cow::Owned(s))))
        }
        _ => Ok(None),
    }
}

fn guard(want: Type, got: &Val<'_>) -> EvalError {
    let got = got
        .typ()
        .map_or("invalid type".to_string(), |t| t.to_string());
    EvalError::new(format!(
        "TypeGuard: expression returned unexpected type {got}, expected {want}"
    ))
}

/// Evaluates `n` against the scope in `ctx`, with the function state `state`.
pub(crate) fn eval<'a>(
    n: &'a CNode,
    ctx: &mut Ctx<'_, 'a>,
    state: usize,
) -> Result<Val<'a>, EvalError> {
    match n {
        CNode::Lit(l) => Ok(match l {
            Lit::Int(i) => Val::Int(*i),
            Lit::Float(f) => Val::Float(*f),
            Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Duration(d) => Val::Duration(*d),
            Lit::Regex(r) => Val::Regex(r),
        }),
        CNode::Ref(name) => lookup(name, ctx.scope),
        CNode::Unary { op, node } => {
            let v = eval(node, ctx, state)?;
            match (op, v) {
                (Op::Not, Val::Bool(b)) => Ok(Val::Bool(!b)),
                (Op::Not, v) => Err(guard(Type::Bool, &v)),
                (_, Val::Int(i)) => Ok(Val::Int(i.wrapping_neg())),
                (_, Val::Float(f)) => Ok(Val::Float(-f)),
                (_, Val::Duration(d)) => Ok(Val::Duration(d.wrapping_neg())),
                // Kapacitor's unary node negates a boolean under `-` too.
                (_, Val::Bool(b)) => Ok(Val::Bool(!b)),
                (_, Val::Missing) => Err(EvalError::new(format!(
                    "reference \"{}\" is missing value",
                    ref_name(node)
                ))),
                (_, v) => Err(EvalError::new(format!(
                    "invalid unary operator - for type {}",
                    v.typ()
                        .map_or("invalid type".to_string(), |t| t.to_string())
                ))),
            }
        }
        CNode::Binary {
            op,
            left,
            right,
            has_call,
        } => {
            let scope = ctx.scope;
            if *has_call {
                // Kapacitor types both sides before evaluating either.
                let (lt, rt) = (type_of(left, scope)?, type_of(right, scope)?);
                if binary_type(*op, lt, rt).is_none() {
                    return Err(EvalError::new(type_error(
                        *op,
                        Some(lt),
                        Some(rt),
                        left,
                        right,
                    )));
                }
            }
            let l = eval(left, ctx, state)?;
            if op.is_logical() {
                let rt = type_of(right, scope)?;
                let Val::Bool(lb) = l else {
                    return Err(EvalError::new(type_error(
                        *op,
                        l.typ(),
                        Some(rt),
                        left,
                        right,
                    )));
                };
                if rt != Type::Bool {
                    return Err(EvalError::new(type_error(
                        *op,
                        Some(Type::Bool),
                        Some(rt),
                        left,
                        right,
                    )));
                }
                if (*op == Op::And) != lb {
                    return Ok(Val::Bool(lb));
                }
                return match eval(right, ctx, state)? {
                    Val::Bool(rb) => Ok(Val::Bool(rb)),
                    other => Err(guard(Type::Bool, &other)),
                };
            }
            let r = eval(right, ctx, state)?;
            match apply(*op, &l, &r)? {
                Some(v) => Ok(v),
                None => Err(EvalError::new(type_error(
                    *op,
                    l.typ(),
                    r.typ(),
                    left,
                    right,
                ))),
            }
        }
        CNode::Call {
            func,
            args,
            args_have_calls,
        } => call(n, func, args, *args_have_calls, ctx, state),
        CNode::Lambda { node, state } => eval(node, ctx, *state),
    }
}

/// A function call, apart from [`eval`] so that its argument array does not
/// weigh on every level of the evaluator's recursion.
#[inline(never)]
fn call<'a>(
    n: &'a CNode,
    func: &Func,
    args: &'a [CNode],
    args_have_calls: bool,
    ctx: &mut Ctx<'_, 'a>,
    state: usize,
) -> Result<Val<'a>, EvalError> {
    if args_have_calls {
        type_of(n, ctx.scope)?;
    }
    let mut vals: [Val<'a>; MAX_ARGS] = [Val::Nil, Val::Nil, Val::Nil, Val::Nil];
    for (i, a) in args.iter().enumerate() {
        vals[i] = eval(a, ctx, state)
            .map_err(|e| EvalError::new(format!("Failed to handle {} argument: {e}", i + 1)))?;
    }
    let vals = &mut vals[..args.len()];
    if !args_have_calls {
        let mut types = [Type::Missing; MAX_ARGS];
        for (i, v) in vals.iter().enumerate() {
            // Arguments are never nil: references to nil fail above.
            types[i] = v.typ().unwrap_or(Type::Missing);
        }
        let types = &types[..args.len()];
        if func.signature(types).is_none() {
            return Err(signature_error(func, types, args));
        }
    }
    let st = ctx
        .states
        .get_mut(state)
        .ok_or_else(|| EvalError::new("function state out of range"))?;
    func.call(vals, st, ctx.now)
        .map_err(|e| EvalError::new(format!("error calling \"{}\": {e}", func.name)))
}
