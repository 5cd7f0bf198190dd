use super::*;

fn lit_i(i: i64) -> Node {
    Node::Literal(Literal::Int(i))
}
fn r(n: &str) -> Node {
    Node::Ref(n.into())
}

/// Tokens as `kind@pos:text`, kinds named as Kapacitor's
/// `TokenType.String()` names them.
fn tokens(src: &str) -> Vec<String> {
    let toks = Lexer {
        src,
        pos: 0,
        mode: Mode::Operand,
        tokens: Vec::new(),
    }
    .run();
    toks.iter()
        .map(|t| {
            let kind = match &t.tok {
                Tok::Number => "number".to_string(),
                Tok::Duration => "duration".into(),
                Tok::Str => "string".into(),
                Tok::Ref => "reference".into(),
                Tok::Regex => "regex".into(),
                Tok::Ident => "identifier".into(),
                Tok::True => "TRUE".into(),
                Tok::False => "FALSE".into(),
                Tok::Op(op) => op.as_str().into(),
                Tok::LParen => "(".into(),
                Tok::RParen => ")".into(),
                Tok::Comma => ",".into(),
                Tok::Star => "*".into(),
                Tok::Dot => ".".into(),
                Tok::Asgn => "=".into(),
                Tok::Other => t.text.to_string(),
                Tok::Eof => "EOF".into(),
                Tok::Error(m) => format!("ERR({m})"),
            };
            format!("{kind}@{}:{}", t.pos, t.text)
        })
        .collect()
}

