//! The agent's operator-facing surfaces, above the layers they show:
//!
//! - [`status`]: readiness and the open alerts, set by the layers that know.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, `/api/v1/alerts`.
//! - [`alerts`]: the `alerts` command's client of that API and its table.
//! - [`check`]: the `check` command's summary and `--connect` round.
//! - [`probe`]: `check --connect`'s reachability GET.
//! - [`simulate`]: replays recorded points through a TICKscript's node
//!   ([`tick`] reads the script, [`lineproto`] the points).
//! - [`generate`]: the man pages and shell completions the packages ship.

pub mod alerts;
pub mod check;
pub mod generate;
pub mod http;
pub mod lineproto;
pub mod probe;
pub mod simulate;
pub mod status;
pub mod tick;
