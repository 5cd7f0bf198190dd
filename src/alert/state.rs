//! The state of one alert group (mode 1) or alert id (mode 2): the level
//! history ring, flapping, the `stateChangesOnly`/`renotifyEvery` expiry and
//! the trigger times that give an event its duration — Kapacitor's
//! `alertState` (`alert.go`), kept compact because a node may hold a million
//! of them.
//!
//! The ring keeps levels as 2-bit numbers: up to 32 levels live packed in one
//! `u64` (the default history of 21 needs 42 bits), longer histories in a
//! boxed byte slice. The ring's length is a property of the node, not stored
//! per group: every method takes it from [`StateRules`].

use crate::alert::Level;

/// The `|alert()` properties that drive the state machine, shared by every
/// group of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateRules {
    /// Length of the history ring (Kapacitor's `.history()`, at least 2).
    pub history: usize,
    /// `.flapping(low, high)`.
    pub flapping: Option<(f64, f64)>,
    /// `.stateChangesOnly()` (also on with a renotify interval).
    pub state_changes_only: bool,
    /// `.stateChangesOnly(d)` as nanoseconds; 0 = never re-send.
    pub renotify_every: i64,
    /// `.noRecoveries()`.
    pub no_recoveries: bool,
}

impl Default for StateRules {
    fn default() -> Self {
        Self {
            history: DEFAULT_HISTORY,
            flapping: None,
            state_changes_only: false,
            renotify_every: 0,
            no_recoveries: false,
        }
    }
}

/// Kapacitor's default `.history()`.
pub const DEFAULT_HISTORY: usize = 21;
/// The smallest history Kapacitor keeps (lower values are raised to it).
pub const MIN_HISTORY: usize = 2;
/// The largest history this agent accepts: a ring is allocated per group.
pub const MAX_HISTORY: usize = 10_000;
/// Histories up to this length are packed into one `u64`.
const PACKED_MAX: usize = 32;

/// The weight of the newest state change (Kapacitor's `maxWeight`).
const MAX_WEIGHT: f64 = 1.2;
/// The first weight, Kapacitor's `maxWeight / weightDiff` (`weightDiff` = 1.5:
/// the newest change weighs 1.5 times the oldest). Go evaluates that
/// constant expression exactly (untyped constants) and rounds once, to the
/// float64 0.8; dividing the rounded f64s gives 0.7999999999999999, which
/// moves sums such as 0.2 across a flapping threshold (found by the
/// differential test against a real kapacitord, tests/real_kapacitor.rs).
const START_WEIGHT: f64 = 0.8;

/// The history ring's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ring {
    /// Level `i` is bits `2i..2i+2`.
    Packed(u64),
    Wide(Box<[u8]>),
}

/// Flag bits of [`AlertState::flags`].
const CHANGED: u8 = 1;
const FLAPPING: u8 = 2;
const EXPIRED: u8 = 4;

/// One group's (or mode-2 id's) alert state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertState {
    ring: Ring,
    idx: u16,
    flags: u8,
    /// Nanoseconds; Go's zero `time.Time` is far in the past, represented by
    /// `i64::MIN` so that `t - lastTriggered` saturates to "very long ago".
    first_triggered: i64,
    last_triggered: i64,
}

/// What [`AlertState::update_stream`] or [`AlertState::update_batch`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is sent and nothing is emitted.
    Drop,
    /// An event at `level`, `duration` ns after the alert first left OK.
    Event { level: Level, duration: i64 },
}

impl AlertState {
    /// A fresh state: the whole history OK, never triggered.
    pub fn new(rules: &StateRules) -> Self {
        let ring = if rules.history <= PACKED_MAX {
            Ring::Packed(0)
        } else {
            Ring::Wide(vec![0u8; rules.history].into_boxed_slice())
        };
        Self {
            ring,
            idx: 0,
            flags: 0,
            first_triggered: i64::MIN,
            last_triggered: i64::MIN,
        }
    }

