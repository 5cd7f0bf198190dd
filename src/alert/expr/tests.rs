//! Evaluator tests (lexer, parser, regex and function tests sit beside
//! their code; Kapacitor's own cases run in `tests/expressions.rs`).

use std::collections::HashMap;

use super::*;

/// A point: fields, tags and a time.
#[derive(Default)]
struct Point {
    fields: HashMap<&'static str, ValueRef<'static>>,
    tags: HashMap<&'static str, &'static str>,
    time: i64,
}

impl Scope for Point {
    fn lookup(&self, name: &str) -> Option<ValueRef<'_>> {
        match (self.fields.get(name), self.tags.get(name)) {
            (Some(_), Some(_)) => Some(ValueRef::Ambiguous),
            (Some(v), None) => Some(*v),
            (None, Some(t)) => Some(ValueRef::Str(t)),
            (None, None) => None,
        }
    }

    fn time(&self) -> i64 {
        self.time
    }
}

fn point(
    fields: &[(&'static str, ValueRef<'static>)],
    tags: &[(&'static str, &'static str)],
) -> Point {
    Point {
        fields: fields.iter().copied().collect(),
        tags: tags.iter().copied().collect(),
        time: 0,
    }
}

fn eval(src: &str, p: &Point) -> Result<Value, EvalError> {
    Expr::compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(p)
}

fn eval_bool(src: &str, p: &Point) -> Result<bool, EvalError> {
    Expr::compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval_bool(p)
}

#[test]
fn thresholds_on_fields_and_tags() {
    let p = point(
        &[("value", ValueRef::Float(91.5)), ("n", ValueRef::Int(3))],
        &[("host", "web01")],
    );
    assert_eq!(eval_bool("\"value\" > 90", &p), Ok(true));
    assert_eq!(
        eval_bool("\"value\" > 90.0 AND \"host\" =~ /^web/", &p),
        Ok(true)
    );
    assert_eq!(eval_bool("\"host\" !~ /^web/ OR \"n\" >= 3", &p), Ok(true));
    assert_eq!(
        eval_bool("\"n\" == 3.0", &p),
        Ok(true),
        "comparison promotes int to float"
    );
    assert_eq!(
        eval_bool("\"host\" < 'web02'", &p),
        Ok(true),
        "strings compare lexicographically"
    );
    assert_eq!(eval_bool("!(\"value\" < 90)", &p), Ok(true));
    assert_eq!(eval("\"n\" * 2 + 1", &p), Ok(Value::Int(7)));
    assert_eq!(
        eval("\"host\" + '.example'", &p),
        Ok(Value::String("web01.example".into()))
    );
}

#[test]
fn a_missing_field_is_an_error_not_a_panic() {
    let p = point(&[], &[]);
    let e = eval_bool("\"value\" > 90", &p).unwrap_err();
    assert!(e.message().contains("\"value\""), "{e}");
    assert!(eval_bool("\"value\"", &p).is_err());
    assert!(eval("\"value\" + 1", &p).is_err());
    assert!(eval("-\"value\"", &p).is_err());
    assert!(eval("abs(\"value\")", &p).is_err());
    assert_eq!(eval_bool("isPresent(\"value\")", &p), Ok(false));
    let p = point(&[("value", ValueRef::Int(1))], &[]);
    assert_eq!(eval_bool("isPresent(\"value\")", &p), Ok(true));
}

#[test]
fn a_name_that_is_both_field_and_tag_fails() {
    let p = point(&[("host", ValueRef::Str("a"))], &[("host", "b")]);
    let e = eval_bool("\"host\" == 'a'", &p).unwrap_err();
    assert_eq!(
        e.message(),
        "cannot have field and tags with same name \"host\""
    );
}

