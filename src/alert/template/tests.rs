//! Unit tests of the template layer. Expected strings were probed with Go
//! 1.19's text/template and html/template (the larger Go fixture set is in
//! tests/data/go_templates.json, driven by tests/templates.rs).

use super::*;

fn server_info() -> ServerInfo {
    ServerInfo {
        hostname: "localhost".into(),
        cluster_id: "cid".into(),
        server_id: "sid".into(),
    }
}

struct Fixture {
    tags: BTreeMap<String, String>,
    hashed_tags: HashMap<String, String>,
    fields: BTreeMap<String, FieldValue>,
    point: crate::proto::Point,
    server_info: ServerInfo,
}

fn fixture() -> Fixture {
    let tags: BTreeMap<String, String> = [("host", "a<b>&\"c'+"), ("z", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut fields = BTreeMap::new();
    fields.insert("f".to_owned(), FieldValue::Float(1234567.0));
    fields.insert("i".to_owned(), FieldValue::Int(10));
    fields.insert("s".to_owned(), FieldValue::String("x<y".into()));
    fields.insert("b".to_owned(), FieldValue::Bool(true));
    let mut point = crate::proto::Point::default();
    point.fields_double.insert("f".into(), 1234567.0);
    point.fields_int.insert("i".into(), 10);
    point.fields_string.insert("s".into(), "x<y".into());
    point.fields_bool.insert("b".into(), true);
    Fixture {
        hashed_tags: tags.clone().into_iter().collect(),
        tags,
        fields,
        point,
        server_info: server_info(),
    }
}

impl Fixture {
    fn data(&self) -> TemplateData<'_> {
        TemplateData {
            name: "cpu",
            task_name: "task",
            group: "",
            tags: Tags::Sorted(&self.tags),
            server_info: &self.server_info,
            id: "cpu:nil",
            fields: Fields::Map(&self.fields),
            level: Level::CRITICAL,
            time: 31_536_010_000_005_000,
            duration: 90_000_000_000,
            message: "m<sg>",
            details: "d",
        }
    }

    /// The same data held the way a UDF point holds it.
    fn point_data(&self) -> TemplateData<'_> {
        TemplateData {
            tags: Tags::Unsorted(&self.hashed_tags),
            fields: Fields::Point(&self.point),
            ..self.data()
        }
    }
}

fn render(
    engine: Engine,
    scope: Scope,
    src: &str,
    d: &TemplateData<'_>,
) -> Result<String, TemplateError> {
    Template::parse(engine, scope, src)?.render(d)
}

#[test]
fn templates_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Template>();
    check::<AlertTemplates>();
    let fx = fixture();
    let t = Template::parse(Engine::Html, Scope::Details, "<b>{{ .Message }}</b>").unwrap();
    assert_eq!(t.clone().render(&fx.data()).unwrap(), "<b>m&lt;sg&gt;</b>");
}

#[test]
fn defaults_render_as_kapacitor() {
    let fx = fixture();
    let d = fx.data();
    let id = Template::parse(Engine::Text, Scope::Id, DEFAULT_ID).unwrap();
    let message = Template::parse(Engine::Text, Scope::Message, DEFAULT_MESSAGE).unwrap();
    let details = Template::parse(Engine::Html, Scope::Details, DEFAULT_DETAILS).unwrap();
    assert!(id.is_fast() && message.is_fast() && details.is_fast());
    assert_eq!(id.render(&d).unwrap(), "cpu:nil");
    assert_eq!(message.render(&d).unwrap(), "cpu:nil is CRITICAL");
    let want = "{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;:&#34;task&#34;,&#34;Group&#34;:&#34;nil&#34;,\
&#34;Tags&#34;:{&#34;host&#34;:&#34;a\\u003cb\\u003e\\u0026\\&#34;c&#39;&#43;&#34;,&#34;z&#34;:&#34;1&#34;},\
&#34;ServerInfo&#34;:{&#34;Hostname&#34;:&#34;localhost&#34;,&#34;ClusterID&#34;:&#34;cid&#34;,&#34;ServerID&#34;:&#34;sid&#34;},\
&#34;ID&#34;:&#34;cpu:nil&#34;,&#34;Fields&#34;:{&#34;b&#34;:true,&#34;f&#34;:1234567,&#34;i&#34;:10,&#34;s&#34;:&#34;x\\u003cy&#34;},\
&#34;Level&#34;:&#34;CRITICAL&#34;,&#34;Time&#34;:&#34;1971-01-01T00:00:10.000005Z&#34;,&#34;Duration&#34;:90000000000,\
&#34;Message&#34;:&#34;m\\u003csg\\u003e&#34;}\n";
    assert_eq!(details.render(&d).unwrap(), want);
    assert_eq!(details.render_slow(&d).unwrap(), want);
    // A UDF point's hashed maps give the same bytes.
    assert_eq!(details.render(&fx.point_data()).unwrap(), want);
    assert_eq!(details.render_slow(&fx.point_data()).unwrap(), want);
}

