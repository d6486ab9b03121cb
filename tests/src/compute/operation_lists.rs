//! Lists of operations: a zone's (`GET .../zones/{z}/operations`, a VM's reset history) and
//! the project's of every scope (`GET .../aggregated/operations`, the fleet brake), with the
//! keepalive's [filters](super::filter), `orderBy=creationTimestamp desc`, `maxResults` and
//! `pageToken`.

use axum::response::Response;
use serde_json::{json, Map};

use super::errors::compute_error;
use super::filter::ResetFilter;
use super::names::{project_link, Scope};
use super::operations::Operation;
use super::ComputeState;
use crate::server::json_response;

/// The query parameters of a list.
pub(super) type Query = [(String, String)];

fn param<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One page of a list, and the next page's token.
struct Page<'a> {
    items: Vec<&'a Operation>,
    next: Option<String>,
}

impl ComputeState {
    /// `GET .../zones/{z}/operations`.
    pub(super) fn list_zone_operations(
        &self,
        project: &str,
        zone: &str,
        query: &Query,
    ) -> Response {
        let scope = Scope::Zone(zone.into());
        let page = match self.operations_page(project, Some(&scope), query) {
            Ok(page) => page,
            Err(resp) => return resp,
        };
        let mut body = json!({
            "kind": "compute#operationList",
            "id": format!("projects/{project}/zones/{zone}/operations"),
            "selfLink": format!("{}/operations", scope.link(project)),
        });
        if !page.items.is_empty() {
            body["items"] = page.items.iter().map(|o| o.json()).collect();
        }
        if let Some(t) = page.next {
            body["nextPageToken"] = json!(t);
        }
        json_response(200, &body)
    }

    /// `GET .../aggregated/operations`: the page's operations grouped by scope.
    pub(super) fn aggregated_operations(&self, project: &str, query: &Query) -> Response {
        let page = match self.operations_page(project, None, query) {
            Ok(page) => page,
            Err(resp) => return resp,
        };
        let mut scopes = Map::new();
        for op in page.items {
            let entry = scopes
                .entry(op.scope.aggregated_key())
                .or_insert_with(|| json!({"operations": []}));
            if let Some(list) = entry["operations"].as_array_mut() {
                list.push(op.json());
            }
        }
        let mut body = json!({
            "kind": "compute#operationAggregatedList",
            "id": format!("projects/{project}/aggregated/operations"),
            "items": scopes,
            "selfLink": format!("{}/aggregated/operations", project_link(project)),
        });
        if let Some(t) = page.next {
            body["nextPageToken"] = json!(t);
        }
        json_response(200, &body)
    }

    /// One page of the project's operations (of `scope` only, when given) that match the
    /// filter, oldest first or, with `orderBy=creationTimestamp desc`, newest first;
    /// `maxResults` (at most 500) a page, `pageToken` the offset.
    fn operations_page(
        &self,
        project: &str,
        scope: Option<&Scope>,
        query: &Query,
    ) -> Result<Page<'_>, Response> {
        let filter = match param(query, "filter").filter(|f| !f.trim().is_empty()) {
            None => None,
            Some(f) => Some(ResetFilter::parse(f).ok_or_else(|| {
                compute_error(
                    400,
                    "invalid",
                    &format!(
                        "Invalid value for field 'filter': '{f}'. Invalid list filter expression."
                    ),
                )
            })?),
        };
        let newest_first =
            param(query, "orderBy").is_some_and(|o| o.to_ascii_lowercase().contains("desc"));
        let max = param(query, "maxResults")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(500)
            .clamp(1, 500);
        let offset = param(query, "pageToken")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        let mut ops: Vec<&Operation> = self
            .operations
            .iter()
            .filter(|o| o.project == project && scope.is_none_or(|s| o.scope == *s))
            .filter(|o| filter.as_ref().is_none_or(|f| f.matches(o)))
            .collect();
        ops.sort_by_key(|o| (o.insert_time, o.seq));
        if newest_first {
            ops.reverse();
        }
        let total = ops.len();
        let items: Vec<&Operation> = ops.into_iter().skip(offset).take(max).collect();
        let next = (offset + items.len() < total).then(|| (offset + items.len()).to_string());
        Ok(Page { items, next })
    }
}
