//! The event hand-off: the engine emits [`Event`]s to a [`Sink`] it defines.
//!
//! The sessions hand events to a [`Sink`]: a bounded queue drained by one
//! committer thread. The committer takes whatever is queued as one group
//! (group commit), stores it (the outbox, or only the log for the log sink and
//! `dryRun`), and only then acknowledges the barriers queued behind it — so a
//! [`Sink::barrier`] that returns means every event submitted before it is
//! committed. That is what a `SnapshotResponse` and a session's end wait for.
//!
//! The wire (`udf`) submits; delivery implements [`Committer`] (the outbox,
//! the log committer). This module needs nothing but [`Event`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::alert::Event;

/// What the committer thread receives.
#[derive(Debug)]
pub enum SinkMsg {
    Event(Box<Event>),
    /// Several events at once, in order: one hand-off (and at most one
    /// wake-up of the committer) for everything a session processed together.
    Events(Vec<Event>),
    /// Acknowledged once every event queued before it is committed.
    Barrier(oneshot::Sender<()>),
}

/// Errors of the hand-off itself.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the delivery committer has stopped; the agent is shutting down or failed")]
    Closed,
}

/// Why [`Sink::try_submit`] did not queue an event.
#[derive(Debug, thiserror::Error)]
pub enum TrySubmitError {
    /// The queue is full: the event comes back.
    #[error("the delivery queue is full")]
    Full(Box<Event>),
    #[error(transparent)]
    Closed(#[from] SinkError),
}

/// The sessions' handle on delivery. Cheap to clone.
///
/// The queue is bounded twice: by events (`room`, a semaphore whose permits
/// are the events that may be queued or in the commit under way — what bounds
/// memory) and by messages (the channel; a message holds at least one event
/// or is a barrier someone waits for).
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<SinkMsg>,
    room: Arc<Semaphore>,
    /// The most events one message may carry: the semaphore's size.
    capacity: usize,
    spent: Arc<Spent>,
}

/// Committed groups waiting to be freed by a session ([`Sink::reclaim`]).
///
/// Why: the events were allocated on a session's thread; freeing them on the
/// committer's thread makes glibc's allocator take the owning arena's lock
/// for every string, against the session allocating the next events (the
/// futex wake-ups dominated a profile of the flood). Bounded: beyond
/// `capacity` events the committer frees a group itself.
#[derive(Debug, Default)]
struct Spent {
    groups: std::sync::Mutex<SpentGroups>,
}

#[derive(Debug, Default)]
struct SpentGroups {
    groups: Vec<Vec<Event>>,
    events: usize,
}

/// Counts what a sink holds without keeping it open (a [`Sink`] clone would
/// keep the committer running): for a shutdown that must report what it
/// could not commit.
#[derive(Debug, Clone)]
pub struct SinkProbe {
    room: Arc<Semaphore>,
    capacity: usize,
}

impl SinkProbe {
    /// Events queued or in the commit under way. After the committer ended
    /// normally, 0 (every commit gave its room back); after it died (a
    /// panicking committer), what it never committed.
    pub fn outstanding(&self) -> usize {
        self.capacity.saturating_sub(self.room.available_permits())
    }
}

impl Sink {
    /// A probe of this sink's queue (see [`SinkProbe`]).
    pub fn probe(&self) -> SinkProbe {
        SinkProbe {
            room: self.room.clone(),
            capacity: self.capacity,
        }
    }

    /// Queues an event, waiting while the bounded queue is full.
    pub async fn submit(&self, event: Box<Event>) -> Result<(), SinkError> {
        self.reserve(1).await?;
        self.tx
            .send(SinkMsg::Event(event))
            .await
            .map_err(|_| SinkError::Closed)
    }

    /// Queues events in order, waiting while the queue is full. Up to the
    /// queue's capacity they travel as one message; a longer list is split.
    pub async fn submit_many(&self, mut events: Vec<Event>) -> Result<(), SinkError> {
        while events.len() > self.capacity {
            let rest = events.split_off(self.capacity);
            self.send_events(std::mem::replace(&mut events, rest))
                .await?;
        }
        if events.is_empty() {
            return Ok(());
        }
        self.send_events(events).await
    }

    async fn send_events(&self, events: Vec<Event>) -> Result<(), SinkError> {
        self.reserve(events.len()).await?;
        self.tx
            .send(SinkMsg::Events(events))
            .await
            .map_err(|_| SinkError::Closed)
    }