#[test]
fn int_and_float_rules() {
    let p = point(&[("i", ValueRef::Int(5)), ("f", ValueRef::Float(2.0))], &[]);
    let e = eval("\"i\" + \"f\"", &p).unwrap_err();
    assert_eq!(
        e.message(),
        "mismatched type to binary operator. got int + float. see bool(), int(), float(), string(), duration()"
    );
    assert_eq!(
        eval("\"f\" % 2.0", &p).unwrap_err().message(),
        "invalid math operator % for type float"
    );
    assert_eq!(
        eval("\"i\" / 0", &p).unwrap_err().message(),
        "runtime error: integer divide by zero"
    );
    assert_eq!(eval("\"i\" / 2", &p), Ok(Value::Int(2)));
    assert_eq!(eval("float(\"i\") / \"f\"", &p), Ok(Value::Float(2.5)));
    assert_eq!(
        eval("9223372036854775807 + \"i\"", &p),
        Ok(Value::Int(i64::MIN + 4)),
        "wraps as Go"
    );
    assert_eq!(eval("-\"i\"", &p), Ok(Value::Int(-5)));
    assert_eq!(eval("-\"f\"", &p), Ok(Value::Float(-2.0)));
}

#[test]
fn durations() {
    let p = point(&[("n", ValueRef::Int(3))], &[]);
    assert_eq!(eval("5m + 30s", &p), Ok(Value::Duration(330_000_000_000)));
    assert_eq!(eval("1h / 1m", &p), Ok(Value::Int(60)));
    assert_eq!(eval("10s * \"n\"", &p), Ok(Value::Duration(30_000_000_000)));
    assert_eq!(eval("10s / 4.0", &p), Ok(Value::Duration(2_500_000_000)));
    assert_eq!(eval("-12h", &p), Ok(Value::Duration(-43_200_000_000_000)));
    assert_eq!(eval("duration(\"n\", 1s) > 2s", &p), Ok(Value::Bool(true)));
    assert_eq!(eval("string(90m)", &p), Ok(Value::String("90m".into())));
}

#[test]
fn constant_type_errors_fail_at_compile_time() {
    for src in [
        "5 + 5.0",
        "TRUE + 1",
        "'a' > 5",
        "\"a\" > 5 AND 5",
        "(1 < 2) + 1",
        "-(5 % 2.0)",
    ] {
        assert!(
            matches!(Expr::compile(src), Err(ExprError::Compile { .. })),
            "{src} must not compile"
        );
    }
    for src in ["\"a\" + 5.0", "\"a\" > 5 AND \"b\"", "-\"a\""] {
        assert!(
            Expr::compile(src).is_ok(),
            "{src} depends on the point: compiles"
        );
    }
}

#[test]
fn compile_errors_are_helpful() {
    let e = Expr::compile("value > 90").unwrap_err();
    assert!(e.to_string().contains("double-quoted"), "{e}");
    let e = Expr::compile("nope(\"x\")").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot compile 'nope(\"x\")': undefined function: \"nope\""
    );
    let e = Expr::compile("\"value\" >> 90").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot parse '\"value\" >> 90' at column 10: unexpected '>'"
    );
    assert!(Expr::compile("\"h\" =~ /a{1001}/").is_err());
    assert!(Expr::from_ast(Node::unary(Op::And, Node::Literal(Literal::Bool(true)))).is_err());
}

#[test]
fn logical_operators_short_circuit_but_check_types_first() {
    let p = point(
        &[("s", ValueRef::Str("x")), ("b", ValueRef::Bool(true))],
        &[],
    );
    let mut e = Expr::compile("FALSE AND count() > 0").unwrap();
    for _ in 0..3 {
        assert_eq!(e.eval_bool(&p), Ok(false));
    }
    // count() never ran: the first evaluation that reaches it sees 1.
    let mut e2 = Expr::compile("\"b\" AND count() == 1").unwrap();
    assert_eq!(e2.eval_bool(&p), Ok(true));
    // The right side is typed even when it would not be evaluated.
    assert!(eval_bool("FALSE AND \"s\"", &p).is_err());
    assert!(eval_bool("TRUE OR \"s\"", &p).is_err());
    assert_eq!(eval_bool("TRUE OR \"b\"", &p), Ok(true));
    assert!(eval_bool("\"s\" AND TRUE", &p).is_err());
}