#[test]
fn point_maps_and_btree_maps_render_alike() {
    let fx = fixture();
    for src in [
        "{{ .Fields }}|{{ .Tags }}|{{ index .Fields \"f\" }}|{{ .Fields.s }}|{{ index .Tags \"nope\" }}",
        "{{ range $k, $v := .Fields }}{{ $k }}={{ $v }},{{ end }}",
        "{{ jsonCompact .Fields }}{{ jsonCompact .Tags }}",
    ] {
        for (engine, scope) in [
            (Engine::Text, Scope::Message),
            (Engine::Html, Scope::Details),
        ] {
            if engine == Engine::Text && src.contains("json") {
                continue;
            }
            let t = Template::parse(engine, scope, src).unwrap();
            assert_eq!(
                t.render(&fx.data()).unwrap(),
                t.render(&fx.point_data()).unwrap(),
                "{src}"
            );
        }
    }
    let t = Template::parse(Engine::Text, Scope::Message, "{{ .Fields }}").unwrap();
    assert_eq!(
        t.render(&fx.point_data()).unwrap(),
        "map[b:true f:1.234567e+06 i:10 s:x<y]"
    );
}

#[test]
fn go_printing_in_templates() {
    let fx = fixture();
    let d = fx.data();
    let msg = |src: &str| render(Engine::Text, Scope::Message, src, &d).unwrap();
    assert_eq!(
        msg("{{ .Fields.f }} {{ index .Fields \"i\" }}"),
        "1.234567e+06 10"
    );
    assert_eq!(
        msg("{{ .Time }} / {{ .Duration }}"),
        "1971-01-01 00:00:10.000005 +0000 UTC / 1m30s"
    );
    assert_eq!(
        msg("{{ printf \"%.1f|%v|%s\" .Fields.f .Fields.f .Name }}"),
        "1234567.0|1.234567e+06|cpu"
    );
    assert_eq!(msg("{{ .Fields.f | printf \"%v\" }}"), "1.234567e+06");
    assert_eq!(
        msg("{{ index .Tags \"nope\" }}|{{ .Tags.nope }}|{{ index .Fields \"nope\" }}"),
        "|<no value>|<no value>"
    );
    assert_eq!(msg("{{ .ServerInfo }}"), "{localhost cid sid}");
    assert_eq!(
        render(Engine::Text, Scope::Id, "{{ . }}", &d).unwrap(),
        "{cpu task nil map[host:a<b>&\"c'+ z:1] {localhost cid sid}}"
    );
    // Messages are never escaped; details are, by context.
    assert_eq!(msg("{{ .Tags.host }}"), "a<b>&\"c'+");
    assert_eq!(
        render(
            Engine::Html,
            Scope::Details,
            "<a href=\"/h?x={{ .Tags.host }}\">{{ .Message }}</a>",
            &d
        )
        .unwrap(),
        "<a href=\"/h?x=a%3cb%3e%26%22c%27%2b\">m&lt;sg&gt;</a>"
    );
    assert_eq!(
        render(
            Engine::Html,
            Scope::Details,
            "{{ index .Fields \"nope\" }}",
            &d
        )
        .unwrap(),
        ""
    );
}

