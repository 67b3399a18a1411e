//! Which appliances a job runs on: `targets` of `POST /api/v1/jobs`.
//!
//! Exactly one of `{"applianceIds": [...]}`, `{"customerId": "..."}` or
//! `{"tag": "..."}`. A customer target takes that customer's appliances
//! when the job is created; with `"continuous": true` appliances the
//! customer gets later receive the task too. A tag target (the tag's id or
//! its name) takes the live appliances carrying the tag; continuous, also
//! those tagged later.

use protocol::ApplianceId;
use serde::{Deserialize, Serialize};

use crate::model::CustomerId;

/// Longest tag name.
pub const MAX_TAG_LEN: usize = 64;

/// The targets of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Targets {
    /// These appliances (duplicates are ignored).
    ApplianceIds(Vec<ApplianceId>),
    /// Every live appliance of the customer.
    CustomerId(CustomerId),
    /// Every live appliance carrying the tag (its id or its name).
    Tag(String),
}

impl Targets {
    /// Whether appliances may join the target set after the job was
    /// created, so that the job can be continuous.
    pub fn can_grow(&self) -> bool {
        match self {
            Self::ApplianceIds(_) => false,
            Self::CustomerId(_) | Self::Tag(_) => true,
        }
    }

    /// The customer whose appliances are targeted, for a customer target.
    pub fn customer(&self) -> Option<CustomerId> {
        match self {
            Self::CustomerId(customer) => Some(*customer),
            Self::ApplianceIds(_) | Self::Tag(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn exactly_one_kind_of_target_is_accepted() {
        let id = ApplianceId::new_random();
        let ids: Targets = serde_json::from_value(json!({"applianceIds": [id]})).expect("ids");
        assert_eq!(ids, Targets::ApplianceIds(vec![id]));
        assert!(!ids.can_grow());
        let customer = CustomerId::new_random();
        let by_customer: Targets =
            serde_json::from_value(json!({"customerId": customer})).expect("customer");
        assert_eq!(by_customer.customer(), Some(customer));
        assert!(by_customer.can_grow());
        for bad in [
            json!({}),
            json!({"applianceIds": [id], "customerId": customer}),
            json!({"customerId": "not-a-uuid"}),
            json!({"everything": true}),
            json!([id]),
        ] {
            assert!(
                serde_json::from_value::<Targets>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