    /// Takes room for `n` (≤ capacity) events; the committer gives it back
    /// once they are committed. The semaphore is closed when the committer ends.
    async fn reserve(&self, n: usize) -> Result<(), SinkError> {
        let n = u32::try_from(n).map_err(|_| SinkError::Closed)?;
        self.room
            .acquire_many(n)
            .await
            .map_err(|_| SinkError::Closed)?
            .forget();
        Ok(())
    }

    /// Queues an event without waiting; a full queue hands it back.
    pub fn try_submit(&self, event: Box<Event>) -> Result<(), TrySubmitError> {
        match self.room.try_acquire() {
            Ok(p) => p.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                return Err(TrySubmitError::Full(event));
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(TrySubmitError::Closed(SinkError::Closed));
            }
        }
        match self.tx.try_send(SinkMsg::Event(event)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(SinkMsg::Event(e))) => {
                self.room.add_permits(1);
                Err(TrySubmitError::Full(e))
            }
            Err(_) => Err(TrySubmitError::Closed(SinkError::Closed)),
        }
    }

    /// Frees, on the caller's thread, the events the committer has finished
    /// with (see [`Spent`]), and returns one emptied vector of theirs for
    /// the caller's next events (large buffers are costly to allocate next
    /// to many small frees). Never waits: if the committer holds the list,
    /// the next call takes it.
    pub fn reclaim(&self) -> Vec<Event> {
        let groups = match self.spent.groups.try_lock() {
            Ok(mut g) if g.events > 0 => {
                g.events = 0;
                std::mem::take(&mut g.groups)
            }
            _ => return Vec::new(),
        };
        let mut spare = Vec::new();
        for mut group in groups {
            group.clear();
            if group.capacity() > spare.capacity() {
                spare = group;
            }
        }
        spare
    }

    /// Waits until every event submitted before this call is committed.
    pub async fn barrier(&self) -> Result<(), SinkError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(SinkMsg::Barrier(tx))
            .await
            .map_err(|_| SinkError::Closed)?;
        rx.await.map_err(|_| SinkError::Closed)
    }
}

/// Stores a group of events. Runs on the committer's own thread, so it may
/// block (SQLite, fsync); it must never lose an event it returned `Ok` for.
pub trait Committer: Send + 'static {
    /// Commits the events in order. On `Err` the same group is offered again
    /// after a pause (the committer keeps it; nothing is dropped).
    fn commit(&mut self, events: &[Event]) -> Result<(), CommitError>;
}

/// A committer's failure to store a group.
#[derive(Debug, thiserror::Error)]
#[error("cannot commit {count} event(s): {reason}")]
pub struct CommitError {
    pub count: usize,
    pub reason: String,
}

/// The most events the committer takes into one group (one `commit` call).
const GROUP_MAX: usize = 4096;

/// The committer thread: join it, or, at a shutdown that cannot wait any
/// longer, make it give up ([`CommitterHandle::give_up`]).
#[derive(Debug)]
pub struct CommitterHandle {
    thread: thread::JoinHandle<Vec<Event>>,
    give_up: Arc<AtomicBool>,
}

impl CommitterHandle {
    /// Makes a committer whose commits keep failing stop retrying: after one
    /// more try it ends and hands back, in order, the group it could not
    /// commit and every event still queued behind it (what [`Self::join`]
    /// returns). Events are never dropped inside the committer; whoever
    /// calls this stores them elsewhere. A committer that is committing
    /// successfully, or waiting for events, is not affected: it ends when
    /// the last [`Sink`] is dropped, as always.
    pub fn give_up(&self) {
        self.give_up.store(true, Ordering::Release);
        self.thread.thread().unpark();
    }

    /// Whether the thread has ended (then [`Self::join`] does not block).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread; `Ok` holds the events it gave up on (empty
    /// unless [`Self::give_up`] was called while commits were failing).
    pub fn join(self) -> thread::Result<Vec<Event>> {
        self.thread.join()
    }
}

/// Starts the committer thread behind a new [`Sink`] whose queue holds at
/// most `capacity` events (and `capacity` messages); as many committed events
/// again may wait to be freed by a session ([`Sink::reclaim`]). The thread
/// ends when every `Sink` is dropped, after committing what was queued.
/// No commit window: each group is what is queued when the committer wakes.
pub fn spawn_sink<C: Committer>(committer: C, capacity: usize) -> (Sink, CommitterHandle) {
    spawn_sink_with_window(committer, capacity, std::time::Duration::ZERO)
}