    fn get(&self, i: usize) -> u8 {
        match &self.ring {
            Ring::Packed(bits) => ((bits >> (2 * i)) & 3) as u8,
            Ring::Wide(b) => b[i],
        }
    }

    fn set(&mut self, i: usize, level: Level) {
        match &mut self.ring {
            Ring::Packed(bits) => {
                let shift = 2 * i;
                *bits = (*bits & !(3u64 << shift)) | ((level as u64) << shift);
            }
            Ring::Wide(b) => b[i] = level as u8,
        }
    }

    /// The level of the newest history entry.
    pub fn current_level(&self) -> Level {
        Level::from_u8(self.get(self.idx as usize)).unwrap_or(Level::OK)
    }

    /// Whether the last `add_event` changed the level.
    pub fn changed(&self) -> bool {
        self.flags & CHANGED != 0
    }

    pub fn flapping(&self) -> bool {
        self.flags & FLAPPING != 0
    }

    pub fn expired(&self) -> bool {
        self.flags & EXPIRED != 0
    }

    pub fn first_triggered(&self) -> i64 {
        self.first_triggered
    }

    pub fn last_triggered(&self) -> i64 {
        self.last_triggered
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// Kapacitor's `addEvent`: records `level` as the newest history entry,
    /// then updates flapping and expiry.
    pub fn add_event(&mut self, rules: &StateRules, t: i64, level: Level) {
        let changed = self.current_level() != level;
        self.set_flag(CHANGED, changed);
        let len = rules.history;
        self.idx = ((self.idx as usize + 1) % len) as u16;
        self.set(self.idx as usize, level);
        if let Some((low, high)) = rules.flapping {
            let p = self.percent_change(len);
            if self.flapping() && p < low {
                self.set_flag(FLAPPING, false);
            } else if !self.flapping() && p > high {
                self.set_flag(FLAPPING, true);
            }
        }
        let expired = !changed
            && rules.renotify_every != 0
            && t.saturating_sub(self.last_triggered) >= rules.renotify_every;
        self.set_flag(EXPIRED, expired);
    }

    /// Kapacitor's weighted state-change ratio, computed in exactly its order
    /// (float64, same accumulation) so thresholds compare as they do there.
    pub fn percent_change(&self, len: usize) -> f64 {
        let mut changes = 0.0f64;
        let mut weight = START_WEIGHT;
        let step = (MAX_WEIGHT - weight) / (len - 1) as f64;
        let idx = self.idx as usize;
        for i in 0..len - 1 {
            let c = (i + idx) % len;
            let p = if c == 0 { len - 1 } else { c - 1 };
            if self.get(c) != self.get(p) {
                changes += weight;
            }
            weight += step;
        }
        changes / (len - 1) as f64
    }

    /// The level of the history entry before the newest one.
    fn previous_entry(&self, len: usize) -> Level {
        let p = if self.idx == 0 {
            len - 1
        } else {
            self.idx as usize - 1
        };
        Level::from_u8(self.get(p)).unwrap_or(Level::OK)
    }

    /// Kapacitor's `triggered(t)`: `lastTriggered = t`, and `firstTriggered = t`
    /// when the entry before the newest one is OK (the alert starts now).
    /// Returns whether the group is now non-OK — what its inhibitors are set to.
    pub fn triggered(&mut self, rules: &StateRules, t: i64) -> bool {
        self.last_triggered = t;
        if self.previous_entry(rules.history) == Level::OK {
            self.first_triggered = t;
        }
        self.current_level() != Level::OK
    }

    /// `lastTriggered - firstTriggered`, Go's `time.Sub` (saturating).
    pub fn duration(&self) -> i64 {
        self.last_triggered.saturating_sub(self.first_triggered)
    }

    /// Kapacitor's restore at a group's creation: the stored non-OK level of
    /// the id enters the fresh history at `t` (the first point's time), and
    /// both trigger times become the stored event's time.
    pub fn restore(&mut self, rules: &StateRules, t: i64, level: Level, stored_time: i64) -> bool {
        self.add_event(rules, t, level);
        self.triggered(rules, stored_time)
    }

    /// The stream rule for one point whose level is `level`: `add_event`, then
    /// Kapacitor's suppression and recovery rules. `on_trigger` receives the
    /// inhibitor state whenever `triggered()` runs (also for a suppressed
    /// noRecoveries OK, as in Kapacitor).
    pub fn update_stream(
        &mut self,
        rules: &StateRules,
        t: i64,
        level: Level,
        on_trigger: impl FnOnce(bool),
    ) -> Decision {
        self.add_event(rules, t, level);
        if (rules.flapping.is_some() && self.flapping())
            || (rules.state_changes_only && !self.changed() && !self.expired())
        {
            return Decision::Drop;
        }
        if level == Level::OK && !self.changed() {
            return Decision::Drop;
        }
        on_trigger(self.triggered(rules, t));
        if rules.no_recoveries && level == Level::OK {
            return Decision::Drop;
        }
        Decision::Event {
            level,
            duration: self.duration(),
        }
    }

    /// The batch rule for a whole batch at `level` and event time `t`: unlike
    /// streams, a recovery is sent even while flapping.
    pub fn update_batch(
        &mut self,
        rules: &StateRules,
        t: i64,
        level: Level,
        on_trigger: impl FnOnce(bool),
    ) -> Decision {
        self.add_event(rules, t, level);
        let send = (self.changed() && level == Level::OK)
            || (level != Level::OK
                && !((rules.flapping.is_some() && self.flapping())
                    || (rules.state_changes_only && !self.changed() && !self.expired())));
        if !send {
            return Decision::Drop;
        }
        on_trigger(self.triggered(rules, t));
        if rules.no_recoveries && level == Level::OK {
            return Decision::Drop;
        }
        Decision::Event {
            level,
            duration: self.duration(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> StateRules {
        StateRules::default()
    }

    fn levels(s: &AlertState, len: usize) -> Vec<u8> {
        (0..len).map(|i| s.get(i)).collect()
    }

    #[test]
    fn state_is_small() {
        assert!(
            std::mem::size_of::<AlertState>() <= 40,
            "{}",
            std::mem::size_of::<AlertState>()
        );
    }

    #[test]
    fn first_change_in_history_21_gives_0_081() {
        let r = rules();
        let mut s = AlertState::new(&r);
        s.add_event(&r, 0, Level::CRITICAL);
        let p = s.percent_change(21);
        // (0.8 + 0.82) / 20, accumulated in Kapacitor's order.
        let weight = 0.8;
        let step = (1.2 - weight) / 20.0;
        let expected = (weight + (weight + step)) / 20.0;
        assert_eq!(p, expected);
        assert!((p - 0.081).abs() < 1e-12, "{p}");
    }

    #[test]
    fn start_weight_is_go_constant_arithmetic() {
        // Go: const maxWeight = 1.2; const weightDiff = 1.5; maxWeight/weightDiff
        // is exact, then rounded: 0.8. The f64 division is one ulp below.
        assert_eq!(START_WEIGHT, 0.8);
        let weight_diff = 1.5;
        assert_ne!(MAX_WEIGHT / weight_diff, START_WEIGHT);
        assert!((MAX_WEIGHT / weight_diff - START_WEIGHT).abs() < 1e-15);
    }

    #[test]
    fn flapping_ratio_exactly_at_the_threshold_stays_flapping() {
        // From a differential scenario against kapacitord 1.8.3: history 5,
        // .flapping(0.2, 0.2), levels C C C C C C W C. At the last point the
        // ratio is exactly 0.2 in Kapacitor (not below low: still flapping,
        // nothing sent); with 1.2/1.5 computed in f64 it was
        // 0.19999999999999998 and the agent sent a CRITICAL Kapacitor did not.
        use Level::{CRITICAL as C, WARNING as W};
        let r = StateRules {
            history: 5,
            flapping: Some((0.2, 0.2)),
            state_changes_only: true,
            renotify_every: 30,
            ..StateRules::default()
        };
        let mut s = AlertState::new(&r);
        let seq = [
            (0, C),
            (10, C),
            (20, C),
            (20, C),
            (40, C),
            (40, C),
            (45, W),
            (50, C),
        ];
        let decisions: Vec<bool> = seq
            .iter()
            .map(|&(t, l)| matches!(s.update_stream(&r, t, l, |_| {}), Decision::Event { .. }))
            .collect();
        assert_eq!(s.percent_change(5), 0.2);
        assert!(s.flapping());
        assert_eq!(
            decisions,
            [false, false, false, false, true, false, false, false]
        );
    }

    #[test]
    fn percent_change_same_for_packed_and_wide() {
        // A 40-entry ring is wide; compare against a manual computation.
        let r = StateRules {
            history: 40,
            ..rules()
        };
        let mut s = AlertState::new(&r);
        let seq = [3u8, 3, 0, 1, 2, 2, 0, 0, 3, 1, 0, 2];
        for (i, l) in seq.iter().enumerate() {
            s.add_event(&r, i as i64, Level::from_u8(*l).unwrap());
        }
        let hist = levels(&s, 40);
        let idx = s.idx as usize;
        let mut changes = 0.0;
        let mut weight = 0.8; // Go: maxWeight / weightDiff, exact then rounded
        let step = (1.2 - weight) / 39.0;
        for i in 0..39 {
            let c = (i + idx) % 40;
            let p = if c == 0 { 39 } else { c - 1 };
            if hist[c] != hist[p] {
                changes += weight;
            }
            weight += step;
        }
        assert_eq!(s.percent_change(40), changes / 39.0);
        // The same sequence in a packed ring of 21 keeps the same levels.
        let r21 = rules();
        let mut p = AlertState::new(&r21);
        for (i, l) in seq.iter().enumerate() {
            p.add_event(&r21, i as i64, Level::from_u8(*l).unwrap());
        }
        assert_eq!(p.current_level(), Level::from_u8(2).unwrap());
        assert_eq!(levels(&p, 21)[1..13], seq);
    }

    #[test]
    fn ring_wraps_and_changed_compares_with_previous_point() {
        let r = StateRules {
            history: 2,
            ..rules()
        };
        let mut s = AlertState::new(&r);
        s.add_event(&r, 1, Level::WARNING);
        assert!(s.changed());
        s.add_event(&r, 2, Level::WARNING);
        assert!(!s.changed());
        s.add_event(&r, 3, Level::OK);
        assert!(s.changed());
        assert_eq!(s.current_level(), Level::OK);
    }

    #[test]
    fn stream_recovery_once_and_durations() {
        let r = rules();
        let mut s = AlertState::new(&r);
        let mut trig = vec![];
        assert_eq!(
            s.update_stream(&r, 10, Level::CRITICAL, |b| trig.push(b)),
            Decision::Event {
                level: Level::CRITICAL,
                duration: 0
            }
        );
        assert_eq!(
            s.update_stream(&r, 15, Level::WARNING, |b| trig.push(b)),
            Decision::Event {
                level: Level::WARNING,
                duration: 5
            }
        );
        assert_eq!(
            s.update_stream(&r, 20, Level::OK, |b| trig.push(b)),
            Decision::Event {
                level: Level::OK,
                duration: 10
            }
        );
        assert_eq!(
            s.update_stream(&r, 25, Level::OK, |b| trig.push(b)),
            Decision::Drop
        );
        assert_eq!(trig, vec![true, true, false]);
        // The next alert starts again at 0.
        assert_eq!(
            s.update_stream(&r, 30, Level::INFO, |_| {}),
            Decision::Event {
                level: Level::INFO,
                duration: 0
            }
        );
    }

    #[test]
    fn state_changes_only_and_renotify() {
        let r = StateRules {
            state_changes_only: true,
            renotify_every: 10,
            ..rules()
        };
        let mut s = AlertState::new(&r);
        assert!(matches!(
            s.update_stream(&r, 0, Level::CRITICAL, |_| {}),
            Decision::Event { .. }
        ));
        assert_eq!(
            s.update_stream(&r, 5, Level::CRITICAL, |_| {}),
            Decision::Drop
        );
        assert_eq!(
            s.update_stream(&r, 9, Level::CRITICAL, |_| {}),
            Decision::Drop
        );
        // 10 ns after the last send: expired, re-sent.
        assert_eq!(
            s.update_stream(&r, 10, Level::CRITICAL, |_| {}),
            Decision::Event {
                level: Level::CRITICAL,
                duration: 10
            }
        );
        assert_eq!(
            s.update_stream(&r, 19, Level::CRITICAL, |_| {}),
            Decision::Drop
        );
        // An unchanged OK is never sent, expired or not.
        assert!(matches!(
            s.update_stream(&r, 30, Level::OK, |_| {}),
            Decision::Event { .. }
        ));
        assert_eq!(s.update_stream(&r, 100, Level::OK, |_| {}), Decision::Drop);
    }

    #[test]
    fn no_recoveries_still_triggers() {
        let r = StateRules {
            no_recoveries: true,
            ..rules()
        };
        let mut s = AlertState::new(&r);
        let mut trig = vec![];
        assert!(matches!(
            s.update_stream(&r, 0, Level::WARNING, |b| trig.push(b)),
            Decision::Event { .. }
        ));
        assert_eq!(
            s.update_stream(&r, 5, Level::OK, |b| trig.push(b)),
            Decision::Drop
        );
        assert_eq!(trig, vec![true, false]);
        // Duration restarts after the suppressed OK.
        assert_eq!(
            s.update_stream(&r, 7, Level::INFO, |_| {}),
            Decision::Event {
                level: Level::INFO,
                duration: 0
            }
        );
    }

    #[test]
    fn flapping_suppresses_stream_but_not_batch_recovery() {
        let r = StateRules {
            flapping: Some((0.1, 0.2)),
            history: 4,
            ..rules()
        };
        let mut s = AlertState::new(&r);
        let mut b = s.clone();
        let seq = [Level::CRITICAL, Level::OK, Level::CRITICAL, Level::OK];
        let mut stream = vec![];
        let mut batch = vec![];
        for (i, l) in seq.iter().enumerate() {
            stream.push(s.update_stream(&r, i as i64, *l, |_| {}));
            batch.push(b.update_batch(&r, i as i64, *l, |_| {}));
        }
        // History 4: after CRIT the ratio is (0.8+~0.93)/3 > 0.2 → flapping at once.
        assert!(s.flapping());
        assert!(stream.iter().all(|d| *d == Decision::Drop), "{stream:?}");
        assert_eq!(batch[0], Decision::Drop);
        assert!(matches!(
            batch[1],
            Decision::Event {
                level: Level::OK,
                ..
            }
        ));
        assert!(matches!(
            batch[3],
            Decision::Event {
                level: Level::OK,
                ..
            }
        ));
    }

    #[test]
    fn restore_seeds_level_and_times() {
        let r = StateRules {
            state_changes_only: true,
            ..rules()
        };
        let mut s = AlertState::new(&r);
        assert!(s.restore(&r, 100, Level::CRITICAL, 50));
        assert_eq!(s.current_level(), Level::CRITICAL);
        // Unchanged level: not re-sent with stateChangesOnly.
        assert_eq!(
            s.update_stream(&r, 100, Level::CRITICAL, |_| {}),
            Decision::Drop
        );
        // The recovery carries the duration since the stored event.
        assert_eq!(
            s.update_stream(&r, 150, Level::OK, |_| {}),
            Decision::Event {
                level: Level::OK,
                duration: 100
            }
        );
    }

    #[test]
    fn first_point_is_expired_against_zero_time() {
        let r = StateRules {
            state_changes_only: true,
            renotify_every: 5,
            ..rules()
        };
        let mut s = AlertState::new(&r);
        s.add_event(&r, 0, Level::OK);
        assert!(s.expired());
        assert_eq!(s.update_stream(&r, 0, Level::OK, |_| {}), Decision::Drop);
    }

    /// A direct transcription of Kapacitor's `alertState` (a `Vec` ring, Go's
    /// zero time) to check the packed/wide ring and the rules against.
    struct Reference {
        history: Vec<u8>,
        idx: usize,
        flapping: bool,
        changed: bool,
        expired: bool,
        first: Option<i64>,
        last: Option<i64>,
    }

    impl Reference {
        fn add_event(&mut self, r: &StateRules, t: i64, l: u8) {
            self.changed = self.history[self.idx] != l;
            self.idx = (self.idx + 1) % self.history.len();
            self.history[self.idx] = l;
            if let Some((low, high)) = r.flapping {
                let n = self.history.len();
                let mut changes = 0.0;
                let mut weight = 0.8; // Go: maxWeight / weightDiff, exact then rounded
                let step = (1.2 - weight) / (n - 1) as f64;
                for i in 0..n - 1 {
                    let c = (i + self.idx) % n;
                    let p = if c == 0 { n - 1 } else { c - 1 };
                    if self.history[c] != self.history[p] {
                        changes += weight;
                    }
                    weight += step;
                }
                let p = changes / (n - 1) as f64;
                if self.flapping && p < low {
                    self.flapping = false;
                } else if !self.flapping && p > high {
                    self.flapping = true;
                }
            }
            let since = self.last.map_or(i64::MAX, |last| t - last);
            self.expired = !self.changed && r.renotify_every != 0 && since >= r.renotify_every;
        }

        fn stream(&mut self, r: &StateRules, t: i64, l: u8) -> Decision {
            self.add_event(r, t, l);
            if (r.flapping.is_some() && self.flapping)
                || (r.state_changes_only && !self.changed && !self.expired)
            {
                return Decision::Drop;
            }
            if l == 0 && !self.changed {
                return Decision::Drop;
            }
            self.last = Some(t);
            let p = if self.idx == 0 {
                self.history.len() - 1
            } else {
                self.idx - 1
            };
            if self.history[p] == 0 {
                self.first = Some(t);
            }
            if r.no_recoveries && l == 0 {
                return Decision::Drop;
            }
            let level = Level::from_u8(l).unwrap();
            // Go's zero time for a never-set firstTriggered: `Sub` saturates.
            let first = self.first.unwrap_or(i64::MIN);
            Decision::Event {
                level,
                duration: self.last.unwrap().saturating_sub(first),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn matches_reference_model(
            history in 2usize..40,
            levels in proptest::collection::vec(0u8..4, 1..200),
            flapping in proptest::option::of((0.0f64..0.5, 0.5f64..1.0)),
            state_changes_only in proptest::bool::ANY,
            renotify in 0i64..5,
            no_recoveries in proptest::bool::ANY,
        ) {
            let r = StateRules { history, flapping, state_changes_only: state_changes_only || renotify > 0,
                renotify_every: renotify, no_recoveries };
            let mut s = AlertState::new(&r);
            let mut m = Reference { history: vec![0; history], idx: 0, flapping: false, changed: false,
                expired: false, first: None, last: None };
            for (t, l) in levels.iter().enumerate() {
                let got = s.update_stream(&r, t as i64, Level::from_u8(*l).unwrap(), |_| {});
                let want = m.stream(&r, t as i64, *l);
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(s.current_level() as u8, *l);
                proptest::prop_assert_eq!((s.changed(), s.flapping(), s.expired()), (m.changed, m.flapping, m.expired));
            }
        }
    }
}
