//! Runs every case of `tests/conformance/expressions.json` (transcribed from
//! Kapacitor's `tick/stateful` tests) against `alert::expr`.
//!
//! - `const`/`single`/`sequence`: the expression is compiled from its
//!   TICKscript text (whose parse must equal the case's tree) or, when the
//!   text is null, from the tree; then evaluated as the case says. An
//!   expected error is met by a failure to compile or to evaluate (Kapacitor
//!   fails constant type errors at compile time too).
//! - `const` cases are also run as Kapacitor's test runs them a second time:
//!   the left operand a reference `"value"` holding the same value.
//! - `call`: the built-in is called directly with the typed arguments.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use kapacitor_pagertree::alert::expr::{
    Expr, GoRegex, Literal, Node, Op, Scope, Type, Value, ValueRef, call_function, parse,
};
use serde_json::Value as J;

/// A scope built from a case's `scope` object.
#[derive(Default)]
struct TestScope {
    vars: HashMap<String, Value>,
}

impl Scope for TestScope {
    fn lookup(&self, name: &str) -> Option<ValueRef<'_>> {
        Some(match self.vars.get(name)? {
            Value::Int(i) => ValueRef::Int(*i),
            Value::Float(f) => ValueRef::Float(*f),
            Value::String(s) => ValueRef::Str(s),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Nil => ValueRef::Nil,
            other => panic!("a scope cannot hold {other:?}"),
        })
    }

    fn time(&self) -> i64 {
        0
    }
}

fn typed(v: &J) -> Value {
    let (k, x) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("typed value");
    match k.as_str() {
        "int" => Value::Int(x.as_i64().expect("int")),
        "float" => Value::Float(x.as_f64().expect("float")),
        "string" => Value::String(x.as_str().expect("string").to_string()),
        "bool" => Value::Bool(x.as_bool().expect("bool")),
        "duration" => Value::Duration(x.as_i64().expect("duration")),
        "regex" => Value::Regex(Arc::new(
            GoRegex::new(x.as_str().expect("regex")).expect("valid regex"),
        )),
        "nil" => Value::Nil,
        other => panic!("unknown value type {other}"),
    }
}

fn literal(v: &J) -> Literal {
    match typed(v) {
        Value::Int(i) => Literal::Int(i),
        Value::Float(f) => Literal::Float(f),
        Value::String(s) => Literal::String(s),
        Value::Bool(b) => Literal::Bool(b),
        Value::Duration(d) => Literal::Duration(d),
        Value::Regex(r) => Literal::Regex(r.as_str().to_string()),
        other => panic!("no literal for {other:?}"),
    }
}

fn op(s: &J) -> Op {
    let s = s.as_str().expect("operator");
    Op::parse(s).unwrap_or_else(|| panic!("unknown operator {s}"))
}

fn node(v: &J) -> Node {
    let o = v.as_object().expect("node");
    if let Some(l) = o.get("literal") {
        Node::Literal(literal(l))
    } else if let Some(r) = o.get("ref") {
        Node::Ref(r.as_str().expect("ref").to_string())
    } else if let Some(b) = o.get("binary") {
        Node::binary(op(b), node(&o["left"]), node(&o["right"]))
    } else if let Some(u) = o.get("unary") {
        Node::unary(op(u), node(&o["node"]))
    } else if let Some(c) = o.get("call") {
        let args = o["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(node)
            .collect();
        Node::Call {
            name: c.as_str().expect("name").to_string(),
            args,
        }
    } else if let Some(l) = o.get("lambda") {
        Node::Lambda(Box::new(node(l)))
    } else {
        panic!("unknown node {v}")
    }
}

fn scope_of(v: Option<&J>) -> TestScope {
    let mut s = TestScope::default();
    if let Some(o) = v.and_then(J::as_object) {
        for (k, x) in o {
            s.vars.insert(k.clone(), typed(x));
        }
    }
    s
}

fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Float(a), Value::Float(b)) => {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        }
        _ => got == want,
    }
}

