//! The one loop every resource of every step goes through ([`ensure`]):
//!
//! 1. read it;
//! 2. missing: under `--dry-run` say it would be created; else create it, and when the API
//!    answers that it exists already (`ALREADY_EXISTS`, `alreadyExists`: an earlier run that
//!    was stopped, or someone else), read it and go on as with one that existed: adopted;
//! 3. compare it with the spec ([`Resource::differences`]);
//! 4. bring back what may be brought back ([`Fix::Update`]), report what may not
//!    ([`Fix::Report`]: the exit status says so), stop at what must not be gone past
//!    ([`Fix::Stop`]); under `--dry-run` only say so;
//! 5. one report line, and the state handed back to the step ([`Ensured`]).
//!
//! A kind of resource says only what differs between kinds: [`Resource`].

use crate::report::Action;
use crate::{Provisioner, StepError};

/// One kind of resource: its spec, and how to read, create and update it.
///
/// Steps run on one task, so the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Resource {
    /// What reading it answers.
    type State;

    /// The kind, for the report (`Cloud Run service`).
    fn kind(&self) -> &'static str;

    /// The name, for the report.
    fn name(&self) -> &str;

    /// What errors name: the kind and the name, unless a kind says better.
    fn resource(&self) -> String {
        format!("{} {}", self.kind(), self.name())
    }

    /// The resource as it is, or `None` when it does not exist.
    async fn read(&self, prov: &Provisioner) -> Result<Option<Self::State>, StepError>;

    /// What creating it would make, in words (the detail of `would be created`).
    fn plan(&self) -> Option<String> {
        None
    }

    /// Creates it, and waits until it is there.
    async fn create(&self, prov: &Provisioner) -> Result<Created<Self::State>, StepError>;

    /// How `have` differs from the spec; empty when as wanted.
    fn differences(&self, _have: &Self::State, _check: Check) -> Vec<Difference> {
        Vec::new()
    }

    /// Brings `have` back to the spec for `diffs` (only [`Fix::Update`] ones); the state after.
    async fn update(
        &self,
        _prov: &Provisioner,
        _have: &Self::State,
        _diffs: &[Difference],
    ) -> Result<Self::State, StepError> {
        Err(StepError::failed(
            self.resource(),
            "cannot be changed in place by the provisioner",
        ))
    }

    /// What the report says about it once it is there (its IP, its URL, its state).
    fn detail(&self, _have: &Self::State) -> Option<String> {
        None
    }
}

/// What a create found.
#[derive(Debug)]
pub enum Created<S> {
    /// Created now; as it is after the create.
    New(S),
    /// It exists already (`ALREADY_EXISTS`): it is read, then adopted and checked.
    AlreadyExists,
}

/// How a comparison is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// It was adopted now: someone else created it while this run tried to.
    pub adopted: bool,
    /// `--dry-run`: words say "would".
    pub dry_run: bool,
}

impl Check {
    /// `done` or, under `--dry-run`, `planned`.
    pub fn say(&self, done: &'static str, planned: &'static str) -> &'static str {
        if self.dry_run {
            planned
        } else {
            done
        }
    }
}

/// One way a resource differs from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub words: String,
    pub fix: Fix,
}

/// What is done about a [`Difference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// Brought back to the spec; the field (an update-mask path) it is in.
    Update(&'static str),
    /// Reported, not changed (not ours to change silently); the command exits 1.
    Report,
    /// The command stops here (under `--dry-run`: left to a person).
    Stop,
}

impl Difference {
    pub fn update(field: &'static str, words: impl Into<String>) -> Self {
        Difference {
            words: words.into(),
            fix: Fix::Update(field),
        }
    }

    pub fn report(words: impl Into<String>) -> Self {
        Difference {
            words: words.into(),
            fix: Fix::Report,
        }
    }

    pub fn stop(words: impl Into<String>) -> Self {
        Difference {
            words: words.into(),
            fix: Fix::Stop,
        }
    }
}

