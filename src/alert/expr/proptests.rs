//! Property tests: what parses prints back (Display) and re-parses to the
//! same tree; evaluation never panics.

use proptest::prelude::*;

use super::ast::{Literal, Node, Op};
use super::{Expr, Scope, ValueRef, parse};

const KEYWORDS: [&str; 7] = ["AND", "OR", "TRUE", "FALSE", "var", "dbrp", "lambda"];

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,6}".prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
}

/// String contents: anything but one that ends in a backslash and also holds
/// `'''` (no TICKscript quoting expresses that).
fn text() -> impl Strategy<Value = String> {
    "(\\PC|[\\\\'\n]){0,8}".prop_filter("quotable", |s: &String| {
        !(s.ends_with('\\') && s.contains("'''"))
    })
}

/// Reference names: a parsed reference never ends in a backslash (`\"` is an
/// escaped quote).
fn ref_name() -> impl Strategy<Value = String> {
    "(\\PC|[\\\\\"\n]){0,8}".prop_filter("quotable", |s: &String| !s.ends_with('\\'))
}

fn literal() -> impl Strategy<Value = Node> {
    const UNITS: [i64; 7] = [
        1_000,
        1_000_000,
        1_000_000_000,
        60_000_000_000,
        3_600_000_000_000,
        86_400_000_000_000,
        604_800_000_000_000,
    ];
    prop_oneof![
        (0..=i64::MAX).prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("a parsed float is finite and positive", |f| f.is_finite()
                && f.is_sign_positive())
            .prop_map(Literal::Float),
        text().prop_map(Literal::String),
        any::<bool>().prop_map(Literal::Bool),
        (0..10_000i64, 0..UNITS.len()).prop_map(|(n, u)| Literal::Duration(n * UNITS[u])),
        prop::sample::select(vec!["^web", "a/b", "x+", "[a-z]{2,3}", "(?i)host\\d"])
            .prop_map(|p| Literal::Regex(p.to_string())),
    ]
    .prop_map(Node::Literal)
}

fn tree() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![4 => literal(), 2 => ref_name().prop_map(Node::Ref), 1 => name().prop_map(Node::Ident)];
    leaf.prop_recursive(5, 40, 4, |inner| {
        let binary_ops: Vec<Op> = Op::ALL.into_iter().filter(|o| *o != Op::Not).collect();
        prop_oneof![
            (
                prop::sample::select(vec![Op::Minus, Op::Not]),
                inner.clone()
            )
                .prop_map(|(op, n)| Node::unary(op, n)),
            (
                prop::sample::select(binary_ops),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, l, r)| Node::binary(op, l, r)),
            (name(), prop::collection::vec(inner, 0..4))
                .prop_map(|(name, args)| Node::Call { name, args }),
        ]
    })
}

const TOKENS: [&str; 29] = [
    "\"v\"",
    "\"h\"",
    "1",
    "2.5",
    "010",
    "5m",
    "10ms",
    "'a'",
    "'it\\'s'",
    "'\'\'a\\\'\''",
    "TRUE",
    "FALSE",
    "/^w/",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    ">=",
    "=~",
    "!~",
    "AND",
    "OR",
    "!",
    "(",
    ")",
];

struct Empty;

impl Scope for Empty {
    fn lookup(&self, name: &str) -> Option<ValueRef<'_>> {
        match name {
            "v" => Some(ValueRef::Float(1.5)),
            "h" => Some(ValueRef::Str("web01")),
            _ => None,
        }
    }

    fn time(&self) -> i64 {
        0
    }
}

proptest! {
    #[test]
    fn printed_trees_parse_back_to_themselves(t in tree()) {
        let printed = t.to_string();
        let parsed = parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(parsed, t, "printed as {}", printed);
    }

    #[test]
    fn whatever_parses_prints_back_the_same(tokens in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 1..9)) {
        let src = tokens.join(" ");
        if let Ok(t) = parse(&src) {
            let printed = t.to_string();
            let again = parse(&printed).map_err(|e| TestCaseError::fail(format!("{src} → {printed}: {e}")))?;
            prop_assert_eq!(again, t, "{} printed as {}", src, printed);
        }
    }

    #[test]
    fn evaluation_never_panics(tokens in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 1..9)) {
        let src = tokens.join(" ");
        if let Ok(mut e) = Expr::compile(&src) {
            let _ = e.eval(&Empty);
            let _ = e.eval_bool(&Empty);
        }
    }

    #[test]
    fn random_text_never_panics_the_parser(src in "\\PC{0,24}") {
        let _ = parse(&src);
    }
}

proptest! {
    #[test]
    fn random_patterns_never_panic_the_regex_translator(
        parts in prop::collection::vec(prop::sample::select(vec![
            "[", "]", "[:", ":]", "^", "\\", "\\p", "\\P", "{", "}", "\\x", "\\Q", "\\E", "(", ")", "(?", "?", "*",
            "+", "a", "1", ",", ":", "-", "&&", "~", "\\d", "\\0", "\\7", "<", "P", "i", "|", ".", "$",
        ]), 0..10)
    ) {
        let _ = super::GoRegex::new(&parts.concat());
    }
}