fn evaluate(e: &mut Expr, how: &str, scope: &TestScope) -> Result<Value, String> {
    let r = match how {
        "EvalBool" => e.eval_bool(scope).map(Value::Bool),
        "Eval" => e.eval(scope),
        "EvalInt" => e.eval_as(scope, Type::Int),
        "EvalFloat" => e.eval_as(scope, Type::Float),
        "EvalString" => e.eval_as(scope, Type::String),
        "EvalDuration" => e.eval_as(scope, Type::Duration),
        "EvalRegex" => e.eval_as(scope, Type::Regex),
        other => panic!("unknown eval {other}"),
    };
    r.map_err(|e| e.to_string())
}

/// Checks one outcome; returns a failure description.
fn check(outcome: Result<Value, String>, expected: &J) -> Option<String> {
    match (outcome, expected.get("value")) {
        (Ok(got), Some(want)) => {
            let want = typed(want);
            (!same(&got, &want)).then(|| format!("got {got:?}, want {want:?}"))
        }
        (Err(e), Some(want)) => Some(format!("failed ({e}), want {want}")),
        (Ok(got), None) => Some(format!("got {got:?}, want the error {}", expected["error"])),
        (Err(_), None) => None,
    }
}

/// Compiles the case's expression: from its text (checking that the text
/// parses to the case's tree) or from the tree.
fn build(case: &J, tree: &Node) -> Result<Expr, String> {
    match case["expr"].as_str() {
        Some(text) => {
            let parsed = parse(text).map_err(|e| e.to_string())?;
            if &parsed != tree {
                return Err(format!(
                    "PARSE MISMATCH: {text} parsed as {parsed:?}, the case's tree is {tree:?}"
                ));
            }
            Expr::compile(text).map_err(|e| e.to_string())
        }
        None => Expr::from_ast(tree.clone()).map_err(|e| e.to_string()),
    }
}

fn run_case(case: &J) -> Vec<String> {
    let id = case["id"].as_str().unwrap_or("?");
    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(format!("{id}: {what}"));
    let form = case["form"].as_str().expect("form");
    if form == "call" {
        let args: Vec<Value> = case["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(typed)
            .collect();
        let out = call_function(case["function"].as_str().expect("function"), &args)
            .map_err(|e| e.to_string());
        if let Some(f) = check(out, &case["expected"]) {
            fail(f);
        }
        return failures;
    }
    let tree = node(&case["ast"]);
    let compiled = build(case, &tree);
    if let Err(e) = &compiled
        && e.starts_with("PARSE MISMATCH")
    {
        fail(e.clone());
        return failures;
    }
    if case["eval"].as_str() == Some("compile") {
        if let Ok(e) = compiled {
            fail(format!(
                "compiled ({}), but compilation must fail",
                e.source()
            ));
        }
        return failures;
    }
    let steps: Vec<J> = match form {
        "sequence" => case["sequence"].as_array().expect("sequence").clone(),
        _ => vec![
            serde_json::json!({"eval": case["eval"], "scope": case["scope"], "expected": case["expected"]}),
        ],
    };
    match compiled {
        Err(e) => {
            // Only acceptable when every step expects an error.
            if steps
                .iter()
                .any(|s| s.get("expected").is_some_and(|x| x.get("value").is_some()))
            {
                fail(format!("does not compile: {e}"));
            }
        }
        Ok(mut expr) => {
            for (i, step) in steps.iter().enumerate() {
                if step.get("control").and_then(J::as_str) == Some("reset") {
                    expr.reset();
                    continue;
                }
                let scope = scope_of(step.get("scope"));
                let how = step["eval"].as_str().expect("eval");
                if let Some(f) = check(evaluate(&mut expr, how, &scope), &step["expected"]) {
                    fail(format!("step {i}: {f}"));
                }
            }
        }
    }
    // Kapacitor runs each constant case again with the left operand in the
    // scope as "value".
    if form == "const"
        && let Node::Binary { op, left, right } = &tree
        && let Node::Literal(lit) = &**left
    {
        let v = match lit {
            Literal::Int(i) => Some(Value::Int(*i)),
            Literal::Float(f) => Some(Value::Float(*f)),
            Literal::String(s) => Some(Value::String(s.clone())),
            Literal::Bool(b) => Some(Value::Bool(*b)),
            // A point's fields cannot be durations or regexes.
            Literal::Duration(_) | Literal::Regex(_) => None,
        };
        if let Some(v) = v {
            let tree = Node::binary(*op, Node::Ref("value".into()), (**right).clone());
            let mut scope = TestScope::default();
            scope.vars.insert("value".into(), v);
            let how = case["eval"].as_str().expect("eval");
            let out = Expr::from_ast(tree)
                .map_err(|e| e.to_string())
                .and_then(|mut e| evaluate(&mut e, how, &scope));
            if let Some(f) = check(out, &case["expected"]) {
                fail(format!("(left operand as reference) {f}"));
            }
        }
    }
    failures
}

#[test]
fn every_conformance_case() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/expressions.json"
    );
    let data: J = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 448);
    let failures: Vec<String> = cases.iter().flat_map(run_case).collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Counts the allocations of the current thread, so the hot-path test below