/// The fields `diffs` update, in order, each once.
pub fn fields(diffs: &[Difference]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for d in diffs {
        if let Fix::Update(f) = d.fix {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

fn words(diffs: &[Difference]) -> Vec<String> {
    diffs.iter().map(|d| d.words.clone()).collect()
}

/// What [`ensure`] leaves: the resource as it is now, or, under `--dry-run`, that it would be
/// created.
#[derive(Debug)]
pub enum Ensured<S> {
    Planned,
    Present(S),
}

impl<S> Ensured<S> {
    pub fn present(self) -> Option<S> {
        match self {
            Ensured::Present(s) => Some(s),
            Ensured::Planned => None,
        }
    }

    pub fn as_present(&self) -> Option<&S> {
        match self {
            Ensured::Present(s) => Some(s),
            Ensured::Planned => None,
        }
    }

    pub fn is_planned(&self) -> bool {
        matches!(self, Ensured::Planned)
    }
}

/// Reads `r`, creates or adopts it, brings it to its spec, and reports one line (see the
/// module's documentation).
pub async fn ensure<R: Resource>(
    prov: &Provisioner,
    r: &R,
) -> Result<Ensured<R::State>, StepError> {
    let report = |action: Action, detail: Option<String>| {
        prov.report.add(r.kind(), r.name(), action, detail)
    };
    let (have, adopted) = match r.read(prov).await? {
        Some(have) => (have, false),
        None if prov.dry_run => {
            report(Action::WouldCreate, r.plan());
            return Ok(Ensured::Planned);
        }
        None => match r.create(prov).await? {
            Created::New(now) => {
                report(Action::Created, r.detail(&now));
                return Ok(Ensured::Present(now));
            }
            Created::AlreadyExists => (
                read_back(
                    prov,
                    r,
                    "answered that it exists already, then was not found",
                )
                .await?,
                true,
            ),
        },
    };
    let check = Check {
        adopted,
        dry_run: prov.dry_run,
    };
    let diffs = r.differences(&have, check);
    let stops: Vec<Difference> = diffs
        .iter()
        .filter(|d| d.fix == Fix::Stop)
        .cloned()
        .collect();
    if !stops.is_empty() {
        let why = words(&stops).join("; ");
        if prov.dry_run {
            report(Action::ByHand(why), None);
            return Ok(Ensured::Present(have));
        }
        return Err(StepError::failed(r.resource(), why));
    }
    let detail = r.detail(&have);
    if diffs.is_empty() {
        report(
            if adopted {
                Action::Adopted
            } else {
                Action::Exists
            },
            detail,
        );
        return Ok(Ensured::Present(have));
    }
    if diffs.iter().any(|d| d.fix == Fix::Report) {
        report(Action::Differs(words(&diffs)), detail);
        return Ok(Ensured::Present(have));
    }
    let what = words(&diffs).join("; ");
    if prov.dry_run {
        report(Action::WouldUpdate(what), detail);
        return Ok(Ensured::Present(have));
    }
    let now = r.update(prov, &have, &diffs).await?;
    report(Action::Updated(what), r.detail(&now));
    Ok(Ensured::Present(now))
}

/// `r` as it is right after this run made or met it; `why` says what happened when it is not
/// there.
pub async fn read_back<R: Resource>(
    prov: &Provisioner,
    r: &R,
    why: &str,
) -> Result<R::State, StepError> {
    r.read(prov).await?.ok_or_else(|| {
        StepError::failed(
            r.resource(),
            format!("{why}; run `provisioner {}` again", prov.command),
        )
    })
}

/// Reports that `r` would be created, once what it needs (a service's URL, a topic) exists:
/// it cannot even be read before.
pub fn planned<R: Resource>(prov: &Provisioner, r: &R) {
    prov.report
        .add(r.kind(), r.name(), Action::WouldCreate, r.plan());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NumberConfig;
    use crate::environment::Environment;
    use shared::events_publisher::PubSubTarget;
    use std::cell::RefCell;

    /// A provisioner whose Google clients point at a closed port: these tests call none.
    fn provisioner(dry_run: bool) -> Provisioner {
        let cfg = NumberConfig::parse(
            "project = \"p\"\nregion = \"europe-west3\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"15112345678\"\n",
        )
        .unwrap();
        let nowhere = url::Url::parse("http://127.0.0.1:9").unwrap();
        let env = Environment {
            compute_endpoint: nowhere.clone(),
            sqladmin_endpoint: nowhere.clone(),
            secretmanager_endpoint: nowhere.clone(),
            cloud_run_endpoint: nowhere.clone(),
            scheduler_endpoint: nowhere.clone(),
            monitoring_endpoint: nowhere.clone(),
            pubsub: PubSubTarget::emulator("127.0.0.1:9").unwrap(),
            whatsapp_url: None,
            graph_endpoint: nowhere,
            wait_timeout: None,
        };
        Provisioner::new(cfg, env, "test", dry_run).unwrap()
    }

    /// A setting held "in the cloud" (`stored`), wanted at `want`.
    struct Setting {
        stored: RefCell<Option<u32>>,
        want: u32,
        /// Someone else creates it (with this value) just before our create.
        made_elsewhere: Option<u32>,
        /// Differences are reported, never updated.
        report_only: bool,
        calls: RefCell<Vec<&'static str>>,
    }

    impl Setting {
        fn new(stored: Option<u32>, want: u32) -> Self {
            Setting {
                stored: RefCell::new(stored),
                want,
                made_elsewhere: None,
                report_only: false,
                calls: RefCell::new(Vec::new()),
            }
        }

        fn calls(&self) -> Vec<&'static str> {
            self.calls.borrow().clone()
        }
    }

    impl Resource for Setting {
        type State = u32;

        fn kind(&self) -> &'static str {
            "setting"
        }

        fn name(&self) -> &str {
            "s"
        }

        async fn read(&self, _: &Provisioner) -> Result<Option<u32>, StepError> {
            self.calls.borrow_mut().push("read");
            Ok(*self.stored.borrow())
        }

        fn plan(&self) -> Option<String> {
            Some(format!("at {}", self.want))
        }

        async fn create(&self, _: &Provisioner) -> Result<Created<u32>, StepError> {
            self.calls.borrow_mut().push("create");
            if let Some(theirs) = self.made_elsewhere {
                *self.stored.borrow_mut() = Some(theirs);
                return Ok(Created::AlreadyExists);
            }
            *self.stored.borrow_mut() = Some(self.want);
            Ok(Created::New(self.want))
        }

        fn differences(&self, have: &u32, check: Check) -> Vec<Difference> {
            if *have == self.want {
                return Vec::new();
            }
            let words = format!(
                "is {have}, wanted {} ({})",
                self.want,
                if check.adopted { "adopted" } else { "found" }
            );
            vec![if self.report_only {
                Difference::report(words)
            } else {
                Difference::update("value", words)
            }]
        }

        async fn update(
            &self,
            _: &Provisioner,
            _: &u32,
            diffs: &[Difference],
        ) -> Result<u32, StepError> {
            assert_eq!(fields(diffs), ["value"]);
            self.calls.borrow_mut().push("update");
            *self.stored.borrow_mut() = Some(self.want);
            Ok(self.want)
        }

        fn detail(&self, have: &u32) -> Option<String> {
            Some(format!("at {have}"))
        }
    }

    fn last_action(prov: &Provisioner) -> Action {
        prov.report.lines().last().unwrap().action.clone()
    }

    #[tokio::test]
    async fn a_missing_resource_is_created() {
        let prov = provisioner(false);
        let s = Setting::new(None, 5);
        let got = ensure(&prov, &s).await.unwrap();
        assert_eq!(got.present(), Some(5));
        assert_eq!(s.calls(), ["read", "create"]);
        assert_eq!(*s.stored.borrow(), Some(5));
        let line = prov.report.lines().pop().unwrap();
        assert_eq!(line.action, Action::Created);
        assert_eq!(line.detail.as_deref(), Some("at 5"));
    }

    #[tokio::test]
    async fn already_exists_is_adopted_and_checked() {
        let prov = provisioner(false);
        let mut s = Setting::new(None, 5);
        s.made_elsewhere = Some(5);
        assert_eq!(ensure(&prov, &s).await.unwrap().present(), Some(5));
        assert_eq!(s.calls(), ["read", "create", "read"]);
        assert_eq!(last_action(&prov), Action::Adopted);

        // Made by someone else with other settings: checked like one that existed.
        let mut s = Setting::new(None, 5);
        s.made_elsewhere = Some(3);
        assert_eq!(ensure(&prov, &s).await.unwrap().present(), Some(5));
        assert_eq!(s.calls(), ["read", "create", "read", "update"]);
        assert_eq!(
            last_action(&prov),
            Action::Updated("is 3, wanted 5 (adopted)".into())
        );
    }

    #[tokio::test]
    async fn already_exists_but_not_found_names_the_resource_and_the_command() {
        struct Vanishing;
        impl Resource for Vanishing {
            type State = ();
            fn kind(&self) -> &'static str {
                "thing"
            }
            fn name(&self) -> &str {
                "t"
            }
            async fn read(&self, _: &Provisioner) -> Result<Option<()>, StepError> {
                Ok(None)
            }
            async fn create(&self, _: &Provisioner) -> Result<Created<()>, StepError> {
                Ok(Created::AlreadyExists)
            }
        }
        let prov = provisioner(false);
        let e = ensure(&prov, &Vanishing).await.unwrap_err().to_string();
        assert!(
            e.starts_with("thing t: answered that it exists already"),
            "{e}"
        );
        assert!(e.contains("`provisioner test` again"), "{e}");
    }

    #[tokio::test]
    async fn drift_is_updated_and_a_match_left_alone() {
        let prov = provisioner(false);
        let s = Setting::new(Some(3), 5);
        assert_eq!(ensure(&prov, &s).await.unwrap().present(), Some(5));
        assert_eq!(s.calls(), ["read", "update"]);
        assert_eq!(*s.stored.borrow(), Some(5));
        assert_eq!(
            last_action(&prov),
            Action::Updated("is 3, wanted 5 (found)".into())
        );

        let s = Setting::new(Some(5), 5);
        ensure(&prov, &s).await.unwrap();
        assert_eq!(s.calls(), ["read"]);
        assert_eq!(last_action(&prov), Action::Exists);
    }

    #[tokio::test]
    async fn differences_not_ours_to_change_are_reported_not_changed() {
        let prov = provisioner(false);
        let mut s = Setting::new(Some(3), 5);
        s.report_only = true;
        assert_eq!(ensure(&prov, &s).await.unwrap().present(), Some(3));
        assert_eq!(s.calls(), ["read"]);
        assert_eq!(
            last_action(&prov),
            Action::Differs(vec!["is 3, wanted 5 (found)".into()])
        );
        assert_eq!(prov.report.differences().len(), 1);
    }

    #[tokio::test]
    async fn a_dry_run_changes_nothing() {
        let prov = provisioner(true);
        let s = Setting::new(None, 5);
        assert!(ensure(&prov, &s).await.unwrap().is_planned());
        assert_eq!(s.calls(), ["read"]);
        assert_eq!(*s.stored.borrow(), None);
        let line = prov.report.lines().pop().unwrap();
        assert_eq!(line.action, Action::WouldCreate);
        assert_eq!(line.detail.as_deref(), Some("at 5"));

        let s = Setting::new(Some(3), 5);
        assert_eq!(ensure(&prov, &s).await.unwrap().present(), Some(3));
        assert_eq!(s.calls(), ["read"]);
        assert_eq!(*s.stored.borrow(), Some(3));
        assert_eq!(
            last_action(&prov),
            Action::WouldUpdate("is 3, wanted 5 (found)".into())
        );
    }

    #[tokio::test]
    async fn a_stop_ends_the_command_or_is_left_to_a_person_in_a_dry_run() {
        struct Disabled;
        impl Resource for Disabled {
            type State = ();
            fn kind(&self) -> &'static str {
                "job"
            }
            fn name(&self) -> &str {
                "j"
            }
            async fn read(&self, _: &Provisioner) -> Result<Option<()>, StepError> {
                Ok(Some(()))
            }
            async fn create(&self, _: &Provisioner) -> Result<Created<()>, StepError> {
                unreachable!("it exists")
            }
            fn differences(&self, _: &(), _: Check) -> Vec<Difference> {
                vec![Difference::stop("disabled: delete it")]
            }
        }
        let prov = provisioner(false);
        let e = ensure(&prov, &Disabled).await.unwrap_err();
        assert_eq!(e.to_string(), "job j: disabled: delete it");
        let dry = provisioner(true);
        ensure(&dry, &Disabled).await.unwrap();
        assert_eq!(
            last_action(&dry),
            Action::ByHand("disabled: delete it".into())
        );
    }
}