/// [`spawn_sink`] with a group-commit window (`[delivery] commit_window`):
/// after the first event of a group arrives, the committer gathers what
/// arrives for up to `window` more (or until [`GROUP_MAX`] events, or the
/// last `Sink` is dropped) before the one transaction. Fewer, larger
/// transactions (fsyncs) under a trickle of events, for up to `window` more
/// latency per event (BENCHMARKS.md). Zero: no wait.
pub fn spawn_sink_with_window<C: Committer>(
    mut committer: C,
    capacity: usize,
    window: std::time::Duration,
) -> (Sink, CommitterHandle) {
    // Permits are u32; a larger queue would not fit in memory anyway.
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(capacity);
    let room = Arc::new(Semaphore::new(capacity));
    let closer = CloseOnDrop(room.clone());
    let spent = Arc::new(Spent::default());
    let spent_c = spent.clone();
    let give_up = Arc::new(AtomicBool::new(false));
    let giving_up = give_up.clone();
    let handle = thread::Builder::new()
        .name("pagertree-commit".into())
        .spawn(move || {
            // Closes the queue for senders however this thread ends (a
            // panicking committer included): they get `Closed`, not a hang.
            let closer = closer;
            let mut events: Vec<Event> = Vec::new();
            let mut barriers: Vec<oneshot::Sender<()>> = Vec::new();
            let mut open = true;
            // The timer of the window: a runtime of this thread alone.
            let timer = match window.is_zero() {
                true => None,
                false => tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .inspect_err(|e| {
                        tracing::error!(error = %e, "cannot start the commit window's timer; committing without a window")
                    })
                    .ok(),
            };
            while open {
                // Block for the first message, then take whatever else is queued
                // (and, with a window, arrives within it): the group of one commit.
                match rx.blocking_recv() {
                    Some(msg) => take(msg, &mut events, &mut barriers),
                    None => open = false,
                }
                let deadline = std::time::Instant::now() + window;
                while events.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(msg) => take(msg, &mut events, &mut barriers),
                        Err(mpsc::error::TryRecvError::Empty) => {
                            let Some(rt) = timer.as_ref().filter(|_| !events.is_empty()) else {
                                break;
                            };
                            let left = deadline.saturating_duration_since(std::time::Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            // Built inside block_on: the timer needs the runtime's context.
                            match rt.block_on(async { tokio::time::timeout(left, rx.recv()).await }) {
                                Ok(Some(msg)) => take(msg, &mut events, &mut barriers),
                                Ok(None) => {
                                    open = false;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                if !events.is_empty() {
                    let mut delay = std::time::Duration::from_millis(50);
                    let mut failures = 0u64;
                    while let Err(e) = committer.commit(&events) {
                        if giving_up.load(Ordering::Acquire) {
                            tracing::error!(error = %e, events = events.len(), "commit failed at shutdown; the events go back to the shutdown to be stored elsewhere");
                            return give_back(events, rx);
                        }
                        failures += 1;
                        // The 1st and every 10th: a long outage must not flood the journal.
                        if failures % 10 == 1 {
                            tracing::error!(error = %e, failures, "commit failed; retrying, nothing is dropped");
                        }
                        // Woken early by `give_up` (a spurious wake-up only retries sooner).
                        thread::park_timeout(delay);
                        delay = (delay * 2).min(std::time::Duration::from_secs(5));
                    }
                    let n = events.len();
                    spent_c.keep(std::mem::take(&mut events), capacity);
                    // Room is given back only now: the bound covers the group
                    // being committed, not only what waits behind it.
                    closer.0.add_permits(n);
                }
                for b in barriers.drain(..) {
                    let _ = b.send(());
                }
            }
            Vec::new()
        })
        .expect("spawning the committer thread");
    (
        Sink {
            tx,
            room,
            capacity,
            spent,
        },
        CommitterHandle {
            thread: handle,
            give_up,
        },
    )
}

/// A committer that gave up: `group` (not committed) and then everything
/// still queued, in order. The queue is closed first, so nothing arrives
/// after; the barriers waiting in it are dropped (their waiters see
/// [`SinkError::Closed`]: their events were not committed).
fn give_back(mut group: Vec<Event>, mut rx: mpsc::Receiver<SinkMsg>) -> Vec<Event> {
    rx.close();
    let mut barriers = Vec::new();
    while let Ok(msg) = rx.try_recv() {
        take(msg, &mut group, &mut barriers);
    }
    group
}

impl Spent {
    /// Keeps a committed group for a session to free, or frees it here when
    /// `max` events already wait (no session is reclaiming).
    fn keep(&self, group: Vec<Event>, max: usize) {
        let mut g = match self.groups.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if g.events + group.len() <= max {
            g.events += group.len();
            g.groups.push(group);
            return;
        }
        drop(g);
        drop(group);
    }
}

/// Closes the event semaphore when the committer thread ends.
struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn take(msg: SinkMsg, events: &mut Vec<Event>, barriers: &mut Vec<oneshot::Sender<()>>) {
    match msg {
        SinkMsg::Event(e) => events.push(*e),
        SinkMsg::Events(mut v) => {
            if events.is_empty() && v.capacity() >= events.capacity() {
                std::mem::swap(events, &mut v);
            } else {
                events.append(&mut v);
            }
        }
        SinkMsg::Barrier(b) => barriers.push(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Level, Series};
    use std::sync::Mutex;
    use std::time::Duration;

    fn event(i: i64) -> Event {
        Event {
            task: "t".into(),
            node: "n".into(),
            id: format!("id{i}"),
            message: String::new(),
            details: String::new(),
            time: i,
            duration: 0,
            level: Level::CRITICAL,
            previous_level: Level::OK,
            recoverable: true,
            data: Series::default(),
            route: Default::default(),
        }
    }

    /// Records every group it commits; blocks while `hold` is set.
    #[derive(Clone, Default)]
    struct Record {
        groups: Arc<Mutex<Vec<Vec<i64>>>>,
        hold: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Committer for Record {
        fn commit(&mut self, events: &[Event]) -> Result<(), CommitError> {
            while self.hold.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.groups
                .lock()
                .unwrap()
                .push(events.iter().map(|e| e.time).collect());
            Ok(())
        }
    }

    impl Record {
        fn all(&self) -> Vec<i64> {
            self.groups.lock().unwrap().concat()
        }
    }

    #[tokio::test]
    async fn single_and_many_keep_their_order_and_the_barrier_covers_them() {
        let rec = Record::default();
        let (sink, handle) = spawn_sink(rec.clone(), 8);
        sink.submit(Box::new(event(0))).await.unwrap();
        sink.submit_many((1..6).map(event).collect()).await.unwrap();
        sink.submit_many(Vec::new()).await.unwrap();
        sink.submit(Box::new(event(6))).await.unwrap();
        // Longer than the queue: split, still in order.
        sink.submit_many((7..30).map(event).collect())
            .await
            .unwrap();
        sink.barrier().await.unwrap();
        assert_eq!(rec.all(), (0..30).collect::<Vec<_>>());
        drop(sink);
        handle.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_commit_window_gathers_events_that_arrive_within_it() {
        // The second event comes well inside the window (the pause is the
        // stimulus, not a wait for a result): one transaction for both.
        let rec = Record::default();
        let (sink, handle) = spawn_sink_with_window(rec.clone(), 8, Duration::from_secs(3));
        sink.submit(Box::new(event(0))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        sink.submit(Box::new(event(1))).await.unwrap();
        sink.barrier().await.unwrap();
        assert_eq!(*rec.groups.lock().unwrap(), vec![vec![0, 1]]);
        // Dropping the last Sink ends the window: what is queued is committed.
        sink.submit(Box::new(event(2))).await.unwrap();
        drop(sink);
        handle.join().unwrap();
        assert_eq!(rec.all(), vec![0, 1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_queue_is_bounded_by_events_not_messages() {
        let rec = Record::default();
        rec.hold.store(true, std::sync::atomic::Ordering::SeqCst);
        let (sink, handle) = spawn_sink(rec.clone(), 4);
        // Three events in one message: the committer takes them and blocks in commit.
        sink.submit_many((0..3).map(event).collect()).await.unwrap();
        // One more fits (3 + 1 = 4 events outstanding, whatever the messages).
        sink.try_submit(Box::new(event(3))).unwrap();
        match sink.try_submit(Box::new(event(4))) {
            Err(TrySubmitError::Full(e)) => assert_eq!(e.time, 4),
            other => panic!("expected a full queue, got {other:?}"),
        }
        // A waiting submit_many proceeds once room is given back by a commit.
        let s2 = sink.clone();
        let waiting =
            tokio::spawn(async move { s2.submit_many((4..6).map(event).collect()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "submit_many did not wait for room");
        rec.hold.store(false, std::sync::atomic::Ordering::SeqCst);
        waiting.await.unwrap().unwrap();
        sink.barrier().await.unwrap();
        assert_eq!(rec.all(), (0..6).collect::<Vec<_>>());
        drop(sink);
        handle.join().unwrap();
    }

    #[tokio::test]
    async fn reclaim_hands_back_committed_memory_and_spent_stays_bounded() {
        let rec = Record::default();
        let (sink, handle) = spawn_sink(rec.clone(), 8);
        sink.submit_many((0..5).map(event).collect()).await.unwrap();
        sink.barrier().await.unwrap();
        let v = sink.reclaim();
        assert!(v.is_empty() && v.capacity() >= 5, "{}", v.capacity());
        assert_eq!(sink.reclaim().capacity(), 0, "nothing left to reclaim");
        // Nobody reclaiming: what waits to be freed stays within the capacity.
        for _ in 0..10 {
            sink.submit_many((0..8).map(event).collect()).await.unwrap();
        }
        sink.barrier().await.unwrap();
        assert!(sink.spent.groups.lock().unwrap().events <= 8);
        assert_eq!(rec.all().len(), 85);
        drop(sink);
        handle.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_probe_counts_what_is_not_committed_without_holding_the_sink() {
        let rec = Record::default();
        rec.hold.store(true, std::sync::atomic::Ordering::SeqCst);
        let (sink, handle) = spawn_sink(rec.clone(), 8);
        let probe = sink.probe();
        sink.submit_many((0..3).map(event).collect()).await.unwrap();
        assert_eq!(probe.outstanding(), 3);
        rec.hold.store(false, std::sync::atomic::Ordering::SeqCst);
        sink.barrier().await.unwrap();
        assert_eq!(probe.outstanding(), 0);
        // The probe does not keep the committer alive.
        drop(sink);
        handle.join().unwrap();
        assert_eq!(probe.outstanding(), 0);
    }

    /// Fails every commit: the sink must not hang its senders when the thread dies.
    struct Panics;
    impl Committer for Panics {
        fn commit(&mut self, _: &[Event]) -> Result<(), CommitError> {
            panic!("committer failure (expected by the test)")
        }
    }

    #[tokio::test]
    async fn a_dead_committer_is_closed_not_a_hang() {
        let (sink, handle) = spawn_sink(Panics, 2);
        let probe = sink.probe();
        sink.submit_many((0..2).map(event).collect()).await.unwrap();
        assert!(handle.join().is_err());
        // What it never committed is still counted (a shutdown reports it).
        assert_eq!(probe.outstanding(), 2);
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            sink.submit_many((2..4).map(event).collect()),
        )
        .await
        .expect("submit_many hung on a dead committer");
        assert!(matches!(r, Err(SinkError::Closed)));
        assert!(matches!(sink.barrier().await, Err(SinkError::Closed)));
        assert!(matches!(
            sink.try_submit(Box::new(event(9))),
            Err(TrySubmitError::Closed(SinkError::Closed))
        ));
    }

    /// Refuses every commit, counting the tries.
    #[derive(Clone, Default)]
    struct Refuses(Arc<std::sync::atomic::AtomicUsize>);
    impl Committer for Refuses {
        fn commit(&mut self, events: &[Event]) -> Result<(), CommitError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(CommitError {
                count: events.len(),
                reason: "refused (test)".into(),
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committer_that_gives_up_hands_back_every_event_in_order() {
        let tries = Refuses::default();
        let (sink, handle) = spawn_sink(tries.clone(), 16);
        sink.submit_many((0..3).map(event).collect()).await.unwrap();
        // The first group is being retried; more queue up behind it.
        while tries.0.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sink.submit_many((3..5).map(event).collect()).await.unwrap();
        sink.submit(Box::new(event(5))).await.unwrap();
        let waiter = tokio::spawn({
            let sink = sink.clone();
            async move { sink.barrier().await }
        });
        assert!(!handle.is_finished(), "ended without being asked");
        handle.give_up();
        let back = tokio::task::spawn_blocking(move || handle.join())
            .await
            .unwrap()
            .expect("the committer panicked");
        let times: Vec<i64> = back.iter().map(|e| e.time).collect();
        assert_eq!(times, [0, 1, 2, 3, 4, 5]);
        // Nothing is accepted after, and nobody waits forever.
        assert!(matches!(waiter.await.unwrap(), Err(SinkError::Closed)));
        assert!(matches!(
            sink.submit(Box::new(event(6))).await,
            Err(SinkError::Closed)
        ));
    }

    #[tokio::test]
    async fn give_up_does_not_touch_a_committer_that_commits() {
        let rec = Record::default();
        let (sink, handle) = spawn_sink(rec.clone(), 8);
        handle.give_up();
        sink.submit_many((0..3).map(event).collect()).await.unwrap();
        sink.barrier().await.unwrap();
        drop(sink);
        assert!(handle.join().unwrap().is_empty());
        assert_eq!(rec.all(), [0, 1, 2]);
    }
}
