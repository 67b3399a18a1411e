//! Topic authorization of one appliance: what it may publish, what it may
//! subscribe to. Pure functions over `protocol::topic`; no I/O.
//!
//! - PUBLISH (and the will): exactly one of the appliance's own
//!   device -> hub topics (`job/get`, `job/update`, `event/metrics/post`).
//! - SUBSCRIBE: a valid filter that starts with the appliance's namespace
//!   `/sys/{productKey}/{applianceId}/` (so no wildcard can reach above it)
//!   *and* matches at least one of its hub -> device topics. The second
//!   condition refuses filters that could never deliver anything, so the
//!   set of filters a session can hold is small and fixed.

use protocol::topic::{Direction, MessageKind, Topic};
use protocol::{ApplianceId, ProductKey};
use rumqttc::mqttbytes::valid_filter;

use super::subscriptions::matches;

/// Longest filter looked at; longer ones are refused unread.
const MAX_FILTER_LEN: usize = 256;

/// The topic rights of one connected appliance.
#[derive(Debug, Clone)]
pub(crate) struct Acl {
    namespace: String,
    publish: Vec<String>,
    receive: Vec<String>,
}

impl Acl {
    pub(crate) fn new(product_key: &ProductKey, appliance_id: &ApplianceId) -> Acl {
        let topics = |direction: Direction| {
            MessageKind::ALL
                .into_iter()
                .filter(|kind| kind.direction() == direction)
                .map(|kind| Topic::new(product_key.clone(), *appliance_id, kind).to_string())
                .collect()
        };
        Acl {
            namespace: Topic::namespace(product_key, appliance_id),
            publish: topics(Direction::DeviceToHub),
            receive: topics(Direction::HubToDevice),
        }
    }

    /// May the appliance publish to `topic`?
    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|own| own == topic)
    }

    /// May the appliance subscribe to `filter`?
    pub(crate) fn may_subscribe(&self, filter: &str) -> bool {
        filter.len() <= MAX_FILTER_LEN
            && filter.starts_with(&self.namespace)
            && valid_filter(filter)
            && self.receive.iter().any(|topic| matches(filter, topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
    const OTHER: &str = "6b1d8f4c-1c0e-4a53-9f69-1f1e4c1b2a3d";

    fn acl() -> Acl {
        Acl::new(&ProductKey::default(), &ID.parse().expect("valid id"))
    }

    #[test]
    fn publishes_only_to_own_device_to_hub_topics() {
        let acl = acl();
        for ok in ["job/get", "job/update", "event/metrics/post"] {
            assert!(acl.may_publish(&format!("/sys/va/{ID}/thing/{ok}")), "{ok}");
        }
        for bad in [
            format!("/sys/va/{ID}/thing/job/notify"),
            format!("/sys/va/{ID}/thing/job/update_reply"),
            format!("/sys/va/{OTHER}/thing/job/update"),
            format!("/sys/other/{ID}/thing/job/update"),
            format!("/sys/va/{ID}/thing/job/+"),
            format!("/sys/va/{ID}/thing/job/update/"),
            format!("sys/va/{ID}/thing/job/update"),
            "#".to_owned(),
            String::new(),
        ] {
            assert!(!acl.may_publish(&bad), "{bad}");
        }
    }

    #[test]
    fn subscribes_only_inside_own_namespace_to_filters_that_can_deliver() {
        let acl = acl();
        for ok in [
            "thing/job/notify",
            "thing/job/get_reply",
            "thing/job/update_reply",
            "thing/job/+",
            "thing/#",
            "#",
            "+/job/notify",
            "thing/+/notify",
        ] {
            assert!(acl.may_subscribe(&format!("/sys/va/{ID}/{ok}")), "{ok}");
        }
        for bad in [
            "#".to_owned(),
            "/#".to_owned(),
            "/sys/#".to_owned(),
            "/sys/+/+/thing/job/notify".to_owned(),
            format!("/sys/+/{ID}/thing/job/notify"),
            format!("/sys/va/{OTHER}/thing/job/notify"),
            format!("/sys/va/{OTHER}/#"),
            format!("/sys/va/{ID}"),
            format!("/sys/va/{ID}/thing/job/update"),
            format!("/sys/va/{ID}/thing/job/other"),
            format!("/sys/va/{ID}/thing/jo#"),
            format!("/sys/va/{ID}/thing/#/notify"),
            format!("/sys/va/{ID}/thing/job/notify/{}", "x".repeat(300)),
            format!("$share/g/sys/va/{ID}/thing/job/notify"),
            format!("/sys/va/{ID}/thing/job/notify\u{0}"),
        ] {
            assert!(!acl.may_subscribe(&bad), "{bad}");
        }
    }
}