#[test]
fn nan_fields() {
    let mut fx = fixture();
    fx.fields.insert("n".into(), FieldValue::Float(f64::NAN));
    let d = fx.data();
    assert_eq!(
        render(Engine::Text, Scope::Message, "{{ .Fields.n }}", &d).unwrap(),
        "NaN"
    );
    // Go's encoder refuses NaN; Kapacitor's json then yields nothing.
    let details = Template::parse(Engine::Html, Scope::Details, DEFAULT_DETAILS).unwrap();
    assert_eq!(details.render(&d).unwrap(), "");
    assert_eq!(details.render_slow(&d).unwrap(), "");
}

#[test]
fn group_is_nil_for_node_templates_and_raw_for_handlers() {
    let fx = fixture();
    let d = fx.data();
    assert_eq!(
        render(Engine::Text, Scope::Id, "[{{ .Group }}]", &d).unwrap(),
        "[nil]"
    );
    assert_eq!(
        render(Engine::Text, Scope::Handler, "[{{ .Group }}]", &d).unwrap(),
        "[]"
    );
    let grouped = TemplateData {
        group: "host=a",
        ..d
    };
    assert_eq!(
        render(Engine::Text, Scope::Id, "[{{ .Group }}]", &grouped).unwrap(),
        "[host=a]"
    );
    assert_eq!(
        render(Engine::Text, Scope::Handler, "{{ .Details }}", &d).unwrap(),
        "d"
    );
}

#[test]
fn fields_outside_the_scope_fail_at_render_like_go() {
    let fx = fixture();
    let d = fx.data();
    // Parsing succeeds (Go checks fields at execution) …
    let t = Template::parse(Engine::Text, Scope::Id, "x{{ .Fields }}").unwrap();
    // … rendering fails with Go's message and position.
    let err = t.render(&d).unwrap_err().to_string();
    assert!(
        err.contains("template: id:1:4: executing \"id\" at <.Fields>: can't evaluate field Fields in type kapacitor.idInfo"),
        "{err}"
    );
    let err = render(Engine::Text, Scope::Message, "{{ .Message }}", &d)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("can't evaluate field Message in type kapacitor.messageInfo"),
        "{err}"
    );
    let err = render(Engine::Html, Scope::Details, "{{ .ServerInfo.Nope }}", &d)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1:14") && err.contains("in type kapacitor.serverInfo"),
        "{err}"
    );
    let err = render(Engine::Text, Scope::Message, "{{ .Time.Nope }}", &d)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("can't evaluate field Nope in type time.Time"),
        "{err}"
    );
    // A branch never taken does not fail, as in Go.
    assert_eq!(
        render(
            Engine::Text,
            Scope::Id,
            "{{ if false }}{{ .Nope }}{{ end }}ok",
            &d
        )
        .unwrap(),
        "ok"
    );
}

#[test]
fn parse_errors_are_readable() {
    let e = Template::parse(Engine::Text, Scope::Message, "{{ .ID }} {{ .Name")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid message template: template: message:1:"),
        "{e}"
    );
    let e = Template::parse(Engine::Text, Scope::Message, "\n{{ nope .ID }}")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid message template: template: message:2: function \"nope\" not defined"
    );
    // json belongs to details (html/template) only, as in Kapacitor.
    let e = Template::parse(Engine::Text, Scope::Message, "{{ json . }}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("function \"json\" not defined"), "{e}");
    let e = Template::parse(Engine::Html, Scope::Details, "{{ if .ID }}")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("invalid details template"), "{e}");
}

#[test]
fn html_escaping_errors_surface_at_parse() {
    let e = Template::parse(Engine::Html, Scope::Details, "<a href=\"{{ .ID }}")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid details template: html/template"),
        "{e}"
    );
}

