//! The seam between a session and a node, after Kapacitor's Go agent
//! (`udf/agent`): the session owns bytes, framing, keepalives, snapshots and
//! the writer; a [`Handler`] owns what points mean and never sees a socket.

use crate::alert::Event;
use crate::proto::{BeginBatch, EdgeType, EndBatch, InfoResponse, InitRequest, Point, Response};

/// What one data message produced: responses to write (emitted points or
/// batches, in order) and events to hand to delivery.
#[derive(Debug, Default)]
pub struct Output {
    pub responses: Vec<Response>,
    pub events: Vec<Event>,
    /// Set by the caller of [`Handler::point`] when it keeps the bytes of
    /// the point and can write them back itself (the session does; tests
    /// reading `responses` do not).
    pub can_echo: bool,
    /// Set by [`Handler::point`], only when `can_echo`, to emit the point it
    /// was given unchanged, after `responses`: the session writes back the
    /// bytes it received (a `Request` point frame is a valid `Response`
    /// point frame: the same field number) instead of encoding it again.
    pub echo_point: bool,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty() && self.events.is_empty() && !self.echo_point
    }
}

/// Creates handlers: one per connection, at a successful Init.
pub trait HandlerFactory: Send + Sync + 'static {
    /// The answer to `InfoRequest` on a socket of this edge type.
    fn info(&self, edge: EdgeType) -> InfoResponse;

    /// Validates the Init options and builds the node. The error text is what
    /// the user reads in `kapacitor show`: it names the option and the reason.
    fn init(&self, edge: EdgeType, req: &InitRequest) -> Result<Box<dyn Handler>, String>;
}

/// One initialized node. Methods never block on I/O: they compute and fill `out`.
pub trait Handler: Send {
    /// A stream point, or a point inside an open batch.
    fn point(&mut self, point: Point, out: &mut Output);
    /// A stream point the caller keeps (the session reuses its memory for
    /// the next point it decodes). The default copies it into [`Handler::point`];
    /// a handler that only reads stream points overrides it to avoid the copy.
    fn point_ref(&mut self, point: &Point, out: &mut Output) {
        self.point(point.clone(), out)
    }
    /// Opens a batch (only on batch connections; the session checks nesting).
    fn begin_batch(&mut self, begin: BeginBatch, out: &mut Output);
    /// Closes the open batch.
    fn end_batch(&mut self, end: EndBatch, out: &mut Output);
    /// The session is ending (normally or not); the handler may release shared state.
    fn stop(&mut self) {}
}