/// Kapacitor's `TestLexer` cases (`tick/ast/lex_test.go`), comments left
/// out (the lambda lexer skips them).
#[test]
fn lexes_as_kapacitor() {
    let cases: &[(&str, &[&str])] = &[
        ("!", &["!@0:!", "EOF@1:"]),
        (
            "a + b",
            &["identifier@0:a", "+@2:+", "identifier@4:b", "EOF@5:"],
        ),
        (
            "a - b",
            &["identifier@0:a", "-@2:-", "identifier@4:b", "EOF@5:"],
        ),
        (
            "a * b",
            &["identifier@0:a", "*@2:*", "identifier@4:b", "EOF@5:"],
        ),
        (
            "a / b",
            &["identifier@0:a", "/@2:/", "identifier@4:b", "EOF@5:"],
        ),
        (
            "a = b",
            &["identifier@0:a", "=@2:=", "identifier@4:b", "EOF@5:"],
        ),
        (
            "a == b",
            &["identifier@0:a", "==@2:==", "identifier@5:b", "EOF@6:"],
        ),
        (
            "a != b",
            &["identifier@0:a", "!=@2:!=", "identifier@5:b", "EOF@6:"],
        ),
        (
            "a > b",
            &["identifier@0:a", ">@2:>", "identifier@4:b", "EOF@5:"],
        ),
        (
            "a >= b",
            &["identifier@0:a", ">=@2:>=", "identifier@5:b", "EOF@6:"],
        ),
        (
            "a < b",
            &["identifier@0:a", "<@2:<", "identifier@4:b", "EOF@5:"],
        ),
        (
            "a <= b",
            &["identifier@0:a", "<=@2:<=", "identifier@5:b", "EOF@6:"],
        ),
        (
            "a =~ b",
            &["identifier@0:a", "=~@2:=~", "identifier@5:b", "EOF@6:"],
        ),
        (
            "a !~ b",
            &["identifier@0:a", "!~@2:!~", "identifier@5:b", "EOF@6:"],
        ),
        ("(", &["(@0:(", "EOF@1:"]),
        (")", &[")@0:)", "EOF@1:"]),
        ("[", &["[@0:[", "EOF@1:"]),
        ("]", &["]@0:]", "EOF@1:"]),
        (".", &[".@0:.", "EOF@1:"]),
        ("|", &["|@0:|", "EOF@1:"]),
        ("@", &["@@0:@", "EOF@1:"]),
        ("AND", &["AND@0:AND", "EOF@3:"]),
        ("OR", &["OR@0:OR", "EOF@2:"]),
        ("TRUE", &["TRUE@0:TRUE", "EOF@4:"]),
        ("FALSE", &["FALSE@0:FALSE", "EOF@5:"]),
        ("var", &["var@0:var", "EOF@3:"]),
        ("lambda:", &["lambda:@0:lambda:", "EOF@7:"]),
        ("lambda ", &["identifier@0:lambda", "EOF@7:"]),
        ("42", &["number@0:42", "EOF@2:"]),
        ("42.21", &["number@0:42.21", "EOF@5:"]),
        (".421", &["number@0:.421", "EOF@4:"]),
        ("0.421", &["number@0:0.421", "EOF@5:"]),
        ("42s", &["duration@0:42s", "EOF@3:"]),
        ("1u", &["duration@0:1u", "EOF@2:"]),
        ("1µ", &["duration@0:1µ", "EOF@3:"]),
        ("1ms", &["duration@0:1ms", "EOF@3:"]),
        ("1h", &["duration@0:1h", "EOF@2:"]),
        ("1d", &["duration@0:1d", "EOF@2:"]),
        ("1w", &["duration@0:1w", "EOF@2:"]),
        ("variable", &["identifier@0:variable", "EOF@8:"]),
        ("myVar01", &["identifier@0:myVar01", "EOF@7:"]),
        (r#""""#, &[r#"reference@0:"""#, "EOF@2:"]),
        (
            r#""ref with spaces""#,
            &[r#"reference@0:"ref with spaces""#, "EOF@17:"],
        ),
        (r#""ref\"""#, &[r#"reference@0:"ref\"""#, "EOF@7:"]),
        ("''", &["string@0:''", "EOF@2:"]),
        ("''''''", &["string@0:''''''", "EOF@6:"]),
        ("'str'", &["string@0:'str'", "EOF@5:"]),
        (r"'str\''", &[r"string@0:'str\''", "EOF@7:"]),
        ("'''s'tr'''", &["string@0:'''s'tr'''", "EOF@10:"]),
        (r"'''s\'tr'''", &[r"string@0:'''s\'tr'''", "EOF@11:"]),
        ("'''str'''", &["string@0:'''str'''", "EOF@9:"]),
        ("/.*/", &["regex@0:/.*/", "EOF@4:"]),
        ("/^abc$/", &["regex@0:/^abc$/", "EOF@7:"]),
        (
            r"/^((.*)[a-z]+\S{0,2})|cat\/\/$/",
            &[r"regex@0:/^((.*)[a-z]+\S{0,2})|cat\/\/$/", "EOF@31:"],
        ),
        (" ", &["EOF@1:"]),
        (" \t\n", &["EOF@3:"]),
        (
            "var x = avg()",
            &[
                "var@0:var",
                "identifier@4:x",
                "=@6:=",
                "identifier@8:avg",
                "(@11:(",
                ")@12:)",
                "EOF@13:",
            ],
        ),
        (
            "var x = avg()|parallel(4)x.groupby('cpu')|window().period(10s)",
            &[
                "var@0:var",
                "identifier@4:x",
                "=@6:=",
                "identifier@8:avg",
                "(@11:(",
                ")@12:)",
                "|@13:|",
                "identifier@14:parallel",
                "(@22:(",
                "number@23:4",
                ")@24:)",
                "identifier@25:x",
                ".@26:.",
                "identifier@27:groupby",
                "(@34:(",
                "string@35:'cpu'",
                ")@40:)",
                "|@41:|",
                "identifier@42:window",
                "(@48:(",
                ")@49:)",
                ".@50:.",
                "identifier@51:period",
                "(@57:(",
                "duration@58:10s",
                ")@61:)",
                "EOF@62:",
            ],
        ),
        (
            "var x = avg()\n// Comment all of this is ignored\nx.groupby('cpu')",
            &[
                "var@0:var",
                "identifier@4:x",
                "=@6:=",
                "identifier@8:avg",
                "(@11:(",
                ")@12:)",
                "identifier@48:x",
                ".@49:.",
                "identifier@50:groupby",
                "(@57:(",
                "string@58:'cpu'",
                ")@63:)",
                "EOF@64:",
            ],
        ),
    ];
    for (src, want) in cases {
        assert_eq!(tokens(src), *want, "{src:?}");
    }
}

/// Lambda bodies from Kapacitor's `TestParseStatements` and
/// `TestParseStrings` (`tick/ast/parser_test.go`).
#[test]
fn parses_as_kapacitor() {
    let n = |i| lit_i(i);
    let arith = Node::binary(
        Op::Minus,
        Node::binary(Op::Plus, n(1), n(2)),
        Node::binary(Op::Div, Node::binary(Op::Mult, n(3), n(4)), n(5)),
    );
    let src = "\n\t// Test Left-Associative operators\n\t// should parse as ((1+2)-(3*4)/5)\n\t(1 + 2 - 3 * 4 / 5)\n";
    assert_eq!(parse(src).unwrap(), arith);
    let src = "\n// If this\n// is less than that\n(1 + 2 - 3 * 4 / 5) \n< (sin(6))\nAND \n// more comments.\n(TRUE OR FALSE)";
    let want = Node::binary(
        Op::And,
        Node::binary(
            Op::Lt,
            arith,
            Node::Call {
                name: "sin".into(),
                args: vec![n(6)],
            },
        ),
        Node::binary(
            Op::Or,
            Node::Literal(Literal::Bool(true)),
            Node::Literal(Literal::Bool(false)),
        ),
    );
    assert_eq!(parse(src).unwrap(), want);
    assert_eq!(
        parse("\"value\" < 10").unwrap(),
        Node::binary(Op::Lt, r("value"), n(10))
    );
    for (src, lit) in [
        ("'asdf'", "asdf"),
        ("'''asdf'''", "asdf"),
        (r"'a\'sdf'", "a'sdf"),
        (r"'''\'asdf'''", r"\'asdf"),
    ] {
        assert_eq!(
            parse(src).unwrap(),
            Node::Literal(Literal::String(lit.into())),
            "{src}"
        );
    }
}

#[test]
fn precedence_and_associativity() {
    assert_eq!(
        parse("1 + 2 * 3").unwrap(),
        Node::binary(
            Op::Plus,
            lit_i(1),
            Node::binary(Op::Mult, lit_i(2), lit_i(3))
        )
    );
    assert_eq!(
        parse("1 - 2 - 3").unwrap(),
        Node::binary(
            Op::Minus,
            Node::binary(Op::Minus, lit_i(1), lit_i(2)),
            lit_i(3)
        )
    );
    assert_eq!(
        parse("\"a\" > 1 AND \"b\" < 2 OR TRUE").unwrap(),
        Node::binary(
            Op::Or,
            Node::binary(
                Op::And,
                Node::binary(Op::Gt, r("a"), lit_i(1)),
                Node::binary(Op::Lt, r("b"), lit_i(2))
            ),
            Node::Literal(Literal::Bool(true))
        )
    );
    assert_eq!(
        parse("(1 + 2) * 3").unwrap(),
        Node::binary(
            Op::Mult,
            Node::binary(Op::Plus, lit_i(1), lit_i(2)),
            lit_i(3)
        )
    );
}

#[test]
fn unary_binds_to_primary() {
    assert_eq!(
        parse("-\"v\" + 1").unwrap(),
        Node::binary(Op::Plus, Node::unary(Op::Minus, r("v")), lit_i(1))
    );
    assert_eq!(
        parse("!FALSE == TRUE").unwrap(),
        Node::binary(
            Op::Eq,
            Node::unary(Op::Not, Node::Literal(Literal::Bool(false))),
            Node::Literal(Literal::Bool(true))
        )
    );
    assert_eq!(
        parse("2 - -1").unwrap(),
        Node::binary(Op::Minus, lit_i(2), Node::unary(Op::Minus, lit_i(1)))
    );
    assert_eq!(
        parse("2-1").unwrap(),
        Node::binary(Op::Minus, lit_i(2), lit_i(1))
    );
}

#[test]
fn literals() {
    assert_eq!(
        parse("010").unwrap(),
        lit_i(8),
        "a leading 0 is octal, as in Kapacitor"
    );
    assert!(parse("09").is_err());
    assert_eq!(parse("1.5").unwrap(), Node::Literal(Literal::Float(1.5)));
    assert_eq!(parse(".5").unwrap(), Node::Literal(Literal::Float(0.5)));
    assert_eq!(
        parse("10ms").unwrap(),
        Node::Literal(Literal::Duration(10_000_000))
    );
    assert_eq!(
        parse("5m").unwrap(),
        Node::Literal(Literal::Duration(300_000_000_000))
    );
    assert_eq!(
        parse("2w").unwrap(),
        Node::Literal(Literal::Duration(1_209_600_000_000_000))
    );
    assert_eq!(
        parse("3u").unwrap(),
        Node::Literal(Literal::Duration(3_000))
    );
    assert_eq!(
        parse("'it\\'s'").unwrap(),
        Node::Literal(Literal::String("it's".into()))
    );
    assert_eq!(
        parse("'a\\nb'").unwrap(),
        Node::Literal(Literal::String("a\\nb".into()))
    );
    assert_eq!(
        parse("''").unwrap(),
        Node::Literal(Literal::String(String::new()))
    );
    assert_eq!(
        parse("'''a'b'''").unwrap(),
        Node::Literal(Literal::String("a'b".into()))
    );
    assert_eq!(parse("\"a\\\"b\"").unwrap(), r("a\"b"));
    assert_eq!(
        parse("\"p\" =~ /a\\/b/").unwrap(),
        Node::binary(
            Op::RegexEq,
            r("p"),
            Node::Literal(Literal::Regex("a/b".into()))
        )
    );
}

#[test]
fn slash_is_division_after_an_operand_and_a_regex_elsewhere() {
    assert_eq!(
        parse("\"a\" / 2").unwrap(),
        Node::binary(Op::Div, r("a"), lit_i(2))
    );
    assert_eq!(
        parse("(4) / 2").unwrap(),
        Node::binary(Op::Div, lit_i(4), lit_i(2))
    );
    assert_eq!(
        parse("regexReplace(/x+/, \"s\", '')").unwrap(),
        Node::Call {
            name: "regexReplace".into(),
            args: vec![
                Node::Literal(Literal::Regex("x+".into())),
                r("s"),
                Node::Literal(Literal::String(String::new()))
            ]
        }
    );
    assert_eq!(
        parse("\"h\" !~ /^web/ AND TRUE").unwrap(),
        Node::binary(
            Op::And,
            Node::binary(
                Op::RegexNe,
                r("h"),
                Node::Literal(Literal::Regex("^web".into()))
            ),
            Node::Literal(Literal::Bool(true))
        )
    );
}

#[test]
fn calls_and_comments() {
    assert_eq!(
        parse("count()").unwrap(),
        Node::Call {
            name: "count".into(),
            args: vec![]
        }
    );
    assert_eq!(
        parse("pow(\"x\" * 2.0, -\"y\")").unwrap(),
        Node::Call {
            name: "pow".into(),
            args: vec![
                Node::binary(Op::Mult, r("x"), Node::Literal(Literal::Float(2.0))),
                Node::unary(Op::Minus, r("y"))
            ]
        }
    );
    assert_eq!(
        parse("\"a\" > 1 // high\n").unwrap(),
        Node::binary(Op::Gt, r("a"), lit_i(1))
    );
    assert_eq!(parse("value").unwrap(), Node::Ident("value".into()));
}

#[test]
fn errors_name_the_column() {
    let e = parse("\"value\" >> 90").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot parse '\"value\" >> 90' at column 10: unexpected '>'"
    );
    let e = parse("\"value\" > ").unwrap_err();
    assert_eq!(e.column, 11);
    assert_eq!(e.msg, "unexpected end of expression");
    let e = parse("'abc").unwrap_err();
    assert_eq!((e.column, e.msg.as_str()), (1, "unterminated string"));
    let e = parse("\"a\" > 1 )").unwrap_err();
    assert_eq!((e.column, e.msg.as_str()), (9, "unexpected ')'"));
    let e = parse("1.2.3").unwrap_err();
    assert_eq!(e.msg, "multiple decimals in number");
    assert_eq!(
        parse("lambda: \"a\" > 1").unwrap(),
        parse("\"a\" > 1").unwrap()
    );
    assert!(
        parse(&"1 + ".repeat(600))
            .unwrap_err()
            .msg
            .contains("too long")
    );
    let e = parse("\"a\" > 1\n AND \"b\" ==").unwrap_err();
    assert_eq!((e.line, e.column), (2, 12));
    assert!(e.to_string().contains("at line 2, column 12"));
    assert!(
        parse("\"a\" =~ /(/").is_err(),
        "regexes compile at parse time"
    );
    assert!(parse("+5").is_err());
    assert!(parse("").is_err());
    assert!(parse("f(,)").is_err());
    assert!(
        parse("f(1,)").is_ok(),
        "Kapacitor's parameter loop accepts a trailing comma"
    );
}
