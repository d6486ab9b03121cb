//! The repairs `decide.rs` planned, in order, each read back. Only two calls ever change
//! anything: `POST {wabaId}/subscribed_apps` and the number's webhook override. Never a
//! register or a deregister (rate-limited; they can lock a number out for 72 hours).
//! Each result is reported as it is; the verdict is `decide::conclude`'s.

use shared::graph::GraphClient;
use shared::payload::cloud::CloudPayload;
use tokio::time::Instant;

use super::decide::{Repair, RepairResult};
use super::observe::Secrets;

/// Makes `plan` in order; a repair after one that did not succeed is not attempted (the
/// override needs the subscription).
pub async fn repair(
    graph: &GraphClient,
    p: &CloudPayload,
    secrets: &Secrets,
    plan: &[Repair],
    deadline: Instant,
) -> Vec<RepairResult> {
    let mut results: Vec<RepairResult> = Vec::with_capacity(plan.len());
    for r in plan {
        if results.iter().any(|x| !matches!(x, RepairResult::Done)) {
            results.push(RepairResult::NotAttempted(
                "the repair before it did not succeed".into(),
            ));
            continue;
        }
        let result = match r {
            Repair::Subscribe { app } => {
                subscribe(graph, p, secrets, app.as_deref(), deadline).await
            }
            Repair::WebhookOverride => webhook_override(graph, p, secrets, deadline).await,
        };
        tracing::warn!(phone_number_id = %p.phone_number_id, waba_id = %p.waba_id, repair = ?r, result = ?result, "repair made");
        results.push(result);
    }
    results
}

async fn subscribe(
    graph: &GraphClient,
    p: &CloudPayload,
    secrets: &Secrets,
    app: Option<&str>,
    deadline: Instant,
) -> RepairResult {
    let token = &secrets.access_token;
    if let Err(e) = graph.subscribe_app(token, &p.waba_id, Some(deadline)).await {
        return RepairResult::Failed(e);
    }
    match graph
        .subscribed_apps(token, &p.waba_id, Some(deadline))
        .await
    {
        Err(e) => RepairResult::Failed(e),
        Ok(apps) => {
            let taken = match app {
                Some(id) => apps.iter().any(|a| a.id == id),
                None => !apps.is_empty(),
            };
            if taken {
                RepairResult::Done
            } else {
                let listed: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
                RepairResult::NotTaken(format!(
                    "WABA {} lists {} after the subscription",
                    p.waba_id,
                    if listed.is_empty() {
                        "no app".to_string()
                    } else {
                        format!("apps {}", listed.join(", "))
                    }
                ))
            }
        }
    }
}

async fn webhook_override(
    graph: &GraphClient,
    p: &CloudPayload,
    secrets: &Secrets,
    deadline: Instant,
) -> RepairResult {
    let (Some(hook), Some(verify)) = (&p.webhook, &secrets.verify_token) else {
        return RepairResult::NotAttempted("no webhookUrl or no verify token".into());
    };
    let token = &secrets.access_token;
    if let Err(e) = graph
        .set_webhook_override(
            token,
            &p.phone_number_id,
            &hook.given,
            verify,
            Some(deadline),
        )
        .await
    {
        return RepairResult::Failed(e);
    }
    match graph
        .phone_number(token, &p.phone_number_id, Some(deadline))
        .await
    {
        Err(e) => RepairResult::Failed(e),
        Ok(n) => match n.webhook_configuration.effective() {
            Some(url) if hook.is(url) => RepairResult::Done,
            Some(url) => RepairResult::NotTaken(format!("webhooks still go to {url}")),
            None => RepairResult::NotTaken("no callback URL reads back".into()),
        },
    }
}
