//! `category` and `inhibit(category, tags)` across every task the agent
//! serves: Kapacitor's `alert.InhibitorLookup`.
//!
//! Each group (mode 1) or alert id (mode 2) of a node that declares
//! `.inhibit()` owns one [`Inhibitor`] per declaration, with that group's
//! values of the equal-tags. `triggered()` turns it on for a non-OK level and
//! off for OK. An event of a node whose `category` equals an active
//! inhibitor's category, and whose point tags have the inhibitor's values, is
//! dropped before delivery (tests/conformance/README.md §4, *Inhibition*).
//!
//! Global state is touched only when an inhibitor changes state and when an
//! event is checked — never per point.

use std::collections::{HashMap, HashSet};
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

/// The agent-wide set of active inhibitors, shared by every node. Only
/// active inhibitors are held, so an event's check and a node's stop cost
/// what is active, not how many groups exist.
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

    /// Turns a group's inhibitor on or off (`triggered()`); the shared set
    /// changes only when its state does.
    pub fn set(&self, inhibitor: &Arc<Inhibitor>, active: bool) {
        if inhibitor.active.swap(active, Ordering::AcqRel) == active {
            return;
        }
        let mut map = self.by_category.write().unwrap_or_else(|p| p.into_inner());
        if active {
            map.entry(inhibitor.category.clone())
                .or_default()
                .push(inhibitor.clone());
            self.active.fetch_add(1, Ordering::AcqRel);
        } else if let Some(list) = map.get_mut(&inhibitor.category) {
            let before = list.len();
            list.retain(|i| !Arc::ptr_eq(i, inhibitor));
            self.active.fetch_sub(before - list.len(), Ordering::AcqRel);
            if list.is_empty() {
                map.remove(&inhibitor.category);
            }
        }
    }

    /// Turns off every inhibitor of a stopping node, under one lock.
    pub fn release<'a>(&self, inhibitors: impl IntoIterator<Item = &'a Arc<Inhibitor>>) {
        let gone: HashSet<*const Inhibitor> = inhibitors
            .into_iter()
            .filter(|i| i.active.swap(false, Ordering::AcqRel))
            .map(Arc::as_ptr)
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut map = self.by_category.write().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        map.retain(|_, list| {
            let before = list.len();
            list.retain(|i| !gone.contains(&Arc::as_ptr(i)));
            removed += before - list.len();
            !list.is_empty()
        });
        self.active.fetch_sub(removed, Ordering::AcqRel);
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

    /// How many inhibitors are active now.
    pub fn len(&self) -> usize {
        self.active.load(Ordering::Acquire)
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
        assert!(!all.is_inhibited("cpu", tags(&[("host", "A")])));
        all.set(&i, true);
        all.set(&i, true);
        assert_eq!(all.len(), 1);
        assert!(all.is_inhibited("cpu", tags(&[("host", "A"), ("x", "y")])));
        assert!(!all.is_inhibited("cpu", tags(&[("host", "B")])));
        assert!(!all.is_inhibited("disk", tags(&[("host", "A")])));
        assert!(!all.is_inhibited("cpu", tags(&[])));
        all.set(&i, false);
        assert!(!all.is_inhibited("cpu", tags(&[("host", "A")])));
        assert!(all.is_empty());
        all.set(&i, true);
        let other = Arc::new(Inhibitor::new("disk".into(), vec![]));
        all.set(&other, true);
        let idle = Arc::new(Inhibitor::new("disk".into(), vec![]));
        all.release([&i, &other, &idle]);
        assert!(all.is_empty());
        assert!(!all.is_inhibited("disk", tags(&[])));
    }

    #[test]
    fn empty_equal_tags_inhibit_the_whole_category() {
        let all = Inhibitors::new();
        let i = Arc::new(Inhibitor::new("cpu".into(), vec![]));
        all.set(&i, true);
        assert!(all.is_inhibited("cpu", tags(&[("host", "Z")])));
    }
}
