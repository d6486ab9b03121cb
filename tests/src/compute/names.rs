//! How Compute names things: the scope of a resource or an operation, links in the real API's
//! form, resource names, ids, operation names and fingerprints.

use base64::Engine as _;
use time::OffsetDateTime;

/// How the real API writes links: every `selfLink`, `targetLink`, `zone`, `network`, ...
/// starts with this.
pub(super) const LINK_PREFIX: &str = "https://www.googleapis.com/compute/v1";

/// Where a resource or an operation lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    Zone(String),
    Region(String),
    Global,
}

impl Scope {
    /// `projects/p/zones/z` (the form of error messages).
    pub(super) fn path(&self, project: &str) -> String {
        match self {
            Scope::Zone(z) => format!("projects/{project}/zones/{z}"),
            Scope::Region(r) => format!("projects/{project}/regions/{r}"),
            Scope::Global => format!("projects/{project}/global"),
        }
    }

    /// `https://www.googleapis.com/compute/v1/projects/p/zones/z`
    pub(super) fn link(&self, project: &str) -> String {
        format!("{LINK_PREFIX}/{}", self.path(project))
    }

    /// The key of this scope in an aggregated list: `zones/{z}`, `regions/{r}`, `global`.
    pub(super) fn aggregated_key(&self) -> String {
        match self {
            Scope::Zone(z) => format!("zones/{z}"),
            Scope::Region(r) => format!("regions/{r}"),
            Scope::Global => "global".into(),
        }
    }
}

pub(super) fn instance_link(project: &str, zone: &str, name: &str) -> String {
    format!(
        "{}/instances/{name}",
        Scope::Zone(zone.into()).link(project)
    )
}

pub(super) fn address_link(project: &str, region: &str, name: &str) -> String {
    format!(
        "{}/addresses/{name}",
        Scope::Region(region.into()).link(project)
    )
}

pub(super) fn firewall_link(project: &str, name: &str) -> String {
    format!("{}/firewalls/{name}", Scope::Global.link(project))
}

pub(super) fn project_link(project: &str) -> String {
    format!("{LINK_PREFIX}/projects/{project}")
}

/// The region of a zone (`europe-west3-c` -> `europe-west3`; a zone without a dash is its
/// own region).
pub(super) fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

/// A link as the real API writes it, from any form a client may send: a full URL (any host),
/// `projects/p/...`, or a path relative to the project (`global/networks/default`,
/// `zones/z/...`, `regions/r/...`).
pub(super) fn full_link(project: &str, given: &str) -> String {
    let rel = match given.split_once("/compute/v1/") {
        Some((_, rest)) => rest,
        None => given.trim_start_matches('/'),
    };
    if rel.starts_with("projects/") {
        format!("{LINK_PREFIX}/{rel}")
    } else {
        format!("{LINK_PREFIX}/projects/{project}/{rel}")
    }
}

/// A network link (a bare name `default` means `global/networks/default`).
pub(super) fn network_link(project: &str, given: &str) -> String {
    if given.contains('/') {
        full_link(project, given)
    } else {
        full_link(project, &format!("global/networks/{given}"))
    }
}

/// Whether `name` is a valid Compute resource name (RFC 1035, at most 63 characters).
pub(super) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// An 8-byte base64 fingerprint, as the real API's.
pub(super) fn fingerprint() -> String {
    use rand::Rng as _;
    base64::engine::general_purpose::STANDARD.encode(rand::rng().random::<[u8; 8]>())
}

/// A resource or operation id: 19 decimal digits, as the real API's.
pub(super) fn random_id() -> u64 {
    use rand::Rng as _;
    rand::rng().random_range(1_000_000_000_000_000_000..9_000_000_000_000_000_000)
}

/// An operation name as the real API makes them: `operation-<ms>-<hex>-<hex>-<hex>`.
pub(super) fn operation_name(t: OffsetDateTime) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    format!(
        "operation-{}-{:013x}-{:08x}-{:08x}",
        t.unix_timestamp_nanos() / 1_000_000,
        rng.random::<u64>() & 0x1f_ffff_ffff_ffff,
        rng.random::<u32>(),
        rng.random::<u32>()
    )
}
