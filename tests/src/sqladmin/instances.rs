//! Instances: the checks and defaults of an insert's settings, and an instance's JSON.

use super::*;

/// Whether `name` is a valid Cloud SQL instance name.
pub(super) fn valid_instance_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 98
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// `a.b.c.d` or `a.b.c.d/n`.
pub(super) fn valid_cidr(s: &str) -> bool {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (s, None),
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok()
        && bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|n| n <= 32))
}

/// Objects merged key by key (recursively); anything else replaced; `null` removes.
pub(super) fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) =
                    b.get_mut(k).filter(|e| e.is_object() && v.is_object())
                {
                    merge(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

pub(super) const SSL_MODES: [&str; 3] = [
    "ALLOW_UNENCRYPTED_AND_ENCRYPTED",
    "ENCRYPTED_ONLY",
    "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
];

/// Checks and completes merged settings; `given`: the settings of this request (to know
/// which of `sslMode` / `requireSsl` was given).
pub(super) fn normalise_settings(settings: &mut Value, given: &Value) -> Result<(), Response> {
    let given_ipc = given.get("ipConfiguration");
    let given_mode = given_ipc
        .and_then(|i| i.get("sslMode"))
        .filter(|v| !v.is_null());
    let given_req = given_ipc
        .and_then(|i| i.get("requireSsl"))
        .filter(|v| !v.is_null());
    let ipc = settings
        .as_object_mut()
        .expect("settings are an object")
        .entry("ipConfiguration")
        .or_insert_with(|| json!({}));
    if !ipc.is_object() {
        return Err(invalid("settings.ipConfiguration must be an object."));
    }
    if let Some(mode) = given_mode {
        if !mode.as_str().is_some_and(|m| SSL_MODES.contains(&m)) {
            return Err(invalid(&format!("Invalid value for sslMode: {mode}.")));
        }
        if given_req.is_none() {
            ipc["requireSsl"] = json!(mode == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED");
        }
    }
    if let Some(req) = given_req {
        let Some(req) = req.as_bool() else {
            return Err(invalid(&format!("Invalid value for requireSsl: {req}.")));
        };
        if given_mode.is_none() {
            let current = ipc.get("sslMode").and_then(Value::as_str).unwrap_or("");
            let mode = if req {
                "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
            } else if current == "ENCRYPTED_ONLY" {
                "ENCRYPTED_ONLY"
            } else {
                "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
            };
            ipc["sslMode"] = json!(mode);
        }
    }
    let mode = ipc
        .get("sslMode")
        .and_then(Value::as_str)
        .unwrap_or("ALLOW_UNENCRYPTED_AND_ENCRYPTED")
        .to_owned();
    let req = ipc
        .get("requireSsl")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if req != (mode == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED") {
        // The real API's words (for a PostgreSQL instance).
        return Err(invalid(&format!(
            "For a Postgres instance, sslMode value {mode} and requireSsl value {req} are \
             conflicting. When sslMode=ENCRYPTED_ONLY, requireSsl must be false. When \
             requireSsl=true, sslMode must be TRUSTED_CLIENT_CERTIFICATE_REQUIRED. It's \
             recommended that you only set sslMode."
        )));
    }
    ipc["sslMode"] = json!(mode);
    ipc["requireSsl"] = json!(req);
    if ipc.get("ipv4Enabled").is_none() {
        ipc["ipv4Enabled"] = json!(true);
    }
    if let Some(nets) = ipc.get_mut("authorizedNetworks") {
        let Some(list) = nets.as_array_mut() else {
            return Err(invalid("authorizedNetworks must be a list."));
        };
        for net in list.iter_mut() {
            let value = net.get("value").and_then(Value::as_str).unwrap_or("");
            if !valid_cidr(value) {
                return Err(invalid(&format!(
                    "Non-routable or invalid network address in authorizedNetworks: '{value}'."
                )));
            }
            if let Some(o) = net.as_object_mut() {
                o.insert("kind".into(), json!("sql#aclEntry"));
            }
        }
    }
    if let Some(flags) = settings.get("databaseFlags") {
        let Some(list) = flags.as_array() else {
            return Err(invalid("databaseFlags must be a list."));
        };
        for (i, flag) in list.iter().enumerate() {
            if !flag.get("name").is_some_and(Value::is_string) {
                return Err(invalid(&format!("databaseFlags[{i}].name is required.")));
            }
            match flag.get("value") {
                None | Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(sql_error(
                        400,
                        "invalid",
                        &format!("Invalid value at 'body.settings.database_flags[{i}].value' (TYPE_STRING), {other}"),
                    ))
                }
            }
        }
    }
    Ok(())
}

pub(super) fn default_settings(region: &str) -> Value {
    json!({
        "kind": "sql#settings",
        "settingsVersion": "1",
        "activationPolicy": "ALWAYS",
        "availabilityType": "ZONAL",
        "pricingPlan": "PER_USE",
        "replicationType": "SYNCHRONOUS",
        "dataDiskType": "PD_SSD",
        "dataDiskSizeGb": "10",
        "storageAutoResize": true,
        "storageAutoResizeLimit": "0",
        "edition": "ENTERPRISE",
        "ipConfiguration": {
            "ipv4Enabled": true,
            "requireSsl": false,
            "sslMode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED",
            "authorizedNetworks": [],
        },
        "backupConfiguration": {
            "kind": "sql#backupConfiguration",
            "enabled": false,
            "startTime": "23:00",
            "pointInTimeRecoveryEnabled": false,
            "transactionLogRetentionDays": 7,
            "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 7},
        },
        "locationPreference": {"kind": "sql#locationPreference", "zone": format!("{region}-b")},
    })
}

pub(super) fn sha1_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SqlState {
    pub(super) fn fresh_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        if n <= 254 {
            format!("198.51.100.{n}")
        } else {
            let m = n - 255;
            format!("198.19.{}.{}", (m / 250) % 256, 1 + m % 250)
        }
    }

    /// Checks an insert body and builds the instance (`PENDING_CREATE`).
    pub(super) fn build_instance(&mut self, body: &Value) -> Result<(String, Instance), Response> {
        let Some(name) = body.get("name").and_then(Value::as_str) else {
            return Err(invalid("instance name is required."));
        };
        if !valid_instance_name(name) {
            return Err(invalid(&format!(
                "instance name '{name}' is invalid: use lower-case letters, digits and \
                 hyphens, starting with a letter."
            )));
        }
        let region = body
            .get("region")
            .and_then(Value::as_str)
            .unwrap_or("us-central1")
            .to_owned();
        let version = body
            .get("databaseVersion")
            .and_then(Value::as_str)
            .unwrap_or("MYSQL_8_0")
            .to_owned();
        let given = body.get("settings").cloned().unwrap_or_else(|| json!({}));
        if !given.is_object() {
            return Err(invalid("settings must be an object."));
        }
        if !given.get("tier").is_some_and(Value::is_string) {
            return Err(invalid(
                "Invalid Tier (null) for (SECOND_GEN) Edition (ENTERPRISE).",
            ));
        }
        let mut settings = default_settings(&region);
        merge(&mut settings, &given);
        normalise_settings(&mut settings, &given)?;
        let mut resource = body.clone();
        let obj = resource.as_object_mut().expect("body is an object");
        obj.remove("rootPassword");
        obj.insert("region".into(), json!(region));
        obj.insert("databaseVersion".into(), json!(version));
        obj.insert("settings".into(), settings);

        let mut users = BTreeMap::new();
        if version.starts_with("POSTGRES") {
            users.insert(
                "postgres".to_owned(),
                body.get("rootPassword")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        } else {
            users.insert(
                "root".to_owned(),
                body.get("rootPassword")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        }
        let t = now();
        let ca = SelfSignedCert::generate("Google Cloud SQL Server CA");
        let server_ca = json!({
            "kind": "sql#sslCert",
            "certSerialNumber": "0",
            "cert": ca.cert_pem,
            "commonName": "C=US,O=Google\\, Inc,CN=Google Cloud SQL Server CA,dnQualifier=fake",
            "sha1Fingerprint": sha1_hex(&ca.cert_der),
            "instance": name,
            "createTime": rfc3339_utc(t),
            "expirationTime": rfc3339_utc(t + time::Duration::days(3650)),
        });
        let inst = Instance {
            resource,
            state: "PENDING_CREATE".into(),
            created: t,
            ip: self.fresh_ip(),
            server_ca,
            users,
            databases: LISTED_BUILTIN_DATABASES
                .iter()
                .map(|d| (*d).to_owned())
                .collect(),
            db_list_calls: 0,
            etag: random_string(32),
        };
        Ok((name.to_owned(), inst))
    }

    pub(super) fn instance_json(&self, project: &str, name: &str, inst: &Instance) -> Value {
        let mut v = inst.resource.clone();
        let region = v
            .get("region")
            .and_then(Value::as_str)
            .unwrap_or("us-central1")
            .to_owned();
        let obj = v.as_object_mut().expect("resource is an object");
        for (k, val) in [
            ("kind", json!("sql#instance")),
            ("state", json!(inst.state)),
            ("name", json!(name)),
            ("project", json!(project)),
            (
                "connectionName",
                json!(format!("{project}:{region}:{name}")),
            ),
            (
                "selfLink",
                json!(format!(
                    "{SQL_LINK_PREFIX}/projects/{project}/instances/{name}"
                )),
            ),
            ("instanceType", json!("CLOUD_SQL_INSTANCE")),
            ("backendType", json!("SECOND_GEN")),
            ("gceZone", json!(format!("{region}-b"))),
            ("createTime", json!(rfc3339_utc(inst.created))),
            ("etag", json!(inst.etag)),
            (
                "serviceAccountEmailAddress",
                json!(format!(
                    "p{}-fake@gcp-sa-cloud-sql.iam.gserviceaccount.com",
                    project.len()
                )),
            ),
        ] {
            obj.insert(k.into(), val);
        }
        if inst.state == "RUNNABLE" {
            let ipv4 = obj
                .get("settings")
                .and_then(|s| s.pointer("/ipConfiguration/ipv4Enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if ipv4 {
                obj.insert(
                    "ipAddresses".into(),
                    json!([{"type": "PRIMARY", "ipAddress": inst.ip}]),
                );
            }
            obj.insert("serverCaCert".into(), inst.server_ca.clone());
        }
        v
    }
}
