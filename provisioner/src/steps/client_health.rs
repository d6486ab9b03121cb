//! `status`'s health line: logs in with the stored admin password and reads `/v1/health`.

use shared::whatsapp::{Health, HealthState, WhatsAppClient};

use crate::resources::secret::read_newest;
use crate::{Provisioner, StepError};

/// Logs in with the stored admin password (never a first login: `status` changes nothing)
/// and shows `/v1/health`, per node for several nodes, and whether the client is healthy.
pub async fn show(
    prov: &Provisioner,
    wa: &WhatsAppClient,
    line: fn(&str, &str, &str),
) -> Result<(), StepError> {
    let secret = prov.names().admin_password_secret;
    let Some((_, password)) = read_newest(prov, &secret).await? else {
        line(
            "WhatsApp health",
            "",
            "unknown: no admin password stored yet (run `provisioner whatsapp`)",
        );
        return Ok(());
    };
    let health = match wa.login("admin", &password).await {
        Ok(session) => wa.health(&session.token).await,
        Err(e) => Err(e),
    };
    let health = match health {
        Ok(h) => h,
        Err(e) => {
            line(
                "WhatsApp health",
                "",
                &format!("NOT HEALTHY: the client answers, but {e}"),
            );
            return Ok(());
        }
    };
    match &health {
        Health::Single { gateway_status } => {
            line("WhatsApp health", "gateway_status", gateway_status)
        }
        Health::Nodes(nodes) => {
            for node in nodes {
                let role = node.role.as_deref().unwrap_or("?");
                line(
                    "WhatsApp node",
                    &node.name,
                    &format!("{role} gateway_status {}", node.gateway_status),
                );
            }
        }
    }
    let verdict = match health.state() {
        HealthState::Up(why) => format!("healthy: {why}"),
        HealthState::Down(why) => format!("NOT HEALTHY: the client answers, but {why}"),
        HealthState::Unregistered(why) => {
            format!("NOT HEALTHY: the client answers, but the number is not registered ({why})")
        }
    };
    line("WhatsApp health", "", &verdict);
    Ok(())
}