#[test]
fn stateful_functions_share_one_state_per_name() {
    let p = point(&[], &[]);
    let mut e = Expr::compile("count() + count()").unwrap();
    assert_eq!(e.eval(&p), Ok(Value::Int(3)));
    assert_eq!(e.eval(&p), Ok(Value::Int(7)));
    e.reset();
    assert_eq!(e.eval(&p), Ok(Value::Int(3)));
    // Separate expressions, separate states.
    let mut other = Expr::compile("count()").unwrap();
    assert_eq!(other.eval(&p), Ok(Value::Int(1)));
}

#[test]
fn a_signature_error_does_not_advance_state() {
    let mut e = Expr::compile("count() + \"x\"").unwrap();
    assert!(e.eval(&point(&[("x", ValueRef::Str("a"))], &[])).is_err());
    assert_eq!(
        e.eval(&point(&[("x", ValueRef::Int(10))], &[])),
        Ok(Value::Int(11))
    );
    let mut s = Expr::compile("sigma(\"x\")").unwrap();
    assert!(
        s.eval(&point(&[("x", ValueRef::Int(1))], &[])).is_err(),
        "sigma takes floats only"
    );
}

#[test]
fn sigma_and_spread() {
    let mut s = Expr::compile("sigma(\"v\")").unwrap();
    let mut sp = Expr::compile("spread(\"v\")").unwrap();
    let xs = [97.1, 92.6, 95.0, 110.0];
    let mut got = Vec::new();
    for x in xs {
        let p = point(&[("v", ValueRef::Float(x))], &[]);
        got.push(s.eval(&p).unwrap());
        assert!(sp.eval(&p).is_ok());
    }
    // Welford by hand for the last value.
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    let Value::Float(last) = got[3] else { panic!() };
    assert!((last - (110.0 - mean).abs() / var.sqrt()).abs() < 1e-12);
    assert_eq!(got[0], Value::Float(0.0));
    assert_eq!(
        sp.eval(&point(&[("v", ValueRef::Float(90.0))], &[])),
        Ok(Value::Float(20.0))
    );
}

#[test]
fn functions_in_expressions() {
    let p = point(
        &[("v", ValueRef::Float(2.0)), ("bytes", ValueRef::Int(1_500))],
        &[("host", "web01.dc1")],
    );
    assert_eq!(
        eval("sqrt(\"v\") * sqrt(\"v\")", &p),
        Ok(Value::Float(2.0000000000000004))
    );
    assert_eq!(eval("pow(\"v\", 10.0)", &p), Ok(Value::Float(1024.0)));
    assert_eq!(eval("max(\"v\", 3.0)", &p), Ok(Value::Float(3.0)));
    assert_eq!(
        eval("strHasPrefix(\"host\", 'web')", &p),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        eval("strSubstring(\"host\", 0, 5)", &p),
        Ok(Value::String("web01".into()))
    );
    assert_eq!(
        eval("regexReplace(/\\.dc\\d$/, \"host\", '')", &p),
        Ok(Value::String("web01".into()))
    );
    assert_eq!(
        eval("humanBytes(\"bytes\")", &p),
        Ok(Value::String("1.5 kB".into()))
    );
    assert_eq!(
        eval("if(\"v\" > 1.0, 'high', 'low')", &p),
        Ok(Value::String("high".into()))
    );
    assert!(eval("if(\"v\" > 1.0, 'high', 1)", &p).is_err());
    assert!(eval("abs(2)", &p).is_err(), "math functions take floats");
    assert!(
        eval("duration('2s')", &p).is_err(),
        "the signature wants a unit: Kapacitor refuses it too"
    );
    assert_eq!(eval("int(\"v\") + 1", &p), Ok(Value::Int(3)));
    assert_eq!(eval("bool('true')", &p), Ok(Value::Bool(true)));
}

