//! What a command did or would do to each resource, printed one line each as it comes. The
//! report is for people and the exit status; steps hand each other state explicitly, never
//! through it.

use std::fmt;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Created now.
    Created,
    /// It was there and matches.
    Exists,
    /// It was there (or appeared while we created it) and was adopted.
    Adopted,
    /// It is there but differs from `number.toml`: each difference in words.
    Differs(Vec<String>),
    /// Changed to match.
    Updated(String),
    /// `--dry-run` / `plan`: would be created.
    WouldCreate,
    /// `--dry-run` / `plan`: would be changed.
    WouldUpdate(String),
    /// Cannot be planned yet: needs an earlier step.
    Blocked(String),
    /// Not this command's to do (no permission or API for it here): what to run by hand.
    ByHand(String),
}

#[derive(Debug, Clone)]
pub struct Line {
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
    pub detail: Option<String>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.action {
            Action::Created => "created".to_string(),
            Action::Exists => "exists, as configured".to_string(),
            Action::Adopted => "already existed: adopted".to_string(),
            Action::Differs(d) => format!("exists but DIFFERS from number.toml: {}", d.join("; ")),
            Action::Updated(what) => format!("updated: {what}"),
            Action::WouldCreate => "would be created".to_string(),
            Action::WouldUpdate(what) => format!("would be updated: {what}"),
            Action::Blocked(why) => format!("cannot be planned yet: {why}"),
            Action::ByHand(what) => format!("left to you: {what}"),
        };
        write!(f, "  {:<22} {:<40} {what}", self.kind, self.name)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// The lines of one command, printed as they come.
#[derive(Debug, Default)]
pub struct Report {
    lines: Mutex<Vec<Line>>,
}

impl Report {
    pub fn add(&self, kind: &'static str, name: &str, action: Action, detail: Option<String>) {
        let line = Line {
            kind,
            name: name.to_string(),
            action,
            detail,
        };
        println!("{line}");
        self.lines.lock().expect("report lock").push(line);
    }

    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().expect("report lock").clone()
    }

    /// Every difference found, for the exit status.
    pub fn differences(&self) -> Vec<Line> {
        self.lines()
            .into_iter()
            .filter(|l| matches!(l.action, Action::Differs(_)))
            .collect()
    }
}
