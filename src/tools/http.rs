//! The local HTTP listener (loopback by default, `http_addr`): what an
//! operator and Prometheus ask the running agent.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | every series, Prometheus/OpenMetrics text |
//! | `GET /healthz` | `200 ok`: the process is up and serving HTTP |
//! | `GET /readyz` | `200 ready`, or `503` with one reason per line (sockets not listening, outbox degraded, `max_connections` reached) |
//! | `GET /api/v1/alerts` | `{"alerts": [OpenAlert…]}`: the open alerts (see [`crate::tools::status`]) |
//!
//! Anything else is `404`; another method on a known route `405`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::tools::status::{OpenAlert, alerts_view, readiness};

/// The path of the open-alerts API.
pub const ALERTS_PATH: &str = "/api/v1/alerts";

/// The body of `GET /api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertsResponse {
    pub alerts: Vec<OpenAlert>,
}

/// The listener could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for HTTP on {addr}: {source} (set http_addr / --http-addr to another address, or \"off\")"
)]
pub struct HttpError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// The file in the data directory where `serve` records the address it
/// listens on, so `alerts` finds an agent started with port 0.
pub fn addr_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("http.addr")
}

/// Binds the listener; the caller learns the real port (for `:0`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })
}

/// Serves requests until `shutdown` is cancelled; open connections finish
/// their current request.
pub async fn serve_http(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service_fn(handle));
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(route(req.method(), req.uri().path()))
}

/// The answer to one request (no body is read: every route is a GET).
fn route(method: &Method, path: &str) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | ALERTS_PATH);
    if !known {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics, /healthz, /readyz, /api/v1/alerts\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::ops::metrics::encode(),
        ),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => match readiness().check() {
            Ok(()) => reply(StatusCode::OK, TEXT, "ready\n"),
            Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, why.join("\n") + "\n"),
        },
        _ => {
            let body = AlertsResponse {
                alerts: alerts_view().list(),
            };
            // The output boundary: a delivery detail may quote an endpoint's
            // answer, which may echo the integration URL.
            match serde_json::to_string(&body) {
                Ok(json) => reply(
                    StatusCode::OK,
                    "application/json",
                    crate::ops::redact::text(&json, &[]),
                ),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(r: Response<Full<Bytes>>) -> (StatusCode, String) {
        let status = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(b.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn routes_answer() {
        let (s, b) = body(route(&Method::GET, "/healthz")).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "ok\n"));
        crate::ops::metrics::metrics().batches_total.inc();
        let (s, b) = body(route(&Method::GET, "/metrics")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(b.contains("kapacitor_pagertree_batches_total"), "{b}");
        let (s, _) = body(route(&Method::GET, "/nope")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = body(route(&Method::POST, "/metrics")).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        let (s, b) = body(route(&Method::GET, ALERTS_PATH)).await;
        assert_eq!(s, StatusCode::OK);
        let parsed: AlertsResponse = serde_json::from_str(&b).unwrap();
        assert!(parsed.alerts.iter().all(|a| !a.id.is_empty()));
    }

    #[tokio::test]
    async fn serves_over_tcp_and_stops() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_http(listener, stop.clone()));
        let resp = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok\n");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
