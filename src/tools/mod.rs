//! The agent's operator-facing surfaces, above the layers they show:
//!
//! - [`status`]: readiness and the open alerts, set by the layers that know.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, `/api/v1/alerts`.
//! - [`simulate`]: replays recorded points through a TICKscript's node
//!   ([`tick`] reads the script, [`lineproto`] the points).

pub mod http;
pub mod lineproto;
pub mod simulate;
pub mod status;
pub mod tick;
