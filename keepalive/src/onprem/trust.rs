//! Whom a check trusts, pure: the rules that come before any request to the client. Only a
//! VM labelled [`LABEL`]`=`[`LABEL_VALUE`] (the provisioner sets it) is ever reset or sent a
//! password ([`enabled`]); a password read from Secret Manager goes only to one of the VM's
//! own addresses ([`password_may_go_to`]), so a payload naming an unrelated secret and
//! another host gets nothing. (An inline password is its sender's own: no such rule.)

use shared::google::compute::Instance;
use std::net::IpAddr;

/// The label a VM must carry to be checked at all (the provisioner sets it).
pub const LABEL: &str = "whatsapp-keepalive";
pub const LABEL_VALUE: &str = "enabled";

/// The VM does not carry `whatsapp-keepalive=enabled`: `found` is its value, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotEnabled {
    pub found: Option<String>,
}

/// Whether `instance` is one the keepalive may reset and send a password to.
pub fn enabled(instance: &Instance) -> Result<(), NotEnabled> {
    match instance.spec.labels.get(LABEL) {
        Some(v) if v == LABEL_VALUE => Ok(()),
        other => Err(NotEnabled {
            found: other.cloned(),
        }),
    }
}

/// The hostname's addresses are not all the VM's: its password stays here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTheVm {
    /// What the hostname is, or resolved to (empty: it did not resolve).
    pub host_addresses: Vec<IpAddr>,
    /// The instance's own addresses.
    pub vm_addresses: Vec<IpAddr>,
}

/// Whether a password read from Secret Manager may be sent to a host with `host_addresses`
/// (an IP literal, or every address its name resolved to): only if each is one of the
/// instance's own (`natIP`, `networkIP`, IPv6). An IPv4 address written as IPv6
/// (`::ffff:a.b.c.d`) counts as the IPv4 one.
pub fn password_may_go_to(host_addresses: &[IpAddr], instance: &Instance) -> Result<(), NotTheVm> {
    let vm: Vec<IpAddr> = instance.addresses().into_iter().map(canonical).collect();
    let all_the_vms =
        !host_addresses.is_empty() && host_addresses.iter().all(|ip| vm.contains(&canonical(*ip)));
    if all_the_vms {
        Ok(())
    } else {
        Err(NotTheVm {
            host_addresses: host_addresses.to_vec(),
            vm_addresses: vm,
        })
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        Instance {
            id: "123".into(),
            name: "wa-1".into(),
            status: "RUNNING".into(),
            ..Default::default()
        }
    }

    fn labelled(labels: &[(&str, &str)]) -> Instance {
        let mut i = instance();
        i.spec.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        i
    }

    #[test]
    fn only_a_vm_labelled_enabled_is_checked() {
        let cases: Vec<(&str, Instance, bool)> = vec![
            ("labelled", labelled(&[(LABEL, LABEL_VALUE)]), true),
            (
                "labelled among others",
                labelled(&[("app", "whatsapp"), (LABEL, LABEL_VALUE)]),
                true,
            ),
            ("no labels", labelled(&[]), false),
            ("other labels", labelled(&[("app", "whatsapp")]), false),
            ("disabled", labelled(&[(LABEL, "disabled")]), false),
            ("upper case value", labelled(&[(LABEL, "Enabled")]), false),
            ("empty value", labelled(&[(LABEL, "")]), false),
        ];
        for (name, i, want) in cases {
            assert_eq!(enabled(&i).is_ok(), want, "{name}");
        }
        assert_eq!(
            enabled(&labelled(&[(LABEL, "off")])),
            Err(NotEnabled {
                found: Some("off".into())
            })
        );
    }

    fn with_addresses(nat: &str, internal: &str, v6: &str) -> Instance {
        let v: serde_json::Value = serde_json::json!({
            "id": "123", "name": "wa-1", "status": "RUNNING",
            "networkInterfaces": [{
                "networkIP": internal,
                "ipv6Address": "fd20::5",
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "natIP": nat}],
                "ipv6AccessConfigs": [{"type": "DIRECT_IPV6", "externalIpv6": v6}]
            }]
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_secret_goes_only_to_the_vms_own_addresses() {
        let i = with_addresses("34.89.1.2", "10.156.0.2", "2600:1900:4000::1");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: Vec<(&str, Vec<IpAddr>, bool)> = vec![
            ("natIP", vec![ip("34.89.1.2")], true),
            ("networkIP", vec![ip("10.156.0.2")], true),
            ("external IPv6", vec![ip("2600:1900:4000::1")], true),
            ("internal IPv6", vec![ip("fd20::5")], true),
            ("IPv4 written as IPv6", vec![ip("::ffff:34.89.1.2")], true),
            (
                "a name resolving to two of its addresses",
                vec![ip("34.89.1.2"), ip("2600:1900:4000::1")],
                true,
            ),
            ("another host", vec![ip("203.0.113.66")], false),
            (
                "a name resolving to one of its addresses and another",
                vec![ip("34.89.1.2"), ip("203.0.113.66")],
                false,
            ),
            ("a name that resolved to nothing", vec![], false),
            ("loopback", vec![ip("127.0.0.1")], false),
        ];
        for (name, host, want) in cases {
            assert_eq!(password_may_go_to(&host, &i).is_ok(), want, "{name}");
        }
        let no_addresses = instance();
        assert!(password_may_go_to(&[ip("34.89.1.2")], &no_addresses).is_err());
    }
}
