//! The query strings of the list endpoints, typed: filters and paging under the names the
//! API gives them (docs/api.md), so that a caller cannot misspell one.

use portauthority_core::Status;
use portauthority_core::api::{SortField, SortOrder};

/// Paging of any list: `page` (1-based) or `after` (a cursor from a previous page's
/// `next`), `size`, `sort`, `order`. Unset fields take the server's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    pub page: Option<u64>,
    pub size: Option<u64>,
    pub sort: Option<SortField>,
    pub order: Option<SortOrder>,
    pub after: Option<String>,
}

/// `GET /v1/jobs`: every filter set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// The namespace, exactly.
    pub namespace: Option<String>,
    pub job_type: Option<String>,
    pub correlation_id: Option<String>,
    /// Any of these (empty: every status).
    pub statuses: Vec<Status>,
    /// `meta.<key>=<value>` pairs, sent in this order.
    pub meta: Vec<(String, String)>,
    pub paging: PageQuery,
}

/// `GET /v1/jobs/{id}/tasks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    pub namespace: Option<String>,
    pub task_type: Option<String>,
    pub statuses: Vec<Status>,
    pub paging: PageQuery,
}

impl PageQuery {
    fn push(&self, out: &mut Vec<(String, String)>) {
        push(out, "page", self.page.map(|n| n.to_string()));
        push(out, "size", self.size.map(|n| n.to_string()));
        push(out, "sort", self.sort.map(|s| s.as_str().to_owned()));
        push(out, "order", self.order.map(|o| o.as_str().to_owned()));
        push(out, "after", self.after.clone());
    }
}

impl JobQuery {
    /// The query string's pairs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        push(&mut out, "namespace", self.namespace.clone());
        push(&mut out, "type", self.job_type.clone());
        push(&mut out, "correlation_id", self.correlation_id.clone());
        push(&mut out, "status", statuses(&self.statuses));
        for (k, v) in &self.meta {
            out.push((format!("meta.{k}"), v.clone()));
        }
        self.paging.push(&mut out);
        out
    }
}

impl TaskQuery {
    /// The query string's pairs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        push(&mut out, "namespace", self.namespace.clone());
        push(&mut out, "type", self.task_type.clone());
        push(&mut out, "status", statuses(&self.statuses));
        self.paging.push(&mut out);
        out
    }
}

fn push(out: &mut Vec<(String, String)>, name: &str, value: Option<String>) {
    if let Some(v) = value {
        out.push((name.to_owned(), v));
    }
}

/// The API takes several statuses comma-separated in one `status`.
fn statuses(s: &[Status]) -> Option<String> {
    (!s.is_empty()).then(|| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_query_uses_the_api_names_and_joins_statuses() {
        let q = JobQuery {
            namespace: Some("com.a".into()),
            job_type: Some("send".into()),
            correlation_id: Some("c-1".into()),
            statuses: vec![Status::Failed, Status::InProgress],
            meta: vec![
                ("team".into(), "atlas".into()),
                ("team".into(), "io".into()),
            ],
            paging: PageQuery {
                page: Some(2),
                size: Some(10),
                sort: Some(SortField::UpdatedAt),
                order: Some(SortOrder::Desc),
                after: None,
            },
        };
        let expected = [
            ("namespace", "com.a"),
            ("type", "send"),
            ("correlation_id", "c-1"),
            ("status", "failed,in_progress"),
            ("meta.team", "atlas"),
            ("meta.team", "io"),
            ("page", "2"),
            ("size", "10"),
            ("sort", "updated_at"),
            ("order", "desc"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(q.pairs(), expected);
        assert!(JobQuery::default().pairs().is_empty());
    }
}
