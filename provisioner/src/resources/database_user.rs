//! The database user the WhatsApp client logs in as, created with the password kept in
//! Secret Manager. An existing user's password is left alone.

use secrecy::{ExposeSecret, SecretString};
use shared::google::GoogleError;
use std::time::Duration;

use crate::ensure::{Created, Resource};
use crate::{Provisioner, StepError};

pub struct DatabaseUser {
    pub project: String,
    pub instance: String,
    pub name: String,
    pub password: SecretString,
    /// Where the password is kept, for the report.
    pub password_secret: String,
    resource: String,
}

impl DatabaseUser {
    pub fn of(prov: &Provisioner, password: SecretString) -> DatabaseUser {
        let n = prov.names();
        DatabaseUser {
            project: prov.cfg.project.clone(),
            resource: format!("database user {} on {}", n.db_user, n.sql_instance),
            instance: n.sql_instance,
            name: n.db_user,
            password,
            password_secret: n.db_password_secret,
        }
    }
}

/// Cloud SQL answers a second create of a user with a failed operation, not a 409.
fn already_exists(e: &GoogleError) -> bool {
    e.is_already_exists()
        || matches!(e, GoogleError::Operation { message, .. } if message.contains("already exists"))
}

impl Resource for DatabaseUser {
    type State = ();

    fn kind(&self) -> &'static str {
        "database user"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn resource(&self) -> String {
        self.resource.clone()
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<()>, StepError> {
        let users = prov
            .google
            .sql
            .list_users(&self.project, &self.instance, Some(prov.call_deadline()))
            .await
            .map_err(prov.google_failed(self.resource()))?;
        Ok(users.contains(&self.name).then_some(()))
    }

    fn plan(&self) -> Option<String> {
        Some(format!("password from {}", self.password_secret))
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<()>, StepError> {
        let sql = &prov.google.sql;
        let created = async {
            let op = sql
                .create_user(
                    &self.project,
                    &self.instance,
                    &self.name,
                    self.password.expose_secret(),
                    Some(prov.call_deadline()),
                )
                .await?;
            sql.wait_operation(
                &self.project,
                &op.name,
                prov.wait_deadline(Duration::from_secs(600)),
            )
            .await
        };
        match created.await {
            Ok(_) => Ok(Created::New(())),
            Err(e) if already_exists(&e) => Ok(Created::AlreadyExists),
            Err(e) => Err(prov.google_failed(self.resource())(e)),
        }
    }

    fn detail(&self, _: &()) -> Option<String> {
        Some(format!(
            "password from Secret Manager {}",
            self.password_secret
        ))
    }
}