#[test]
fn empty_templates_render_empty() {
    let fx = fixture();
    for (engine, scope) in [
        (Engine::Text, Scope::Id),
        (Engine::Text, Scope::Message),
        (Engine::Html, Scope::Details),
    ] {
        assert_eq!(render(engine, scope, "", &fx.data()).unwrap(), "");
    }
}

#[test]
fn defined_templates_and_variables() {
    let fx = fixture();
    let d = fx.data();
    let src = "{{ define \"h\" }}<{{ index .Tags \"z\" }}>{{ end }}{{ template \"h\" . }}{{ $f := .Fields }}{{ $f.f }}";
    assert_eq!(
        render(Engine::Text, Scope::Message, src, &d).unwrap(),
        "<1>1.234567e+06"
    );
    // Go: the `<` opens a tag, so the value is escaped for a tag name.
    assert_eq!(
        render(Engine::Html, Scope::Details, src, &d).unwrap(),
        "&lt;1>1.234567e&#43;06"
    );
}

#[test]
fn unbalanced_blocks_are_parse_errors_like_go() {
    for (src, want) in [
        ("{{ if .ID }}", "template: message:1: unexpected EOF"),
        (
            "a\n{{ range .Tags }}x{{ if 1 }}{{ end }}",
            "template: message:2: unexpected EOF",
        ),
        ("x{{ end }}y", "template: message:1: unexpected {{end}}"),
        ("{{ else }}", "template: message:1: unexpected {{else}}"),
    ] {
        let e = Template::parse(Engine::Text, Scope::Message, src)
            .unwrap_err()
            .to_string();
        assert_eq!(e, format!("invalid message template: {want}"), "{src:?}");
    }
    // Strings, raw strings and comments may hold anything.
    let fx = fixture();
    let src = "{{/* {{ if */}}{{ \"{{ end }}\" }}{{ `}}{{end` }}{{ if true }}{{ '}' }}{{ end }}";
    assert_eq!(
        render(Engine::Text, Scope::Message, src, &fx.data()).unwrap(),
        "{{ end }}}}{{end125"
    );
}

