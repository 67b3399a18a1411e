//! Topic builders, subscription filters and the topic parser.
//!
//! Every appliance owns the namespace `/sys/{productKey}/{applianceId}/thing/`
//! (note the leading `/`: the first topic level is empty). Below it live
//! exactly the six topics of [`MessageKind`].

use std::fmt;

use crate::{ApplianceId, ProductKey, ProtocolError};

/// Which side publishes a message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Published by the hub, subscribed to by the appliance.
    HubToDevice,
    /// Published by the appliance, subscribed to by the hub.
    DeviceToHub,
}

/// The six message kinds of an appliance's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `job/notify`: a task was released or canceled.
    JobNotify,
    /// `job/get`: the appliance asks for `$next`, `$list` or one task.
    JobGet,
    /// `job/get_reply`: the answer to `job/get`.
    JobGetReply,
    /// `job/update`: progress and result of a task.
    JobUpdate,
    /// `job/update_reply`: accepted or rejected.
    JobUpdateReply,
    /// `event/metrics/post`: cpu, memory and storage figures.
    MetricsPost,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 6] = [
        Self::JobNotify,
        Self::JobGet,
        Self::JobGetReply,
        Self::JobUpdate,
        Self::JobUpdateReply,
        Self::MetricsPost,
    ];

    /// The topic levels after `/sys/{productKey}/{applianceId}/thing/`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::JobNotify => "job/notify",
            Self::JobGet => "job/get",
            Self::JobGetReply => "job/get_reply",
            Self::JobUpdate => "job/update",
            Self::JobUpdateReply => "job/update_reply",
            Self::MetricsPost => "event/metrics/post",
        }
    }

    /// Who publishes this kind.
    pub const fn direction(self) -> Direction {
        match self {
            Self::JobNotify | Self::JobGetReply | Self::JobUpdateReply => Direction::HubToDevice,
            Self::JobGet | Self::JobUpdate | Self::MetricsPost => Direction::DeviceToHub,
        }
    }

    /// The `method` field of envelopes of this kind.
    pub const fn method(self) -> &'static str {
        match self {
            Self::JobNotify => "thing.job.notify",
            Self::JobGet | Self::JobGetReply => "thing.job.get",
            Self::JobUpdate | Self::JobUpdateReply => "thing.job.update",
            Self::MetricsPost => "thing.event.metrics.post",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.suffix() == suffix)
    }
}

/// One concrete topic of one appliance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// First level of the namespace.
    pub product_key: ProductKey,
    /// The appliance the topic belongs to.
    pub appliance_id: ApplianceId,
    /// Which of the six topics.
    pub kind: MessageKind,
}

/// Longest topic the parser looks at; anything longer is refused unread.
const MAX_TOPIC_LEN: usize = 256;

impl Topic {
    /// Builds a topic.
    pub fn new(product_key: ProductKey, appliance_id: ApplianceId, kind: MessageKind) -> Self {
        Self {
            product_key,
            appliance_id,
            kind,
        }
    }

    /// Parses a concrete topic (no wildcards). Anything outside the
    /// namespace, or of an unknown kind, is an error.
    pub fn parse(topic: &str) -> Result<Self, ProtocolError> {
        let err = |reason| ProtocolError::Topic {
            topic: topic.chars().take(MAX_TOPIC_LEN).collect(),
            reason,
        };
        if topic.len() > MAX_TOPIC_LEN {
            return Err(err("longer than 256 bytes"));
        }
        let rest = topic
            .strip_prefix("/sys/")
            .ok_or_else(|| err("not under /sys/"))?;
        let mut levels = rest.splitn(4, '/');
        let (Some(product_key), Some(appliance_id), Some("thing"), Some(suffix)) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return Err(err("expected /sys/{productKey}/{applianceId}/thing/..."));
        };
        let product_key = product_key
            .parse()
            .map_err(|_| err("invalid product key"))?;
        let appliance_id = appliance_id
            .parse()
            .map_err(|_| err("invalid appliance id"))?;
        let kind = MessageKind::from_suffix(suffix).ok_or_else(|| err("unknown message kind"))?;
        Ok(Self::new(product_key, appliance_id, kind))
    }

    /// The prefix every topic of an appliance starts with, including the
    /// trailing `/`: `/sys/{productKey}/{applianceId}/`.
    pub fn namespace(product_key: &ProductKey, appliance_id: &ApplianceId) -> String {
        format!("/sys/{product_key}/{appliance_id}/")
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/sys/{}/{}/thing/{}",
            self.product_key,
            self.appliance_id,
            self.kind.suffix()
        )
    }
}

