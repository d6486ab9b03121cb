//! The requests the fake serves, parsed from method and path, each with its
//! [`ComputeRoute`] (for scripted faults and counts) and the resource its errors name.

use axum::http::Method;

use super::delete;
use super::names::Scope;
use super::ComputeRoute;

pub(super) enum Route<'a> {
    GetProject {
        p: &'a str,
    },
    AggregatedOps {
        p: &'a str,
    },
    InsertInstance {
        p: &'a str,
        z: &'a str,
    },
    GetInstance {
        p: &'a str,
        z: &'a str,
        i: &'a str,
    },
    Reset {
        p: &'a str,
        z: &'a str,
        i: &'a str,
    },
    SetMetadata {
        p: &'a str,
        z: &'a str,
        i: &'a str,
    },
    SetLabels {
        p: &'a str,
        z: &'a str,
        i: &'a str,
    },
    ListOps {
        p: &'a str,
        z: &'a str,
    },
    GetOp {
        p: &'a str,
        scope: Scope,
        op: &'a str,
    },
    WaitOp {
        p: &'a str,
        z: &'a str,
        op: &'a str,
    },
    InsertAddress {
        p: &'a str,
        r: &'a str,
    },
    GetAddress {
        p: &'a str,
        r: &'a str,
        a: &'a str,
    },
    InsertFirewall {
        p: &'a str,
    },
    GetFirewall {
        p: &'a str,
        f: &'a str,
    },
    Delete {
        p: &'a str,
        target: delete::Target<'a>,
    },
}

impl<'a> Route<'a> {
    /// The route of `method` on the path's segments (`compute/v1/projects/...`), if served.
    pub(super) fn parse(method: &Method, segs: &[&'a str]) -> Option<Route<'a>> {
        let ["compute", "v1", "projects", p, ref rest @ ..] = *segs else {
            return None;
        };
        let route = match (method.as_str(), rest) {
            ("GET", []) => Route::GetProject { p },
            ("GET", ["aggregated", "operations"]) => Route::AggregatedOps { p },
            ("POST", ["zones", z, "instances"]) => Route::InsertInstance { p, z },
            ("GET", ["zones", z, "instances", i]) => Route::GetInstance { p, z, i },
            ("POST", ["zones", z, "instances", i, "reset"]) => Route::Reset { p, z, i },
            ("POST", ["zones", z, "instances", i, "setMetadata"]) => Route::SetMetadata { p, z, i },
            ("POST", ["zones", z, "instances", i, "setLabels"]) => Route::SetLabels { p, z, i },
            ("GET", ["zones", z, "operations"]) => Route::ListOps { p, z },
            ("GET", ["zones", z, "operations", op]) => Route::GetOp {
                p,
                scope: Scope::Zone((*z).into()),
                op,
            },
            ("POST", ["zones", z, "operations", op, "wait"]) => Route::WaitOp { p, z, op },
            ("GET", ["regions", r, "operations", op]) => Route::GetOp {
                p,
                scope: Scope::Region((*r).into()),
                op,
            },
            ("GET", ["global", "operations", op]) => Route::GetOp {
                p,
                scope: Scope::Global,
                op,
            },
            ("POST", ["regions", r, "addresses"]) => Route::InsertAddress { p, r },
            ("GET", ["regions", r, "addresses", a]) => Route::GetAddress { p, r, a },
            ("POST", ["global", "firewalls"]) => Route::InsertFirewall { p },
            ("GET", ["global", "firewalls", f]) => Route::GetFirewall { p, f },
            ("DELETE", ["zones", z, "instances", i]) => Route::Delete {
                p,
                target: delete::Target::Instance { z, i },
            },
            ("DELETE", ["regions", r, "addresses", a]) => Route::Delete {
                p,
                target: delete::Target::Address { r, a },
            },
            ("DELETE", ["global", "firewalls", f]) => Route::Delete {
                p,
                target: delete::Target::Firewall { f },
            },
            _ => return None,
        };
        Some(route)
    }

    pub(super) fn route(&self) -> ComputeRoute {
        match self {
            Route::GetProject { .. } => ComputeRoute::GetProject,
            Route::AggregatedOps { .. } => ComputeRoute::AggregatedOperations,
            Route::InsertInstance { .. } => ComputeRoute::InsertInstance,
            Route::GetInstance { .. } => ComputeRoute::GetInstance,
            Route::Reset { .. } => ComputeRoute::Reset,
            Route::SetMetadata { .. } => ComputeRoute::SetMetadata,
            Route::SetLabels { .. } => ComputeRoute::SetLabels,
            Route::ListOps { .. } => ComputeRoute::ListOperations,
            Route::GetOp { scope, .. } => match scope {
                Scope::Zone(_) => ComputeRoute::GetOperation,
                Scope::Region(_) => ComputeRoute::GetRegionOperation,
                Scope::Global => ComputeRoute::GetGlobalOperation,
            },
            Route::WaitOp { .. } => ComputeRoute::WaitOperation,
            Route::InsertAddress { .. } => ComputeRoute::InsertAddress,
            Route::GetAddress { .. } => ComputeRoute::GetAddress,
            Route::InsertFirewall { .. } => ComputeRoute::InsertFirewall,
            Route::GetFirewall { .. } => ComputeRoute::GetFirewall,
            Route::Delete { .. } => ComputeRoute::Delete,
        }
    }

    /// The resource its errors name: `projects/p/zones/z/instances/i`, or for an insert the
    /// collection (`projects/p/zones/z/instances`).
    pub(super) fn resource(&self) -> String {
        match self {
            Route::GetProject { p } | Route::AggregatedOps { p } => format!("projects/{p}"),
            Route::InsertInstance { p, z } => format!("projects/{p}/zones/{z}/instances"),
            Route::GetInstance { p, z, i }
            | Route::Reset { p, z, i }
            | Route::SetMetadata { p, z, i }
            | Route::SetLabels { p, z, i } => format!("projects/{p}/zones/{z}/instances/{i}"),
            Route::ListOps { p, z } => format!("projects/{p}/zones/{z}"),
            Route::GetOp { p, scope, op } => format!("{}/operations/{op}", scope.path(p)),
            Route::WaitOp { p, z, op } => format!("projects/{p}/zones/{z}/operations/{op}"),
            Route::InsertAddress { p, r } => format!("projects/{p}/regions/{r}/addresses"),
            Route::GetAddress { p, r, a } => format!("projects/{p}/regions/{r}/addresses/{a}"),
            Route::InsertFirewall { p } => format!("projects/{p}/global/firewalls"),
            Route::GetFirewall { p, f } => format!("projects/{p}/global/firewalls/{f}"),
            Route::Delete { p, target } => target.resource(p),
        }
    }

    /// The resource a scripted error names: for an insert, the collection and the `name` of
    /// the body, when it has one.
    pub(super) fn scripted_resource(&self, body: &[u8]) -> String {
        let insert = matches!(
            self,
            Route::InsertInstance { .. }
                | Route::InsertAddress { .. }
                | Route::InsertFirewall { .. }
        );
        let name = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned));
        match name {
            Some(name) if insert => format!("{}/{name}", self.resource()),
            _ => self.resource(),
        }
    }
}