#[test]
fn the_time_reference_is_the_point_time() {
    let mut p = point(&[("time", ValueRef::Int(5))], &[]);
    p.time = 1_580_702_706_003_000_000;
    assert_eq!(
        eval("unixNano(\"time\")", &p),
        Ok(Value::Int(1_580_702_706_003_000_000))
    );
    assert_eq!(eval("year(\"time\")", &p), Ok(Value::Int(2020)));
    assert!(eval("minute(\"time\") >= 0", &p).is_ok());
    assert!(
        eval("\"time\"", &p).is_err(),
        "a time is not a result Eval returns"
    );
    let now = eval("unixNano(now())", &p).unwrap();
    assert!(matches!(now, Value::Int(n) if n > 1_700_000_000_000_000_000));
}

#[test]
fn unary_minus_negates_booleans_like_kapacitor() {
    let p = point(&[("b", ValueRef::Bool(true))], &[]);
    assert_eq!(eval_bool("-\"b\"", &p), Ok(false));
    assert!(eval("-'abc'", &p).is_err());
    assert!(eval("!5", &p).is_err());
}

#[test]
fn typed_evaluation() {
    let p = point(&[], &[]);
    let mut e = Expr::compile("5 + 5").unwrap();
    assert_eq!(e.eval_as(&p, Type::Int), Ok(Value::Int(10)));
    assert!(e.eval_as(&p, Type::Float).is_err());
    assert!(e.eval_bool(&p).is_err());
}

#[test]
fn references_are_listed_once() {
    let e = Expr::compile("\"a\" > 1 AND (\"b\" < \"a\" OR strLength(\"c\") == 2)").unwrap();
    assert_eq!(e.references(), vec!["a", "b", "c"]);
}

#[test]
fn nested_lambdas_keep_their_own_state_and_reset_leaves_them() {
    let count = || Node::Call {
        name: "count".into(),
        args: vec![],
    };
    let tree = Node::binary(Op::Plus, count(), Node::Lambda(Box::new(count())));
    let mut e = Expr::from_ast(tree).unwrap();
    let p = point(&[], &[]);
    assert_eq!(e.eval(&p), Ok(Value::Int(2)));
    assert_eq!(e.eval(&p), Ok(Value::Int(4)));
    e.reset();
    assert_eq!(
        e.eval(&p),
        Ok(Value::Int(4)),
        "Kapacitor's Reset leaves nested lambdas"
    );
}

#[test]
fn nil_references_fail() {
    let p = point(&[("v", ValueRef::Nil)], &[]);
    assert_eq!(
        eval_bool("'yo' == \"v\"", &p).unwrap_err().message(),
        "referenced value \"v\" is nil."
    );
}

#[test]
fn the_deepest_expressions_fit_a_thread_stack() {
    let p = point(&[("v", ValueRef::Int(1))], &[]);
    // 199 additions: a left-leaning tree 200 deep.
    let chain = format!("\"v\"{}", " + \"v\"".repeat(199));
    assert_eq!(eval(&chain, &p), Ok(Value::Int(200)));
    assert!(Expr::compile(&format!("{chain} + 1")).is_err(), "201 deep");
    let nested = format!("{}\"v\"{}", "(".repeat(199), ")".repeat(199));
    assert_eq!(eval(&nested, &p), Ok(Value::Int(1)));
    let negated = format!("{}\"v\"", "-".repeat(199));
    assert_eq!(eval(&negated, &p), Ok(Value::Int(-1)));
    assert!(Expr::compile(&format!("{}\"v\"", "-".repeat(1000))).is_err());
    assert!(Expr::compile(&format!("{}1{}", "abs(".repeat(300), ")".repeat(300))).is_err());
    let e = Expr::compile(&chain).unwrap();
    assert_eq!(Expr::compile(&e.ast().to_string()).unwrap().ast(), e.ast());
}