/// The filters the hub subscribes to: every appliance's device-to-hub
/// topics, optionally inside a shared subscription group
/// (`$share/{group}/...`) so that several hub replicas split the traffic.
/// Each filter gets a group of its own (`{group}-get`, ...), because brokers
/// that reuse one group name for two filters may share one cursor.
pub fn hub_filters(share_group: Option<&str>) -> Vec<String> {
    MessageKind::ALL
        .into_iter()
        .filter(|kind| kind.direction() == Direction::DeviceToHub)
        .map(|kind| {
            let filter = format!("/sys/+/+/thing/{}", kind.suffix());
            match share_group {
                Some(group) => format!("$share/{group}-{}/{filter}", short_name(kind)),
                None => filter,
            }
        })
        .collect()
}

/// The filters the device edge subscribes to on behalf of every connected
/// appliance: the hub-to-device topics of all appliances of `product_key`
/// (of every product key when `None`). The edge hands each message to the
/// session of the appliance its topic names.
pub fn edge_filters(product_key: Option<&ProductKey>) -> Vec<String> {
    let product_key = product_key.map_or_else(|| "+".to_owned(), ProductKey::to_string);
    MessageKind::ALL
        .into_iter()
        .filter(|kind| kind.direction() == Direction::HubToDevice)
        .map(|kind| format!("/sys/{product_key}/+/thing/{}", kind.suffix()))
        .collect()
}

fn short_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::JobGet => "get",
        MessageKind::JobUpdate => "update",
        MessageKind::MetricsPost => "metrics",
        MessageKind::JobNotify => "notify",
        MessageKind::JobGetReply => "get-reply",
        MessageKind::JobUpdateReply => "update-reply",
    }
}

/// The filters an appliance subscribes to: its own hub-to-device topics.
pub fn device_filters(product_key: &ProductKey, appliance_id: &ApplianceId) -> Vec<String> {
    MessageKind::ALL
        .into_iter()
        .filter(|kind| kind.direction() == Direction::HubToDevice)
        .map(|kind| Topic::new(product_key.clone(), *appliance_id, kind).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn builds_and_parses_every_kind() {
        let id: ApplianceId = ID.parse().expect("valid id");
        for kind in MessageKind::ALL {
            let topic = Topic::new(ProductKey::default(), id, kind);
            let text = topic.to_string();
            assert!(text.starts_with(&format!("/sys/va/{ID}/thing/")));
            assert_eq!(Topic::parse(&text), Ok(topic));
        }
    }

    #[test]
    fn refuses_everything_outside_the_namespace() {
        for bad in [
            "",
            "/",
            "sys/va/x/thing/job/get",
            &format!("sys/va/{ID}/thing/job/get"),
            &format!("/sys/va/{ID}/thing/job/get/extra"),
            &format!("/sys/va/{ID}/thing/job/+"),
            &format!("/sys/va/{ID}/thing/#"),
            &format!("/sys/va/{ID}/thing/job/getx"),
            &format!("/sys/va/{ID}/things/job/get"),
            &format!("/sys/VA/{ID}/thing/job/get"),
            &format!("/sys/+/{ID}/thing/job/get"),
            "/sys/va/+/thing/job/get",
            "/sys/va/not-a-uuid/thing/job/get",
            &format!("/sys/va/{ID}/thing/job/get{}", "x".repeat(300)),
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters() {
        assert_eq!(
            hub_filters(None),
            [
                "/sys/+/+/thing/job/get",
                "/sys/+/+/thing/job/update",
                "/sys/+/+/thing/event/metrics/post"
            ]
        );
        assert_eq!(
            hub_filters(Some("hubs"))[0],
            "$share/hubs-get//sys/+/+/thing/job/get"
        );
        assert_eq!(
            edge_filters(Some(&ProductKey::default())),
            [
                "/sys/va/+/thing/job/notify",
                "/sys/va/+/thing/job/get_reply",
                "/sys/va/+/thing/job/update_reply"
            ]
        );
        assert_eq!(edge_filters(None)[0], "/sys/+/+/thing/job/notify");
        let id: ApplianceId = ID.parse().expect("valid id");
        let filters = device_filters(&ProductKey::default(), &id);
        assert_eq!(filters.len(), 3);
        assert!(filters
            .iter()
            .all(|f| f.starts_with(&Topic::namespace(&ProductKey::default(), &id))));
    }
}
