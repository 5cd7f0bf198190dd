use super::*;

#[test]
fn empty_file_gives_defaults() {
    let c = Config::from_toml("", "t.toml").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(
        c.server.stream_socket_path(),
        PathBuf::from("./kapacitor-pagertree-data/stream.sock")
    );
}

#[test]
fn unknown_key_is_named() {
    let e = Config::from_toml("[delivery]\nretry_maxx = \"1s\"\n", "t.toml").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("retry_maxx"), "{text}");
    assert!(text.contains("t.toml"), "{text}");
}

#[test]
fn durations_and_endpoints_parse() {
    let c = Config::from_toml(
        "[delivery]\nretry_max = \"2m\"\n[endpoints.ops]\nurl = \"https://x/integration/int_1\"\nformat = \"webhook\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.delivery.retry_max, Duration::from_secs(120));
    assert_eq!(c.endpoints["ops"].format, PayloadFormat::Webhook);
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn invalid_keys(e: &ConfigErrors) -> Vec<String> {
    e.0.iter()
        .filter_map(|e| match e {
            ConfigError::Invalid { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn url_shortcut_defines_the_default_endpoint() {
    let l = Config::load_effective(
        None,
        env(&[(
            "KAPACITOR_PAGERTREE_URL",
            "https://api.pagertree.com/integration/int_x",
        )]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(l.config.delivery.default_endpoint, "default");
    assert_eq!(
        l.config.endpoints["default"].url,
        "https://api.pagertree.com/integration/int_x"
    );
    assert_eq!(
        l.origins.of("endpoints.default.url"),
        "environment KAPACITOR_PAGERTREE_URL"
    );
}

#[test]
fn env_sets_every_table_and_endpoint_keys() {
    let mut c =
        Config::from_toml("[endpoints.ops-team]\nurl = \"https://a/b\"\n", "f.toml").unwrap();
    let mut o = Origins::default();
    let w = c
        .apply_env(
            env(&[
                ("KAPACITOR_PAGERTREE_SERVER_DATA_DIR", "/var/lib/x"),
                ("KAPACITOR_PAGERTREE_KAPACITOR_REVIVE_TASKS", "false"),
                ("KAPACITOR_PAGERTREE_DELIVERY_RETRY_MAX", "2m"),
                (
                    "KAPACITOR_PAGERTREE_ENDPOINTS_OPS_TEAM_CONNECT_TIMEOUT",
                    "3s",
                ),
                ("KAPACITOR_PAGERTREE_ENDPOINTS_OPS_TEAM_FORMAT", "webhook"),
                ("KAPACITOR_PAGERTREE_ENDPOINTS_NEW_URL", "http://n/"),
                ("KAPACITOR_PAGERTREE_CONFIG", "ignored.toml"),
                ("KAPACITOR_PAGERTREE_SOMETHING", "x"),
                ("PATH", "/bin"),
            ]),
            &mut o,
        )
        .unwrap();
    assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/x"));
    assert!(!c.kapacitor.revive_tasks);
    assert_eq!(c.delivery.retry_max, Duration::from_secs(120));
    assert_eq!(
        c.endpoints["ops-team"].connect_timeout,
        Duration::from_secs(3)
    );
    assert_eq!(c.endpoints["ops-team"].format, PayloadFormat::Webhook);
    assert_eq!(c.endpoints["new"].url, "http://n/");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("KAPACITOR_PAGERTREE_SOMETHING"));
    assert_eq!(
        o.of("delivery.retry_max"),
        "environment KAPACITOR_PAGERTREE_DELIVERY_RETRY_MAX"
    );
}

#[test]
fn env_errors_name_the_variable_and_key() {
    let mut c = Config::default();
    let e = c
        .apply_env(
            env(&[
                ("KAPACITOR_PAGERTREE_DELIVERY_RETRY_MAXX", "2m"),
                ("KAPACITOR_PAGERTREE_DELIVERY_CONCURRENCY", "many"),
                ("KAPACITOR_PAGERTREE_ENDPOINTS_OPS_FORMAT", "xml"),
            ]),
            &mut Origins::default(),
        )
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "environment KAPACITOR_PAGERTREE_DELIVERY_RETRY_MAXX: delivery.retry_maxx: unknown key"
        ),
        "{text}"
    );
    assert!(
        text.contains("delivery.concurrency: \"many\" is not a whole number"),
        "{text}"
    );
    assert!(
        text.contains("endpoints.ops.format: \"xml\" is not a format"),
        "{text}"
    );
}

#[test]
fn precedence_flags_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[server]\nhttp_addr = \"127.0.0.1:1\"\nlog_level = \"warn\"\ndata_dir = \"/f\"\n",
    )
    .unwrap();
    let l = Config::load_effective(
        Some(&path),
        env(&[
            ("KAPACITOR_PAGERTREE_SERVER_HTTP_ADDR", "127.0.0.1:2"),
            ("KAPACITOR_PAGERTREE_SERVER_LOG_LEVEL", "debug"),
        ]),
        &Overrides {
            http_addr: Some("off".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(l.config.server.http_addr, "off");
    assert_eq!(l.config.server.log_level, "debug");
    assert_eq!(l.config.server.data_dir, PathBuf::from("/f"));
    assert_eq!(l.origins.of("server.http_addr"), "flag --http-addr");
    assert_eq!(l.origins.of("server.data_dir"), path.display().to_string());
}

#[test]
fn validation_collects_every_error_with_origin() {
    let text = "[server]\nsocket_mode = \"0999\"\nlog_format = \"xml\"\nhttp_addr = \"localhost\"\n\
                [delivery]\ndefault_endpoint = \"nope\"\nretry_initial = \"10m\"\n\
                [endpoints.a]\nurl = \"ftp://x/y\"\n[endpoints.b]\nurl = \"\"\n";
    let c = Config::from_toml(text, "c.toml").unwrap();
    let o = Origins {
        file: Some("c.toml".into()),
        ..Default::default()
    };
    let e = c.validate(&o).unwrap_err();
    let keys = invalid_keys(&e);
    for k in [
        "server.socket_mode",
        "server.log_format",
        "server.http_addr",
        "delivery.default_endpoint",
        "delivery.retry_max",
        "endpoints.a.url",
        "endpoints.b.url",
    ] {
        assert!(keys.contains(&k.to_string()), "{k} missing in {e}");
    }
    assert!(e.to_string().starts_with("c.toml: "), "{e}");
    assert!(
        e.to_string()
            .contains("scheme \"ftp\" is not http or https"),
        "{e}"
    );
}

#[test]
fn long_socket_paths_and_equal_sockets_are_refused() {
    let mut c = Config::default();
    c.server.data_dir = PathBuf::from(format!("/{}", "d".repeat(120)));
    c.server.batch_socket = Some(PathBuf::from("/run/x.sock"));
    let keys = invalid_keys(&c.validate(&Origins::default()).unwrap_err());
    assert_eq!(keys, vec!["server.stream_socket".to_string()]);
    let mut c = Config::default();
    c.server.stream_socket = Some(PathBuf::from("/run/x.sock"));
    c.server.batch_socket = Some(PathBuf::from("/run/x.sock"));
    let keys = invalid_keys(&c.validate(&Origins::default()).unwrap_err());
    assert_eq!(keys, vec!["server.batch_socket".to_string()]);
}

#[test]
fn max_connections_is_bounded() {
    for bad in [0, MAX_MAX_CONNECTIONS + 1] {
        let mut c = Config::default();
        c.server.max_connections = bad;
        let keys = invalid_keys(&c.validate(&Origins::default()).unwrap_err());
        assert_eq!(keys, vec!["server.max_connections".to_string()]);
    }
    let mut c = Config::default();
    c.set("server.max_connections", "3").unwrap();
    assert_eq!(c.server.max_connections, 3);
    assert_eq!(Config::default().server.max_connections, 1024);
}

#[test]
fn defaults_are_valid_and_warn_about_no_endpoint() {
    let w = Config::default().validate(&Origins::default()).unwrap();
    assert!(w.iter().any(|w| w.contains("no endpoint")), "{w:?}");
}

#[test]
fn a_public_http_addr_warns() {
    let mut c = Config::default();
    c.endpoints.insert(
        "a".into(),
        EndpointConfig {
            url: "https://x/y".into(),
            ..Default::default()
        },
    );
    c.delivery.default_endpoint = "a".into();
    assert!(c.validate(&Origins::default()).unwrap().is_empty());
    c.server.http_addr = "0.0.0.0:9096".into();
    let w = c.validate(&Origins::default()).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("not a loopback address"), "{w:?}");
    c.server.http_addr = "[::1]:9096".into();
    assert!(c.validate(&Origins::default()).unwrap().is_empty());
}

#[test]
fn token_with_kapacitor_format_warns() {
    let c = Config::from_toml(
        "[delivery]\ndefault_endpoint = \"a\"\n[endpoints.a]\nurl = \"https://x/y\"\ntoken = \"t\"\n",
        "c.toml",
    )
    .unwrap();
    let w = c.validate(&Origins::default()).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("endpoints.a.token"));
}

#[test]
fn redaction_keeps_only_scheme_host_and_path_shape() {
    assert_eq!(
        crate::ops::redact::url("https://api.pagertree.com/integration/int_secret?token=x"),
        "https://api.pagertree.com/integration/int_se…?…"
    );
    assert_eq!(
        crate::ops::redact::url("http://127.0.0.1:8080/"),
        "http://127.0.0.1:8080/"
    );
    assert_eq!(
        crate::ops::redact::url("http://u:p@[::1/integration/int_secret"),
        "http://…@[::1/integration/int_se…"
    );
}

#[test]
fn log_level_filters_are_checked() {
    let mut c = Config::default();
    c.server.log_level = "debug,hyper=warn".into();
    assert!(c.validate(&Origins::default()).is_ok());
    c.server.log_level = "loud=[".into();
    let keys = invalid_keys(&c.validate(&Origins::default()).unwrap_err());
    assert_eq!(keys, vec!["server.log_level".to_string()]);
}
