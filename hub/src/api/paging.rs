//! Paging of every list: `offset`, `limit`, `order` (asc | desc) and
//! `sortby` from a whitelist per list, answered with the `total` of items
//! matching the query.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::store::{Page, Paging};

/// Most items one page holds.
pub const MAX_LIMIT: u32 = 1000;
/// Items of a page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;

/// The paging parameters of a list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items to skip (default 0).
    pub offset: Option<u64>,
    /// Items to return, 1-1000 (default 50).
    pub limit: Option<u32>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// The field to sort by; each list names the ones it accepts.
    pub sortby: Option<String>,
}

/// The sort keys a list accepts: `(sortby value, SQL expression)`. The
/// first is the default.
pub type SortKeys = &'static [(&'static str, &'static str)];

impl PageQuery {
    /// Checks the parameters against the list's sort keys.
    pub fn paging(&self, keys: SortKeys) -> Result<Paging, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request("invalid limit", "expected 1-1000"));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > i64::MAX as u64 {
            return Err(ApiError::bad_request("invalid offset", "too large"));
        }
        let descending = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid order",
                    "expected asc or desc",
                ))
            }
        };
        let sort = match self.sortby.as_deref() {
            None => keys.first().map(|(_, sql)| *sql).unwrap_or("rowid"),
            Some(name) => keys
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, sql)| *sql)
                .ok_or_else(|| {
                    let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                    ApiError::bad_request(
                        "invalid sortby",
                        format!("expected one of: {}", names.join(", ")),
                    )
                })?,
        };
        Ok(Paging {
            offset,
            limit,
            descending,
            sort,
        })
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageBody<T> {
    /// Items matching the query, all pages together.
    pub total: u64,
    /// As requested.
    pub offset: u64,
    /// As applied.
    pub limit: u32,
    /// This page.
    pub items: Vec<T>,
}

impl<T> PageBody<T> {
    /// The answer for `page`, fetched with `paging`.
    pub fn new(page: Page<T>, paging: &Paging) -> Self {
        Self {
            total: page.total,
            offset: paging.offset,
            limit: paging.limit,
            items: page.items,
        }
    }

    /// Pages a list held in memory, sorted already.
    pub fn from_vec(mut all: Vec<T>, paging: &Paging) -> Self {
        if paging.descending {
            all.reverse();
        }
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(paging.offset).unwrap_or(usize::MAX))
            .take(paging.limit as usize)
            .collect();
        Self {
            total,
            offset: paging.offset,
            limit: paging.limit,
            items,
        }
    }

    /// The same page with its items mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> PageBody<U> {
        PageBody {
            total: self.total,
            offset: self.offset,
            limit: self.limit,
            items: self.items.into_iter().map(f).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: SortKeys = &[("name", "c.name"), ("createdAt", "c.created_at")];

    #[test]
    fn defaults_and_whitelist() {
        let paging = PageQuery::default().paging(KEYS).expect("defaults");
        assert_eq!((paging.offset, paging.limit), (0, DEFAULT_LIMIT));
        assert_eq!((paging.descending, paging.sort), (false, "c.name"));
        let query = PageQuery {
            offset: Some(5),
            limit: Some(10),
            order: Some("desc".into()),
            sortby: Some("createdAt".into()),
        };
        let paging = query.paging(KEYS).expect("valid");
        assert_eq!((paging.descending, paging.sort), (true, "c.created_at"));
        for bad in [
            PageQuery {
                limit: Some(0),
                ..PageQuery::default()
            },
            PageQuery {
                limit: Some(1001),
                ..PageQuery::default()
            },
            PageQuery {
                order: Some("up".into()),
                ..PageQuery::default()
            },
            PageQuery {
                sortby: Some("c.name; DROP TABLE customers".into()),
                ..PageQuery::default()
            },
        ] {
            assert!(bad.paging(KEYS).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn in_memory_pages_follow_the_order() {
        let paging = PageQuery {
            offset: Some(1),
            limit: Some(2),
            order: Some("desc".into()),
            sortby: None,
        }
        .paging(KEYS)
        .expect("valid");
        let page = PageBody::from_vec(vec![1, 2, 3, 4], &paging);
        assert_eq!((page.total, page.items), (4, vec![3, 2]));
    }
}
