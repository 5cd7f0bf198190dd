//! Unit tests of the template layer against Go's output (probed with Go 1.19).

use super::*;

fn server_info() -> ServerInfo {
    ServerInfo {
        hostname: "localhost".into(),
        cluster_id: "cid".into(),
        server_id: "sid".into(),
    }
}

#[test]
fn default_id_renders_nil_group() {
    let si = server_info();
    let tags = BTreeMap::new();
    let mut d = sample_data();
    d.name = "cpu";
    d.tags = Tags::Sorted(&tags);
    d.server_info = &si;
    let t = Template::parse(Engine::Text, Scope::Id, DEFAULT_ID).unwrap();
    assert!(t.is_fast());
    assert_eq!(t.render(&d).unwrap(), "cpu:nil");
    assert_eq!(t.render_slow(&d).unwrap(), "cpu:nil");
}