/// sees only its own (tests run on parallel threads).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; the counter is a const-initialized
// thread local, which needs no allocation.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// A point as the alert node sees one: fields by name in a small list, tags
/// by name.
struct Point {
    fields: Vec<(String, f64)>,
    tags: Vec<(String, String)>,
}

impl Scope for Point {
    fn lookup(&self, name: &str) -> Option<ValueRef<'_>> {
        if let Some((_, v)) = self.fields.iter().find(|(n, _)| n == name) {
            return Some(ValueRef::Float(*v));
        }
        self.tags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| ValueRef::Str(v))
    }

    fn time(&self) -> i64 {
        0
    }
}

fn sample_point() -> Point {
    Point {
        fields: vec![("value".into(), 91.0), ("idle".into(), 3.5)],
        tags: vec![("host".into(), "web01".into()), ("dc".into(), "eu".into())],
    }
}

#[test]
fn level_expressions_evaluate_without_allocating() {
    let p = sample_point();
    let mut exprs: Vec<Expr> = [
        "\"value\" > 90",
        "\"value\" > 80.5 AND \"host\" == 'web01'",
        "\"host\" =~ /^web\\d+$/ OR \"idle\" < 5",
        "\"value\" - \"idle\" >= 87.5 AND !(\"dc\" != 'eu')",
        "abs(\"value\" - 100.0) < 10.0",
        "sigma(\"value\") > 3.0 OR count() > 0",
    ]
    .iter()
    .map(|s| Expr::compile(s).unwrap())
    .collect();
    // Warm up (lazy regex caches).
    for e in &mut exprs {
        e.eval_bool(&p).unwrap();
    }
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..1000 {
        for e in &mut exprs {
            assert!(e.eval_bool(&p).unwrap());
        }
    }
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in 6000 evaluations"
    );
}

/// Prints the throughput of three level expressions per point (run with
/// `--nocapture`; meaningful in an optimized build). Asserts only that the
/// results are right.
#[test]
fn throughput_of_three_rules() {
    let p = sample_point();
    let mut rules: Vec<Expr> = ["\"value\" > 95", "\"value\" > 90", "\"value\" > 80"]
        .iter()
        .map(|s| Expr::compile(s).unwrap())
        .collect();
    let n = 200_000;
    let start = Instant::now();
    let mut matched = 0u64;
    for _ in 0..n {
        for r in &mut rules {
            matched += u64::from(r.eval_bool(&p).unwrap());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(matched, 2 * n);
    println!(
        "three rules: {:.0} points/s ({:.0} ns per evaluation)",
        n as f64 / secs,
        secs * 1e9 / (3 * n) as f64
    );
}