#[test]
fn alert_templates_render_message_then_details() {
    let fx = fixture();
    let t = AlertTemplates::parse(None, Some("{{ .ID }}!"), Some("<i>{{ .Message }}</i>")).unwrap();
    assert!(t.id.is_default() && !t.message.is_default() && !t.details.is_default());
    let mut d = fx.data();
    let id = t.id.render(&d).unwrap();
    d.id = &id;
    d.message = "ignored";
    let (message, details) = t.render_message_and_details(&d).unwrap();
    assert_eq!(
        (message.as_str(), details.as_str()),
        ("cpu:nil!", "<i>cpu:nil!</i>")
    );
    let e = AlertTemplates::parse(None, None, Some("{{ nope }}")).unwrap_err();
    assert!(
        matches!(
            e,
            TemplateError::Parse {
                template: "details",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn time_and_duration_methods() {
    let fx = fixture();
    let d = fx.data();
    let msg = |src: &str| render(Engine::Text, Scope::Message, src, &d).unwrap();
    assert_eq!(
        msg("{{ .Time.Unix }} {{ .Time.Format \"15:04:05.000 Jan _2\" }}"),
        "31536010 00:00:10.000 Jan  1"
    );
    assert_eq!(
        msg("{{ .Time.UTC.Year }} {{ $.Time.Month }} {{ (.Time).Weekday }}"),
        "1971 January Friday"
    );
    assert_eq!(
        msg(
            "{{ .Duration.Minutes }} {{ .Duration | printf \"%s\" }} {{ .Duration.Seconds | printf \"%.0f\" }}"
        ),
        "1.5 1m30s 90"
    );
    assert_eq!(
        msg("{{ with .Time }}{{ .Format \"2006\" }}{{ end }}"),
        "1971"
    );
    assert_eq!(
        render(
            Engine::Html,
            Scope::Details,
            "{{ .Time.Format \"Z07:00 -0700\" }}",
            &d
        )
        .unwrap(),
        "Z &#43;0000"
    );
    assert!(render(Engine::Text, Scope::Message, "{{ .Time.Format }}", &d).is_err());
}

#[test]
fn id_data_from_a_udf_point() {
    let fx = fixture();
    let mut p = fx.point.clone();
    p.name = "cpu".into();
    p.group = "host=a".into();
    p.tags.insert("host".into(), "a".into());
    let d = TemplateData::new(&p.name, "task", &p.group, (&p.tags).into(), &fx.server_info);
    let t = Template::parse(
        Engine::Text,
        Scope::Id,
        "{{ .Name }}/{{ index .Tags \"host\" }}/{{ .Group }}",
    )
    .unwrap();
    assert_eq!(t.render(&d).unwrap(), "cpu/a/host=a");
    let m = Template::parse(Engine::Text, Scope::Message, "{{ .Fields.f }} {{ .Level }}").unwrap();
    let d = TemplateData {
        fields: (&p).into(),
        level: Level::WARNING,
        ..d
    };
    assert_eq!(m.render(&d).unwrap(), "1.234567e+06 WARNING");
}

#[test]
fn defined_templates_know_their_dot() {
    let fx = fixture();
    let d = fx.data();
    let src = "{{ define \"d\" }}{{ jsonCompact . }}{{ end }}{{ define \"s\" }}{{ . }}{{ end }}{{ template \"d\" . }}|{{ template \"s\" .ServerInfo }}";
    let out = render(Engine::Html, Scope::Details, src, &d).unwrap();
    assert!(
        out.starts_with("{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;"),
        "{out}"
    );
    assert!(out.ends_with("|{localhost cid sid}"), "{out}");
    let err = render(
        Engine::Text,
        Scope::Id,
        "{{ define \"x\" }}{{ .Nope }}{{ end }}{{ template \"x\" . }}",
        &d,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("can't evaluate field Nope in type kapacitor.idInfo"),
        "{err}"
    );
    // Nested: main → b → a, with the struct passed down (either order).
    let src = "{{ define \"a\" }}{{ .ServerInfo }}{{ end }}{{ define \"b\" }}{{ template \"a\" . }}{{ end }}{{ template \"b\" . }}";
    assert_eq!(
        render(Engine::Text, Scope::Id, src, &d).unwrap(),
        "{localhost cid sid}"
    );
    let src = "{{ define \"b\" }}{{ .ServerInfo }}{{ end }}{{ define \"a\" }}{{ template \"b\" . }}{{ end }}{{ template \"a\" . }}";
    assert_eq!(
        render(Engine::Text, Scope::Id, src, &d).unwrap(),
        "{localhost cid sid}"
    );
}

#[test]
fn error_positions_survive_non_ascii_sources() {
    let fx = fixture();
    // The reported column falls inside "é€": it must not split a character.
    let err = render(
        Engine::Text,
        Scope::Message,
        "{{ (\"é€é€\").Nope }}",
        &fx.data(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("can't evaluate field Nope in type string"),
        "{err}"
    );
    let err = render(
        Engine::Text,
        Scope::Message,
        "é€{{ (.ServerInfo).Nope }}",
        &fx.data(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("can't evaluate field Nope in type kapacitor.serverInfo"),
        "{err}"
    );
}

#[test]
fn floats_in_javascript_contexts() {
    let mut fx = fixture();
    fx.fields.insert("small".into(), FieldValue::Float(0.5));
    let d = fx.data();
    let src =
        "<script>var a = {{ .Fields.small }}, b = {{ .Fields.i }}, c = {{ .Fields.f }};</script>";
    // Go prints `c = 1234567`; this agent quotes the floats whose Go text
    // differs from Rust's (|x| ≥ 1e6 or < 1e-4), see the module docs.
    assert_eq!(
        render(Engine::Html, Scope::Details, src, &d).unwrap(),
        "<script>var a =  0.5 , b =  10 , c = \"1.234567e+06\";</script>"
    );
}
