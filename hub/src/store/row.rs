//! Decoding of column values into typed values. Any value that does not
//! decode is [`StoreError::Corrupt`], naming the column; nothing here
//! panics on database content.

use std::fmt::Display;
use std::str::FromStr;

use rusqlite::types::FromSql;
use rusqlite::Row;
use serde::de::DeserializeOwned;

use super::StoreError;

/// A TEXT column parsed with `FromStr`.
pub(crate) fn parsed<T>(row: &Row<'_>, index: usize, column: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = row.get(index)?;
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// A nullable TEXT column parsed with `FromStr`.
pub(crate) fn parsed_opt<T>(
    row: &Row<'_>,
    index: usize,
    column: &str,
) -> Result<Option<T>, StoreError>
where
    T: FromStr,
    T::Err: Display,
{
    let text: Option<String> = row.get(index)?;
    text.map(|t| {
        t.parse()
            .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    })
    .transpose()
}

/// An INTEGER column converted to a narrower or unsigned type.
pub(crate) fn int<T: TryFrom<i64>>(
    row: &Row<'_>,
    index: usize,
    column: &str,
) -> Result<T, StoreError> {
    let value: i64 = row.get(index)?;
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} out of range")))
}

/// A nullable INTEGER column converted to a narrower or unsigned type.
pub(crate) fn int_opt<T: TryFrom<i64>>(
    row: &Row<'_>,
    index: usize,
    column: &str,
) -> Result<Option<T>, StoreError> {
    let value: Option<i64> = row.get(index)?;
    value
        .map(|v| {
            T::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column}: {v} out of range")))
        })
        .transpose()
}

/// A nullable JSON TEXT column.
pub(crate) fn json_opt<T: DeserializeOwned>(
    row: &Row<'_>,
    index: usize,
    column: &str,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| json_text(&t, column)).transpose()
}

/// JSON text already read.
pub(crate) fn json_text<T: DeserializeOwned>(text: &str, column: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// A plain column.
pub(crate) fn get<T: FromSql>(row: &Row<'_>, index: usize) -> Result<T, StoreError> {
    Ok(row.get(index)?)
}

/// A `LIMIT`/`OFFSET` value.
pub(crate) fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