#[test]
fn compiled_expressions_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Expr>();
    send_sync::<ExprError>();
    send_sync::<EvalError>();
}

/// Kapacitor's `Test_StatelessFuncs` (`tick/stateful/functions_test.go`):
/// direct calls, values and error texts. (Go passes an untyped `1` as
/// `int`, where ours is `int64`; that one message differs in the type name.)
#[test]
fn kapacitor_stateless_function_cases() {
    use std::sync::Arc;
    let cases: Vec<(&str, Vec<Value>, Result<Value, &str>)> = vec![
        (
            "strContains",
            vec![Value::String("aabbc".into()), Value::String("bc".into())],
            Ok(Value::Bool(true)),
        ),
        (
            "strContains",
            vec![Value::String("aabbc".into()), Value::String("bx".into())],
            Ok(Value::Bool(false)),
        ),
        (
            "strContains",
            vec![Value::String("".into())],
            Err("strContains expects exactly two arguments"),
        ),
        (
            "strContainsAny",
            vec![Value::String("aabbc".into()), Value::String("bx".into())],
            Ok(Value::Bool(true)),
        ),
        (
            "strContainsAny",
            vec![Value::String("aabbc".into()), Value::String("xy".into())],
            Ok(Value::Bool(false)),
        ),
        (
            "strContainsAny",
            vec![Value::String("".into())],
            Err("strContainsAny expects exactly two arguments"),
        ),
        (
            "strCount",
            vec![Value::String("aababc".into()), Value::String("a".into())],
            Ok(Value::Int(3)),
        ),
        (
            "strCount",
            vec![Value::String("aabbc".into()), Value::String("x".into())],
            Ok(Value::Int(0)),
        ),
        (
            "strCount",
            vec![Value::String("".into())],
            Err("strCount expects exactly two arguments"),
        ),
        (
            "strHasPrefix",
            vec![Value::String("aababc".into()), Value::String("aab".into())],
            Ok(Value::Bool(true)),
        ),
        (
            "strHasPrefix",
            vec![Value::String("aabbc".into()), Value::String("aax".into())],
            Ok(Value::Bool(false)),
        ),
        (
            "strHasPrefix",
            vec![Value::String("".into())],
            Err("strHasPrefix expects exactly two arguments"),
        ),
        (
            "strHasSuffix",
            vec![Value::String("aababc".into()), Value::String("bc".into())],
            Ok(Value::Bool(true)),
        ),
        (
            "strHasSuffix",
            vec![Value::String("aabbc".into()), Value::String("xbc".into())],
            Ok(Value::Bool(false)),
        ),
        (
            "strHasSuffix",
            vec![Value::String("".into())],
            Err("strHasSuffix expects exactly two arguments"),
        ),
        (
            "strIndex",
            vec![Value::String("aababc".into()), Value::String("ba".into())],
            Ok(Value::Int(2)),
        ),
        (
            "strIndex",
            vec![Value::String("aabbc".into()), Value::String("xbc".into())],
            Ok(Value::Int(-1)),
        ),
        (
            "strIndex",
            vec![Value::String("".into())],
            Err("strIndex expects exactly two arguments"),
        ),
        (
            "strIndexAny",
            vec![Value::String("aababc".into()), Value::String("bax".into())],
            Ok(Value::Int(0)),
        ),
        (
            "strIndexAny",
            vec![Value::String("aabbc".into()), Value::String("xy".into())],
            Ok(Value::Int(-1)),
        ),
        (
            "strIndexAny",
            vec![Value::String("".into())],
            Err("strIndexAny expects exactly two arguments"),
        ),
        (
            "strLastIndex",
            vec![Value::String("aababa".into()), Value::String("ba".into())],
            Ok(Value::Int(4)),
        ),
        (
            "strLastIndex",
            vec![Value::String("aabbc".into()), Value::String("xbc".into())],
            Ok(Value::Int(-1)),
        ),
        (
            "strLastIndex",
            vec![Value::String("".into())],
            Err("strLastIndex expects exactly two arguments"),
        ),
        (
            "strLastIndexAny",
            vec![Value::String("aababc".into()), Value::String("bax".into())],
            Ok(Value::Int(4)),
        ),
        (
            "strLastIndexAny",
            vec![Value::String("aabbc".into()), Value::String("xy".into())],
            Ok(Value::Int(-1)),
        ),
        (
            "strLastIndexAny",
            vec![Value::String("".into())],
            Err("strLastIndexAny expects exactly two arguments"),
        ),
        (
            "strLength",
            vec![Value::String("".into())],
            Ok(Value::Int(0)),
        ),
        (
            "strLength",
            vec![Value::String("abxyzc".into())],
            Ok(Value::Int(6)),
        ),
        (
            "strLength",
            vec![],
            Err("strLength expects exactly one argument"),
        ),
        (
            "strLength",
            vec![Value::Int(1)],
            Err("cannot pass int as first arg to strLength, must be string"),
        ),
        (
            "strReplace",
            vec![
                Value::String("abxyzc".into()),
                Value::String("xyz".into()),
                Value::String("".into()),
                Value::Int(1),
            ],
            Ok(Value::String("abc".into())),
        ),
        (
            "strReplace",
            vec![
                Value::String("abxaza".into()),
                Value::String("a".into()),
                Value::String("z".into()),
                Value::Int(-1),
            ],
            Ok(Value::String("zbxzzz".into())),
        ),
        (
            "strReplace",
            vec![
                Value::String("".into()),
                Value::String("".into()),
                Value::String("".into()),
            ],
            Err("strReplace expects exactly four arguments"),
        ),
        (
            "strSubstring",
            vec![
                Value::String("abcdefg".into()),
                Value::Int(1),
                Value::Int(5),
            ],
            Ok(Value::String("bcde".into())),
        ),
        (
            "strSubstring",
            vec![Value::String("".into())],
            Err("strSubstring expects exactly three arguments"),
        ),
        (
            "strSubstring",
            vec![
                Value::String("abcdefg".into()),
                Value::Int(0),
                Value::Int(10),
            ],
            Err("stop index too large for string in strSubstring: 10"),
        ),
        (
            "strSubstring",
            vec![
                Value::String("abcdefg".into()),
                Value::Int(-1),
                Value::Int(3),
            ],
            Err("found negative index for strSubstring: -1"),
        ),
        (
            "strSubstring",
            vec![
                Value::String("abcdefg".into()),
                Value::Int(0),
                Value::Int(-3),
            ],
            Err("found negative index for strSubstring: -3"),
        ),
        (
            "strToLower",
            vec![Value::String("ABC".into())],
            Ok(Value::String("abc".into())),
        ),
        (
            "strToLower",
            vec![Value::String("abc".into())],
            Ok(Value::String("abc".into())),
        ),
        (
            "strToLower",
            vec![
                Value::String("".into()),
                Value::String("".into()),
                Value::String("".into()),
            ],
            Err("strToLower expects exactly one argument"),
        ),
        (
            "strToUpper",
            vec![Value::String("ABC".into())],
            Ok(Value::String("ABC".into())),
        ),
        (
            "strToUpper",
            vec![Value::String("abc".into())],
            Ok(Value::String("ABC".into())),
        ),
        (
            "strToUpper",
            vec![
                Value::String("".into()),
                Value::String("".into()),
                Value::String("".into()),
            ],
            Err("strToUpper expects exactly one argument"),
        ),
        (
            "strTrim",
            vec![Value::String("abba".into()), Value::String("a".into())],
            Ok(Value::String("bb".into())),
        ),
        (
            "strTrim",
            vec![Value::String("aabbaa".into()), Value::String("a".into())],
            Ok(Value::String("bb".into())),
        ),
        (
            "strTrim",
            vec![Value::String("".into())],
            Err("strTrim expects exactly two arguments"),
        ),
        (
            "strTrimLeft",
            vec![Value::String("abba".into()), Value::String("a".into())],
            Ok(Value::String("bba".into())),
        ),
        (
            "strTrimLeft",
            vec![Value::String("aabbaa".into()), Value::String("a".into())],
            Ok(Value::String("bbaa".into())),
        ),
        (
            "strTrimLeft",
            vec![Value::String("".into())],
            Err("strTrimLeft expects exactly two arguments"),
        ),
        (
            "strTrimPrefix",
            vec![Value::String("abba".into()), Value::String("a".into())],
            Ok(Value::String("bba".into())),
        ),
        (
            "strTrimPrefix",
            vec![Value::String("aabbaa".into()), Value::String("a".into())],
            Ok(Value::String("abbaa".into())),
        ),
        (
            "strTrimPrefix",
            vec![Value::String("".into())],
            Err("strTrimPrefix expects exactly two arguments"),
        ),
        (
            "strTrimRight",
            vec![Value::String("abba".into()), Value::String("a".into())],
            Ok(Value::String("abb".into())),
        ),
        (
            "strTrimRight",
            vec![Value::String("aabbaa".into()), Value::String("a".into())],
            Ok(Value::String("aabb".into())),
        ),
        (
            "strTrimRight",
            vec![Value::String("".into())],
            Err("strTrimRight expects exactly two arguments"),
        ),
        (
            "strTrimSuffix",
            vec![Value::String("abba".into()), Value::String("a".into())],
            Ok(Value::String("abb".into())),
        ),
        (
            "strTrimSuffix",
            vec![Value::String("aabbaa".into()), Value::String("a".into())],
            Ok(Value::String("aabba".into())),
        ),
        (
            "strTrimSuffix",
            vec![Value::String("".into())],
            Err("strTrimSuffix expects exactly two arguments"),
        ),
        (
            "regexReplace",
            vec![
                Value::Regex(Arc::new(GoRegex::new("a(x*)b").unwrap())),
                Value::String("-ab-axxb-".into()),
                Value::String("T".into()),
            ],
            Ok(Value::String("-T-T-".into())),
        ),
        (
            "regexReplace",
            vec![
                Value::Regex(Arc::new(GoRegex::new("a(x*)b").unwrap())),
                Value::String("-ab-axxb-".into()),
                Value::String("$1".into()),
            ],
            Ok(Value::String("--xx-".into())),
        ),
        (
            "regexReplace",
            vec![
                Value::Regex(Arc::new(GoRegex::new("a(x*)b").unwrap())),
                Value::String("-ab-axxb-".into()),
                Value::String("$1W".into()),
            ],
            Ok(Value::String("---".into())),
        ),
        (
            "regexReplace",
            vec![
                Value::Regex(Arc::new(GoRegex::new("a(x*)b").unwrap())),
                Value::String("-ab-axxb-".into()),
                Value::String("${1}W".into()),
            ],
            Ok(Value::String("-W-xxW-".into())),
        ),
        (
            "regexReplace",
            vec![
                Value::Regex(Arc::new(GoRegex::new("a(?P<middle>x*)b").unwrap())),
                Value::String("-ab-axxb-".into()),
                Value::String("${middle}W".into()),
            ],
            Ok(Value::String("-W-xxW-".into())),
        ),
        (
            "regexReplace",
            vec![Value::String("".into())],
            Err("regexReplace expects exactly three arguments"),
        ),
    ];
    for (name, args, want) in cases {
        let got = call_function(name, &args).map_err(|e| e.message().replace("int64", "int"));
        assert_eq!(got, want.map_err(str::to_string), "{name}{args:?}");
    }
}
