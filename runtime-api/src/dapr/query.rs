//! Dapr's state query language (`QueryStateAlpha1`, docs.dapr.io "State query API"), run over
//! a store's entries: `filter` (`EQ`, `NEQ`, `GT`, `GTE`, `LT`, `LTE`, `IN`, `AND`, `OR`; each
//! field a dotted path into the JSON value, with or without a leading `value.`), `sort` (keys
//! with `ASC`/`DESC`) and `page` (`limit`, and `token`: the offset of the next page). Sans-IO;
//! runs on the calling shard.

use std::cmp::Ordering;

use layotto_proto::dapr::runtime::{QueryStateItem, QueryStateResponse};
use serde::Deserialize;
use serde_json::Value;

use super::keys;
use crate::{
    components::state::{StateEntry, StateStore},
    error::ApiError,
};

/// Runs query `text` over the entries of app `app_id` in `store` (their keys without the app's
/// prefix); `None` when the store cannot list its entries (no query support). Both Dapr APIs'
/// state query.
pub(crate) async fn query_store(
    store: &dyn StateStore,
    app_id: &str,
    text: &str,
) -> Result<Option<QueryStateResponse>, ApiError> {
    let query = Query::parse(text)?;
    let prefix = keys::state_prefix(app_id);
    let Some(entries) = store.scan(&prefix).await? else {
        return Ok(None);
    };
    let entries = entries
        .into_iter()
        .map(|(key, entry)| (key[prefix.len()..].to_owned(), entry))
        .collect();
    Ok(Some(query.run(entries)))
}

/// A parsed query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    sort: Vec<Sort>,
    #[serde(default)]
    page: Page,
}

/// A condition on an entry's value.
#[derive(Debug, Deserialize)]
enum Filter {
    #[serde(rename = "EQ")]
    Eq(Field),
    #[serde(rename = "NEQ")]
    Neq(Field),
    #[serde(rename = "GT")]
    Gt(Field),
    #[serde(rename = "GTE")]
    Gte(Field),
    #[serde(rename = "LT")]
    Lt(Field),
    #[serde(rename = "LTE")]
    Lte(Field),
    #[serde(rename = "IN")]
    In(Field),
    #[serde(rename = "AND")]
    And(Vec<Filter>),
    #[serde(rename = "OR")]
    Or(Vec<Filter>),
}

