//! `category` and `inhibit(category, tags)` across every task the agent
//! serves: Kapacitor's `alert.InhibitorLookup`.
//!
//! Each group (mode 1) or alert id (mode 2) of a node that declares
//! `.inhibit()` owns one [`Inhibitor`] per declaration, with that group's
//! values of the equal-tags. `triggered()` turns it on for a non-OK level and
//! off for OK. An event of a node whose `category` equals an active
//! inhibitor's category, and whose point tags have the inhibitor's values, is
//! dropped before delivery (conformance README §4, *Inhibition*).
//!
//! Global state is touched only when a group is created (registration), when
//! its inhibitor changes, and when an event is checked — never per point.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// One group's inhibitor: a category and tag values, and whether the group is
/// non-OK now.
#[derive(Debug)]
pub struct Inhibitor {
    category: String,
    tags: Vec<(String, String)>,
    active: AtomicBool,
}

impl Inhibitor {
    pub fn new(category: String, tags: Vec<(String, String)>) -> Self {
        Self {
            category,
            tags,
            active: AtomicBool::new(false),
        }
    }

    pub fn category(&self) -> &str {
        &self.category
    }

    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether this inhibitor suppresses an event of `category` with `tags`
    /// (a tag the event lacks counts as the empty value, as in Go).
    fn inhibits<'a>(&self, category: &str, tag: &impl Fn(&str) -> Option<&'a str>) -> bool {
        self.is_active()
            && self.category == category
            && self
                .tags
                .iter()
                .all(|(k, v)| tag(k).unwrap_or("") == v.as_str())
    }
}

/// The agent-wide set of inhibitors, shared by every node.
#[derive(Debug, Default)]
pub struct Inhibitors {
    by_category: RwLock<HashMap<String, Vec<Arc<Inhibitor>>>>,
    /// Active inhibitors: when 0 (the common case) no event takes the lock.
    active: AtomicUsize,
}

impl Inhibitors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a group's inhibitor (inactive).
    pub fn add(&self, inhibitor: Arc<Inhibitor>) {
        let mut map = self.by_category.write().unwrap_or_else(|p| p.into_inner());
        map.entry(inhibitor.category.clone())
            .or_default()
            .push(inhibitor);
    }

    /// Removes a group's inhibitor (its node stopped).
    pub fn remove(&self, inhibitor: &Arc<Inhibitor>) {
        self.set(inhibitor, false);
        let mut map = self.by_category.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&inhibitor.category) {
            list.retain(|i| !Arc::ptr_eq(i, inhibitor));
            if list.is_empty() {
                map.remove(&inhibitor.category);
            }
        }
    }

    /// Turns a registered inhibitor on or off.
    pub fn set(&self, inhibitor: &Inhibitor, active: bool) {
        let was = inhibitor.active.swap(active, Ordering::AcqRel);
        match (was, active) {
            (false, true) => {
                self.active.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.active.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// Whether an event of a node in `category`, whose point has the tags
    /// `tag` looks up, is suppressed.
    pub fn is_inhibited<'a>(&self, category: &str, tag: impl Fn(&str) -> Option<&'a str>) -> bool {
        if self.active.load(Ordering::Acquire) == 0 {
            return false;
        }
        let map = self.by_category.read().unwrap_or_else(|p| p.into_inner());
        map.get(category)
            .is_some_and(|list| list.iter().any(|i| i.inhibits(category, &tag)))
    }

    /// How many inhibitors are registered (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.by_category
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }

    #[test]
    fn active_inhibitor_matches_category_and_tags() {
        let all = Inhibitors::new();
        let i = Arc::new(Inhibitor::new(
            "cpu".into(),
            vec![("host".into(), "A".into())],
        ));
        all.add(i.clone());
        assert!(!all.is_inhibited("cpu", tags(&[("host", "A")])));
        all.set(&i, true);
        assert!(all.is_inhibited("cpu", tags(&[("host", "A"), ("x", "y")])));
        assert!(!all.is_inhibited("cpu", tags(&[("host", "B")])));
        assert!(!all.is_inhibited("disk", tags(&[("host", "A")])));
        assert!(!all.is_inhibited("cpu", tags(&[])));
        all.set(&i, false);
        assert!(!all.is_inhibited("cpu", tags(&[("host", "A")])));
        all.set(&i, true);
        all.remove(&i);
        assert!(all.is_empty());
        assert!(!all.is_inhibited("cpu", tags(&[("host", "A")])));
    }

    #[test]
    fn empty_equal_tags_inhibit_the_whole_category() {
        let all = Inhibitors::new();
        let i = Arc::new(Inhibitor::new("cpu".into(), vec![]));
        all.add(i.clone());
        all.set(&i, true);
        assert!(all.is_inhibited("cpu", tags(&[("host", "Z")])));
    }
}
