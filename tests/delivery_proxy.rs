//! Requests go through the proxy named in the environment (`HTTP_PROXY`
//! here; `HTTPS_PROXY` is read the same way by reqwest and tunnels TLS with
//! CONNECT). A separate test binary: the environment is process-wide.

#[path = "support/pagertree.rs"]
mod pagertree;

use std::time::Duration;

use kapacitor_pagertree::delivery::cli;
use kapacitor_pagertree::ops::config::Config;
use pagertree::{FakePagerTree, Fmt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_use_the_proxy_from_the_environment() {
    let fake = FakePagerTree::start().await;
    fake.integration("int_viaPROXY1", Fmt::Kapacitor, None);
    // SAFETY: the only test of this binary; no other thread reads the
    // environment while it is set.
    unsafe {
        std::env::set_var("HTTP_PROXY", format!("http://{}", fake.addr()));
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    // A host that does not resolve: only the proxy can deliver this.
    let url = "http://pagertree.invalid/integration/int_viaPROXY1";
    let cfg = Config::from_toml(&format!("[endpoints.p]\nurl = \"{url}\"\n"), "t").unwrap();
    let r = cli::send_test(&cfg, Some("p"), None, None).await.unwrap();
    assert!(r.ok(), "{r}");
    assert!(fake.wait_accepted(2, Duration::from_secs(5)).await);
    let seen = fake.seen();
    assert!(
        seen[0].path.starts_with("http://pagertree.invalid/"),
        "{:?}",
        seen[0].path
    );
}