/// One `{"path": operand}` pair.
#[derive(Debug)]
struct Field {
    path: String,
    operand: Value,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        let mut pairs = map.into_iter();
        match (pairs.next(), pairs.next()) {
            (Some((path, operand)), None) => Ok(Self { path, operand }),
            _ => Err(serde::de::Error::custom("a filter names exactly one field")),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Sort {
    key: String,
    #[serde(default)]
    order: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Page {
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    token: Option<String>,
}

impl Query {
    /// Parses the request's `query` JSON (an empty one selects everything).
    fn parse(text: &str) -> Result<Self, ApiError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let query: Self = serde_json::from_str(text)
            .map_err(|err| ApiError::InvalidArgument(format!("failed to parse query: {err}")))?;
        for sort in &query.sort {
            if let Some(order) = &sort.order
                && order != "ASC"
                && order != "DESC"
            {
                return Err(ApiError::InvalidArgument(format!(
                    "sort order \"{order}\" is not ASC or DESC"
                )));
            }
        }
        if let Some(token) = &query.page.token
            && token.parse::<usize>().is_err()
        {
            return Err(ApiError::InvalidArgument(format!(
                "page token \"{token}\" is not one this store gave"
            )));
        }
        Ok(query)
    }

    /// The page of `entries` (key, entry) the query selects, with the next page's token.
    fn run(&self, entries: Vec<(String, StateEntry)>) -> QueryStateResponse {
        let mut rows: Vec<(String, StateEntry, Value)> = entries
            .into_iter()
            .filter_map(|(key, entry)| {
                let value = serde_json::from_slice(&entry.value).unwrap_or(Value::Null);
                let keep = self.filter.as_ref().is_none_or(|f| f.matches(&value));
                keep.then_some((key, entry, value))
            })
            .collect();
        rows.sort_by(|a, b| {
            for sort in &self.sort {
                let order = compare(lookup(&a.2, &sort.key), lookup(&b.2, &sort.key));
                let order = if sort.order.as_deref() == Some("DESC") {
                    order.reverse()
                } else {
                    order
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
            a.0.cmp(&b.0)
        });
        let start: usize = self
            .page
            .token
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let total = rows.len();
        let limit = if self.page.limit == 0 {
            total
        } else {
            self.page.limit
        };
        let end = start.saturating_add(limit).min(total);
        let results = rows
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .map(|(key, entry, _)| QueryStateItem {
                key,
                data: entry.value,
                etag: entry.etag,
                error: String::new(),
            })
            .collect();
        QueryStateResponse {
            results,
            token: if self.page.limit > 0 && end < total {
                end.to_string()
            } else {
                String::new()
            },
            metadata: Default::default(),
        }
    }
}

impl Filter {
    fn matches(&self, value: &Value) -> bool {
        let field = |f: &Field| lookup(value, &f.path);
        match self {
            Self::Eq(f) => field(f).is_some_and(|v| equal(v, &f.operand)),
            Self::Neq(f) => !field(f).is_some_and(|v| equal(v, &f.operand)),
            Self::Gt(f) => ordered(field(f), &f.operand, |o| o == Ordering::Greater),
            Self::Gte(f) => ordered(field(f), &f.operand, |o| o != Ordering::Less),
            Self::Lt(f) => ordered(field(f), &f.operand, |o| o == Ordering::Less),
            Self::Lte(f) => ordered(field(f), &f.operand, |o| o != Ordering::Greater),
            Self::In(f) => match (field(f), &f.operand) {
                (Some(v), Value::Array(options)) => options.iter().any(|o| equal(v, o)),
                _ => false,
            },
            Self::And(all) => all.iter().all(|f| f.matches(value)),
            Self::Or(any) => any.iter().any(|f| f.matches(value)),
        }
    }
}

/// The value at dotted `path` (a leading `value.` names the value itself).
fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let path = path.strip_prefix("value.").unwrap_or(path);
    path.split('.').try_fold(value, |v, part| v.get(part))
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn ordered(value: Option<&Value>, operand: &Value, test: impl Fn(Ordering) -> bool) -> bool {
    match value {
        Some(v) if comparable(v, operand) => test(compare(Some(v), Some(operand))),
        _ => false,
    }
}

fn comparable(a: &Value, b: &Value) -> bool {
    (a.is_number() && b.is_number()) || (a.is_string() && b.is_string())
}

/// Numbers by value, strings by text, anything else after them; absent values last.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => match (a, b) {
            (Value::Number(x), Value::Number(y)) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Number(_) | Value::String(_), _) => Ordering::Less,
            (_, Value::Number(_) | Value::String(_)) => Ordering::Greater,
            _ => Ordering::Equal,
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entries() -> Vec<(String, StateEntry)> {
        [
            (
                "1",
                r#"{"person":{"org":"Dev Ops","id":1036},"city":"Seattle","state":"WA"}"#,
            ),
            (
                "2",
                r#"{"person":{"org":"Hardware","id":1028},"city":"Portland","state":"OR"}"#,
            ),
            (
                "3",
                r#"{"person":{"org":"Finance","id":1071},"city":"Sacramento","state":"CA"}"#,
            ),
            (
                "4",
                r#"{"person":{"org":"Dev Ops","id":1042},"city":"Spokane","state":"WA"}"#,
            ),
            ("5", "not json"),
        ]
        .into_iter()
        .map(|(key, value)| {
            let entry = StateEntry {
                value: Bytes::from_static(value.as_bytes()),
                etag: "1".into(),
            };
            (key.to_owned(), entry)
        })
        .collect()
    }

    fn keys(query: &str) -> (Vec<String>, String) {
        let response = Query::parse(query).unwrap().run(entries());
        let keys = response.results.into_iter().map(|r| r.key).collect();
        (keys, response.token)
    }

    #[test]
    fn filters_sorts_and_pages_as_dapr_documents() {
        let (found, _) = keys(
            r#"{"filter": {"EQ": {"state": "WA"}}, "sort": [{"key": "person.id", "order": "DESC"}]}"#,
        );
        assert_eq!(found, ["4", "1"]);
        let (found, _) = keys(
            r#"{"filter": {"OR": [{"EQ": {"value.person.org": "Finance"}}, {"IN": {"state": ["OR"]}}]}}"#,
        );
        assert_eq!(found, ["2", "3"]);
        let (found, _) =
            keys(r#"{"filter": {"AND": [{"GT": {"person.id": 1030}}, {"NEQ": {"state": "CA"}}]}}"#);
        assert_eq!(found, ["1", "4"]);
        let (page, token) = keys(r#"{"sort": [{"key": "person.id"}], "page": {"limit": 2}}"#);
        assert_eq!(
            (page, token.as_str()),
            (vec!["2".to_owned(), "1".to_owned()], "2")
        );
        let (page, token) =
            keys(r#"{"sort": [{"key": "person.id"}], "page": {"limit": 2, "token": "2"}}"#);
        assert_eq!(
            (page, token.as_str()),
            (vec!["4".to_owned(), "3".to_owned()], "4")
        );
        let (all, token) = keys("");
        assert_eq!((all.len(), token.as_str()), (5, ""));
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        for bad in [
            r#"{"filter": {"LIKE": {"state": "W%"}}}"#,
            r#"{"filter": {"EQ": {"a": 1, "b": 2}}}"#,
            r#"{"sort": [{"key": "a", "order": "UP"}]}"#,
            r#"{"page": {"limit": 1, "token": "x"}}"#,
            "[",
        ] {
            assert!(
                matches!(Query::parse(bad), Err(ApiError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
