//! The subscriptions of one appliance session, and the topic matcher that
//! decides which of them a hub -> device message matches. Pure: no I/O.
//!
//! The edge is the MQTT server of each appliance's session, so it keeps the
//! session's filters itself; rumqttd only sees the edge's few fleet-wide
//! filters. Filters reach this set only after `acl` allowed them (inside the
//! appliance's own namespace, able to deliver something), so the set is
//! small; it is capped all the same ([`MAX_FILTERS`]).

use rumqttc::mqttbytes::QoS;

/// Most filters one session holds; a SUBSCRIBE beyond it is refused (0x80)
/// for the filters that do not fit.
pub(crate) const MAX_FILTERS: usize = 16;

/// Does `topic` (a concrete topic name) match `filter` (MQTT 3.1.1, 4.7)?
///
/// `+` matches exactly one level, `#` (last) the parent level and any number
/// of levels below it; everything else must be equal. Topics starting with
/// `$` are never matched by a filter starting with a wildcard.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for wanted in filter.split('/') {
        if wanted == "#" {
            return true;
        }
        match levels.next() {
            Some(_) if wanted == "+" => {}
            Some(level) if level == wanted => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// The filters one session subscribed to, with the QoS granted for each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Subscriptions {
    filters: Vec<(String, QoS)>,
}

impl Subscriptions {
    /// Adds `filter` (or replaces its QoS, as MQTT requires for a filter
    /// subscribed again). False if the set is full.
    pub(crate) fn add(&mut self, filter: &str, qos: QoS) -> bool {
        if let Some(entry) = self.filters.iter_mut().find(|(f, _)| f == filter) {
            entry.1 = qos;
            return true;
        }
        if self.filters.len() >= MAX_FILTERS {
            return false;
        }
        self.filters.push((filter.to_owned(), qos));
        true
    }

    /// Removes `filter` if present (an exact match of the filter text).
    pub(crate) fn remove(&mut self, filter: &str) {
        self.filters.retain(|(f, _)| f != filter);
    }

    /// The QoS to deliver a message on `topic` with: the highest QoS
    /// granted among the matching filters; `None` when none matches.
    pub(crate) fn qos_for(&self, topic: &str) -> Option<QoS> {
        self.filters
            .iter()
            .filter(|(filter, _)| matches(filter, topic))
            .map(|(_, qos)| *qos)
            .max_by_key(|qos| *qos as u8)
    }

    /// Number of filters held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.filters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFY: &str = "/sys/va/0f8fad5b-d9cb-469f-a165-70867728950e/thing/job/notify";

    #[test]
    fn literal_plus_and_hash_levels() {
        let ns = "/sys/va/0f8fad5b-d9cb-469f-a165-70867728950e";
        for filter in [
            NOTIFY.to_owned(),
            format!("{ns}/thing/job/+"),
            format!("{ns}/+/job/notify"),
            format!("{ns}/thing/#"),
            format!("{ns}/#"),
            format!("{ns}/thing/job/notify/#"), // `#` also matches its parent level
            "#".to_owned(),
            "/sys/+/+/thing/job/notify".to_owned(),
        ] {
            assert!(matches(&filter, NOTIFY), "{filter}");
        }
        for filter in [
            format!("{ns}/thing/job/get_reply"),
            format!("{ns}/thing/job"),
            format!("{ns}/thing/+"),
            format!("{ns}/thing/job/notify/+"),
            format!("{ns}/thing/job/notif"),
            format!("{ns}/+"),
            "sys/#".to_owned(),
            "/sys/va/6b1d8f4c-1c0e-4a53-9f69-1f1e4c1b2a3d/thing/job/notify".to_owned(),
            String::new(),
        ] {
            assert!(!matches(&filter, NOTIFY), "{filter}");
        }
    }

    #[test]
    fn edge_cases_of_empty_levels_and_dollar_topics() {
        assert!(matches("+/a", "/a"));
        assert!(matches("/+", "/"));
        assert!(!matches("+", "/a"));
        assert!(matches("a/+/c", "a//c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("", ""));
        assert!(!matches("a", "a/b"));
    }

    #[test]
    fn the_highest_granted_qos_of_the_matching_filters_wins() {
        let mut subs = Subscriptions::default();
        assert_eq!(subs.qos_for(NOTIFY), None);
        assert!(subs.add("/sys/va/+/thing/job/notify", QoS::AtMostOnce));
        assert_eq!(subs.qos_for(NOTIFY), Some(QoS::AtMostOnce));
        assert!(subs.add(NOTIFY, QoS::AtLeastOnce));
        assert_eq!(subs.qos_for(NOTIFY), Some(QoS::AtLeastOnce));
        subs.remove(NOTIFY);
        assert_eq!(subs.qos_for(NOTIFY), Some(QoS::AtMostOnce));
        subs.remove("/sys/va/+/thing/job/notify");
        assert_eq!((subs.qos_for(NOTIFY), subs.len()), (None, 0));
    }

    #[test]
    fn subscribing_again_replaces_and_the_set_is_capped() {
        let mut subs = Subscriptions::default();
        assert!(subs.add(NOTIFY, QoS::AtLeastOnce));
        assert!(subs.add(NOTIFY, QoS::AtMostOnce));
        assert_eq!(
            (subs.len(), subs.qos_for(NOTIFY)),
            (1, Some(QoS::AtMostOnce))
        );
        for i in 1..MAX_FILTERS {
            assert!(subs.add(&format!("f/{i}"), QoS::AtLeastOnce));
        }
        assert!(!subs.add("one/too/many", QoS::AtLeastOnce));
        assert!(subs.add(NOTIFY, QoS::AtLeastOnce), "replacing still works");
    }
}
