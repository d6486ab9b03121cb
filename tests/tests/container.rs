//! What ships the keepalive: `Dockerfile.keepalive` (stages, pinned images, the dependency
//! layer, a non-root user, an exec-form entrypoint, no secrets, only the binary in the image),
//! `scheduler.yaml` (a Cloud Scheduler job every 5 minutes whose payload the real binary
//! accepts, the password only as a Secret Manager reference), and the parts of the binary's
//! container contract that `serve.rs` does not already cover (SIGINT, shared libraries).
//!
//! There is no Docker engine here: the Dockerfile is checked as text, instruction by
//! instruction, and each check is itself tested on a Dockerfile broken on purpose.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{World, PASSWORD, USER, VM, ZONE};
use keepalive_tests::binaries::{free_port, keepalive_bin, workspace_root};
use keepalive_tests::{Health, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn read_root_file(name: &str) -> String {
    let path = workspace_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile: a small parser
// ---------------------------------------------------------------------------------------------

/// One instruction, its continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    /// 1-based line where it starts.
    line: usize,
    /// Upper case: `FROM`, `RUN`, ...
    keyword: String,
    /// Everything after the keyword.
    args: String,
}

impl Instruction {
    fn words(&self) -> Vec<&str> {
        self.args.split_whitespace().collect()
    }

    /// `--name=value` flags at the start (`COPY --from=builder`, `FROM --platform=...`).
    fn flag(&self, name: &str) -> Option<&str> {
        self.words()
            .into_iter()
            .take_while(|w| w.starts_with("--"))
            .find_map(|w| w.strip_prefix(&format!("--{name}=")))
    }

    /// The words after the leading `--flags`.
    fn operands(&self) -> Vec<&str> {
        self.words()
            .into_iter()
            .skip_while(|w| w.starts_with("--"))
            .collect()
    }
}

/// Splits a Dockerfile into instructions: `#` comment lines (also inside a continuation) and
/// blank lines are dropped, a trailing `\` continues onto the next line.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    fn finish(line: usize, full: String, out: &mut Vec<Instruction>) {
        let full = full.trim();
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((full, ""));
        out.push(Instruction {
            line,
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
    }
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (trimmed, false),
        };
        match current.as_mut() {
            Some((_, acc)) => {
                acc.push(' ');
                acc.push_str(body);
            }
            None => current = Some((i + 1, body.to_string())),
        }
        if !continues {
            let (line, full) = current.take().unwrap();
            finish(line, full, &mut out);
        }
    }
    if let Some((line, full)) = current {
        finish(line, full, &mut out);
    }
    out
}

/// One `FROM` and what follows it.
#[derive(Debug)]
struct Stage {
    from: Instruction,
    /// The image reference, global `ARG`s substituted.
    image: String,
    /// `AS name`, lower case.
    name: Option<String>,
    body: Vec<Instruction>,
}

/// Global `ARG`s (before the first `FROM`) and the stages.
fn stages(instructions: &[Instruction]) -> (Vec<Instruction>, Vec<Stage>) {
    let mut global = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions {
        if ins.keyword == "FROM" {
            let ops = ins.operands();
            let image = substitute_args(ops.first().copied().unwrap_or(""), &global);
            let name = match ops.as_slice() {
                [_, as_, name, ..] if as_.eq_ignore_ascii_case("as") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            };
            stages.push(Stage {
                from: ins.clone(),
                image,
                name,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(ins.clone());
        } else {
            global.push(ins.clone());
        }
    }
    (global, stages)
}

/// `KEY=value` pairs of an `ENV` or `ARG` (also the old `ENV KEY value` form).
fn assignments(ins: &Instruction) -> Vec<(String, String)> {
    let words = ins.words();
    if ins.keyword == "ENV" && words.len() >= 2 && !words[0].contains('=') {
        return vec![(words[0].to_string(), words[1..].join(" "))];
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.trim_matches('"').to_string()),
            None => (w.to_string(), String::new()),
        })
        .collect()
}

/// `${NAME}` and `$NAME` in a `FROM` replaced with the global `ARG` defaults.
fn substitute_args(s: &str, global: &[Instruction]) -> String {
    let mut out = s.to_string();
    for ins in global.iter().filter(|i| i.keyword == "ARG") {
        for (k, v) in assignments(ins) {
            out = out.replace(&format!("${{{k}}}"), &v);
            out = out.replace(&format!("${k}"), &v);
        }
    }
    out
}

/// Why `image` is not pinned to a specific version, if it is not.
fn image_pin_problem(image: &str) -> Option<String> {
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some(format!("{image}: malformed digest"));
        }
    }
    // The tag is after the last `:` of the last path segment (a registry may have a port).
    let segment_start = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[segment_start..].rfind(':') {
        Some(i) => (
            &name_tag[..segment_start + i],
            Some(&name_tag[segment_start + i + 1..]),
        ),
        None => (name_tag, None),
    };
    let repo = name.rsplit('/').next().unwrap_or(name);
    let Some(tag) = tag else {
        return match digest {
            Some(_) => None,
            None => Some(format!("{image}: no tag, which means `latest`")),
        };
    };
    if tag.split('-').any(|part| part == "latest") {
        return Some(format!("{image}: `latest` is not a version"));
    }
    if digest.is_some() {
        return None;
    }
    if tag.starts_with(|c: char| c.is_ascii_digit()) {
        // `1.95-slim` moves with every patch release; `1.95.0-slim` does not.
        let version = tag.split('-').next().unwrap_or("");
        let parts: Vec<&str> = version.split('.').collect();
        if parts.len() < 3 || parts.iter().any(|p| p.parse::<u32>().is_err()) {
            return Some(format!(
                "{image}: tag `{tag}` is not a full x.y.z version (it moves)"
            ));
        }
        return None;
    }
    // A variant tag (`nonroot`) pins nothing unless the image's name carries the release
    // (`cc-debian12`).
    if !repo.chars().any(|c| c.is_ascii_digit()) {
        return Some(format!(
            "{image}: neither the tag nor the image name holds a version"
        ));
    }
    None
}

/// A name that says its value is a credential.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|part| {
            matches!(
                part,
                "PASSWORD" | "PASSWD" | "PASS" | "PWD" | "TOKEN" | "SECRET" | "KEY" | "APIKEY"
            ) || part.ends_with("PASSWORD")
                || part.ends_with("TOKEN")
                || part.ends_with("SECRET")
                || part.starts_with("CREDENTIAL")
        })
}

fn has_package_keepalive(words: &[&str]) -> bool {
    words
        .windows(2)
        .any(|w| matches!(w[0], "-p" | "--package") && w[1] == "keepalive")
        || words
            .iter()
            .any(|w| *w == "--package=keepalive" || *w == "-pkeepalive")
}

/// A release build of the keepalive package alone, with the lock file as it is.
fn is_release_build(ins: &Instruction, allow_chef: bool) -> bool {
    let words = ins.words();
    let cargo_build = words.windows(2).any(|w| w == ["cargo", "build"]);
    let chef_cook = allow_chef && words.windows(3).any(|w| w == ["cargo", "chef", "cook"]);
    ins.keyword == "RUN"
        && (cargo_build || chef_cook)
        && words.contains(&"--release")
        && words.contains(&"--locked")
        && has_package_keepalive(&words)
}

/// Manifests and the cargo-chef recipe: what the dependency layer may be built from.
fn is_manifest(path: &str) -> bool {
    let file = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path);
    matches!(
        file,
        "Cargo.toml" | "Cargo.lock" | "recipe.json" | "rust-toolchain" | "rust-toolchain.toml"
    )
}

/// Everything wrong with `text` as the keepalive's Dockerfile; empty when it is right.
fn dockerfile_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let instructions = parse_dockerfile(text);
    let (global, stages) = stages(&instructions);
    if stages.len() < 2 {
        problems.push(format!(
            "{} FROM stage(s): a multi-stage build (builder and runtime) is expected",
            stages.len()
        ));
        return problems;
    }

    // Every base image pinned.
    let mut names = BTreeSet::new();
    for stage in &stages {
        let image = &stage.image;
        if image.contains('$') {
            problems.push(format!(
                "line {}: FROM {image}: unresolved variable",
                stage.from.line
            ));
        } else if !names.contains(&image.to_ascii_lowercase()) && image != "scratch" {
            if let Some(p) = image_pin_problem(image) {
                problems.push(format!("line {}: FROM {p}", stage.from.line));
            }
        }
        if let Some(name) = &stage.name {
            names.insert(name.clone());
        }
    }

    // No secrets in ENV or ARG, anywhere.
    for ins in global
        .iter()
        .chain(stages.iter().flat_map(|s| s.body.iter()))
        .filter(|i| i.keyword == "ENV" || i.keyword == "ARG")
    {
        for (k, v) in assignments(ins) {
            if looks_secret(&k) || v.contains("-----BEGIN") || v.to_lowercase().contains("bearer ")
            {
                problems.push(format!(
                    "line {}: {} {k}: looks like a secret; images are not the place for one",
                    ins.line, ins.keyword
                ));
            }
        }
    }

    // Tools installed with cargo install are pinned too.
    for ins in stages.iter().flat_map(|s| s.body.iter()) {
        let words = ins.words();
        if ins.keyword == "RUN" && words.windows(2).any(|w| w == ["cargo", "install"]) {
            if !words.contains(&"--locked") {
                problems.push(format!("line {}: cargo install without --locked", ins.line));
            }
            if !words
                .iter()
                .any(|w| *w == "--version" || w.starts_with("--version="))
            {
                problems.push(format!(
                    "line {}: cargo install without a pinned --version",
                    ins.line
                ));
            }
        }
    }

    // The runtime stage.
    let last = stages.last().unwrap();
    let of_kind =
        |kw: &str| -> Vec<&Instruction> { last.body.iter().filter(|i| i.keyword == kw).collect() };
    match of_kind("USER").last() {
        None => problems.push("final stage: no USER, so the binary would run as root".into()),
        Some(user) => {
            let who = user.args.split(':').next().unwrap_or("").trim();
            if who.is_empty() || who == "root" || who == "0" {
                problems.push(format!("line {}: USER {}: root", user.line, user.args));
            }
        }
    }
    match of_kind("ENTRYPOINT").last() {
        None => problems.push("final stage: no ENTRYPOINT".into()),
        Some(ep) => match serde_json::from_str::<Vec<String>>(&ep.args) {
            Ok(argv) if argv.first().map(String::as_str) == Some("/keepalive") => {}
            Ok(argv) => problems.push(format!(
                "line {}: ENTRYPOINT {argv:?}: should start the binary /keepalive",
                ep.line
            )),
            Err(_) => problems.push(format!(
                "line {}: ENTRYPOINT {}: not the exec (JSON array) form; a shell would \
                 stand between Cloud Run's SIGTERM and the binary",
                ep.line, ep.args
            )),
        },
    }
    if let Some(cmd) = of_kind("CMD").last() {
        if serde_json::from_str::<Vec<String>>(&cmd.args).is_err() {
            problems.push(format!(
                "line {}: CMD {}: not the exec (JSON array) form",
                cmd.line, cmd.args
            ));
        }
    }
    if !of_kind("ENV")
        .iter()
        .flat_map(|i| assignments(i))
        .any(|(k, v)| k == "PORT" && v == "8080")
    {
        problems.push("final stage: no ENV PORT=8080".into());
    }
    if !of_kind("EXPOSE")
        .iter()
        .any(|i| i.words().contains(&"8080"))
    {
        problems.push("final stage: no EXPOSE 8080".into());
    }
    for run in of_kind("RUN") {
        problems.push(format!(
            "line {}: RUN in the runtime stage (distroless has no shell)",
            run.line
        ));
    }
    for add in of_kind("ADD") {
        problems.push(format!(
            "line {}: ADD in the runtime stage: only the binary is copied",
            add.line
        ));
    }
    let copies = of_kind("COPY");
    let mut build_stage = None;
    for copy in &copies {
        let ops = copy.operands();
        let sources = &ops[..ops.len().saturating_sub(1)];
        match copy.flag("from") {
            Some(from)
                if !sources.is_empty()
                    && sources
                        .iter()
                        .all(|s| s.rsplit('/').next() == Some("keepalive")) =>
            {
                build_stage = Some(from.to_ascii_lowercase());
            }
            _ => problems.push(format!(
                "line {}: COPY {}: the runtime stage copies the keepalive binary from the \
                 builder and nothing else",
                copy.line, copy.args
            )),
        }
    }

    // The stage that builds the binary: dependency layer, then sources, then the build.
    let Some(build_stage) = build_stage else {
        problems.push("final stage: no COPY --from=<builder> of the keepalive binary".into());
        return problems;
    };
    let Some(builder) = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(build_stage.as_str()))
    else {
        problems.push(format!("COPY --from={build_stage}: no such stage"));
        return problems;
    };
    let sources_at = builder.body.iter().position(|i| {
        i.keyword == "ADD"
            || (i.keyword == "COPY" && i.flag("from").is_none() && {
                let ops = i.operands();
                !ops[..ops.len().saturating_sub(1)]
                    .iter()
                    .all(|s| is_manifest(s))
            })
    });
    let Some(sources_at) = sources_at else {
        problems.push(format!("stage {build_stage}: no COPY of the sources"));
        return problems;
    };
    let (before, after) = builder.body.split_at(sources_at);
    match before.iter().position(|i| is_release_build(i, true)) {
        None => problems.push(format!(
            "stage {build_stage}: no dependency layer: no `cargo build`/`cargo chef cook` \
             --release --locked -p keepalive before the sources are copied (line {})",
            after[0].line
        )),
        Some(dep_build) => {
            for copy in before[..dep_build]
                .iter()
                .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
            {
                let ops = copy.operands();
                if !ops[..ops.len().saturating_sub(1)]
                    .iter()
                    .all(|s| is_manifest(s))
                {
                    problems.push(format!(
                        "line {}: COPY {}: the dependency layer must depend on manifests only",
                        copy.line, copy.args
                    ));
                }
            }
        }
    }
    if !after.iter().any(|i| {
        is_release_build(i, false) && i.words().windows(2).any(|w| w == ["cargo", "build"])
    }) {
        problems.push(format!(
            "stage {build_stage}: no `cargo build --release -p keepalive --locked` after the \
             sources are copied"
        ));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Dockerfile: the tests
// ---------------------------------------------------------------------------------------------

#[test]
fn dockerfile_is_multi_stage_pinned_non_root_and_exec_form() {
    let text = read_root_file("Dockerfile.keepalive");
    let problems = dockerfile_problems(&text);
    assert!(
        problems.is_empty(),
        "Dockerfile.keepalive:\n  {}",
        problems.join("\n  ")
    );

    // What the checks above take for granted, spelled out once.
    let instructions = parse_dockerfile(&text);
    let (_, stages) = stages(&instructions);
    let last = stages.last().unwrap();
    assert!(
        last.image.starts_with("gcr.io/distroless/cc-debian12"),
        "{}",
        last.image
    );
    let find = |kw: &str| last.body.iter().find(|i| i.keyword == kw).unwrap();
    assert_eq!(find("ENTRYPOINT").args, r#"["/keepalive"]"#);
    assert_eq!(find("CMD").args, r#"["serve"]"#);
    assert!(
        stages[0].image.starts_with("rust:") && stages[0].image.ends_with("-slim-bookworm"),
        "the builder's Debian must be the runtime's (glibc): {}",
        stages[0].image
    );
    // The pinning advice is there for whoever deploys it.
    assert!(text.contains("docker buildx imagetools inspect"));
    assert!(text.contains("gcloud artifacts repositories create keepalive"));
}

#[test]
fn dockerfile_checks_catch_what_they_are_for() {
    let good = read_root_file("Dockerfile.keepalive");
    let broken = |from: &str, to: &str| -> Vec<String> {
        assert!(good.contains(from), "the Dockerfile no longer has {from:?}");
        // Every occurrence: the comments at the top name the images too.
        dockerfile_problems(&good.replace(from, to))
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            broken("rust:1.95.0-slim-bookworm", "rust:latest"),
            "`latest`",
        ),
        (
            broken("rust:1.95.0-slim-bookworm", "rust:1.95-slim-bookworm"),
            "full x.y.z",
        ),
        (broken("rust:1.95.0-slim-bookworm", "rust"), "no tag"),
        (
            broken(
                "gcr.io/distroless/cc-debian12:nonroot",
                "gcr.io/distroless/cc:nonroot",
            ),
            "holds a version",
        ),
        (broken("USER 65532:65532", "USER root"), "root"),
        (broken("USER 65532:65532", "USER 0:0"), "root"),
        (broken("USER 65532:65532", ""), "no USER"),
        (
            broken(r#"ENTRYPOINT ["/keepalive"]"#, "ENTRYPOINT /keepalive"),
            "exec (JSON array) form",
        ),
        (broken(r#"CMD ["serve"]"#, "CMD serve"), "CMD serve"),
        (
            broken("ENV PORT=8080", "ENV PORT=8080 WHATSAPP_PASSWORD=hunter2"),
            "WHATSAPP_PASSWORD",
        ),
        (
            broken("ENV PORT=8080", "ENV PORT=8080\nARG GITHUB_TOKEN"),
            "GITHUB_TOKEN",
        ),
        (
            broken("ENV PORT=8080", "ENV PORT=8080\nENV SMTP_KEY=abc"),
            "SMTP_KEY",
        ),
        (broken("ENV PORT=8080", "ENV PORT=9000"), "PORT=8080"),
        (
            broken(
                "COPY --from=builder /app/target/release/keepalive /keepalive",
                "COPY --from=builder /app/target/release/keepalive /keepalive\n\
                 COPY --from=builder /app /src",
            ),
            "nothing else",
        ),
        (
            broken(
                "RUN cargo chef cook --release --locked -p keepalive --recipe-path recipe.json",
                "RUN true",
            ),
            "no dependency layer",
        ),
        (
            broken(
                "COPY --from=planner /app/recipe.json recipe.json",
                "COPY . .\nCOPY --from=planner /app/recipe.json recipe.json",
            ),
            "no dependency layer",
        ),
        (
            broken(
                "cargo build --release -p keepalive --locked",
                "cargo build --release -p keepalive",
            ),
            "cargo build --release -p keepalive --locked",
        ),
        (
            broken(
                "cargo build --release -p keepalive --locked",
                "cargo build --release --locked",
            ),
            "cargo build --release -p keepalive --locked",
        ),
        (
            broken(
                "cargo install --locked cargo-chef --version 0.1.78",
                "cargo install cargo-chef",
            ),
            "pinned --version",
        ),
    ];
    for (i, (problems, want)) in cases.iter().enumerate() {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "case {i}: no problem mentions {want:?}: {problems:?}"
        );
    }
    // One stage only.
    let single =
        "FROM rust:1.95.0-slim-bookworm\nRUN cargo build --release -p keepalive --locked\n";
    assert!(dockerfile_problems(single)[0].contains("multi-stage"));
}

#[test]
fn dockerfile_parser_joins_continuations_and_drops_comments() {
    let text = "# syntax=docker/dockerfile:1\nARG BASE=rust:1.95.0-slim-bookworm\n\
                FROM ${BASE} AS build\nRUN cargo build \\\n  # a comment inside\n  --release \\\n  -p keepalive\n\
                \n  from   --platform=linux/amd64 gcr.io/x/y:1.2.3@sha256:\
                0000000000000000000000000000000000000000000000000000000000000000\n\
                ENV A=1 B=\"two\"\nENV OLD form value\n";
    let ins = parse_dockerfile(text);
    let kws: Vec<&str> = ins.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(kws, ["ARG", "FROM", "RUN", "FROM", "ENV", "ENV"]);
    assert_eq!(ins[2].args, "cargo build --release -p keepalive");
    assert_eq!(ins[2].line, 4);
    assert_eq!(ins[3].flag("platform"), Some("linux/amd64"));
    let (global, st) = stages(&ins);
    assert_eq!(global.len(), 1);
    assert_eq!(st[0].image, "rust:1.95.0-slim-bookworm");
    assert_eq!(st[0].name.as_deref(), Some("build"));
    assert_eq!(image_pin_problem(&st[1].image), None);
    assert_eq!(
        assignments(&ins[4]),
        [("A".into(), "1".into()), ("B".into(), "two".into())]
    );
    assert_eq!(assignments(&ins[5]), [("OLD".into(), "form value".into())]);
    assert!(
        image_pin_problem("localhost:5000/rust").is_some(),
        "a port is not a tag"
    );
    assert!(image_pin_problem("localhost:5000/rust:1.95.0").is_none());
}

#[test]
fn docker_context_and_cloud_build_config() {
    let ignore = read_root_file(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target/", ".git/"] {
        assert!(patterns.contains(&must), ".dockerignore lacks {must}");
    }
    // Nothing the build needs is left out of the context.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "*.rs",
        "**/*.rs",
        "*.toml",
        "**/*.toml",
        "*",
    ] {
        assert!(!patterns.contains(&needed), ".dockerignore drops {needed}");
    }

    let config: Value = serde_norway::from_str(&read_root_file("cloudbuild.keepalive.yaml"))
        .expect("cloudbuild.keepalive.yaml is not YAML");
    let args: Vec<&str> = config["steps"][0]["args"]
        .as_array()
        .expect("steps[0].args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "build");
    assert!(
        args.contains(&"--file=Dockerfile.keepalive")
            || args.windows(2).any(|w| w == ["-f", "Dockerfile.keepalive"]),
        "{args:?}"
    );
    let tag = args
        .iter()
        .find_map(|a| a.strip_prefix("--tag="))
        .expect("--tag=");
    assert!(
        tag.contains("-docker.pkg.dev/") && tag.ends_with("/keepalive:${_TAG}"),
        "{tag}"
    );
    assert_eq!(
        config["images"][0], tag,
        "the built image is the one pushed"
    );
}

// ---------------------------------------------------------------------------------------------
// scheduler.yaml
// ---------------------------------------------------------------------------------------------

const PLACEHOLDERS: [&str; 11] = [
    "PROJECT",
    "REGION",
    "JOB_NAME",
    "TOPIC",
    "WHATSAPP_HOSTNAME",
    "TLS_FINGERPRINT",
    "WHATSAPP_USERNAME",
    "PASSWORD_SECRET",
    "VM",
    "ZONE",
    "TIME_ZONE",
];

const PAYLOAD_KEYS: [&str; 7] = [
    "whatsAppHostname",
    "whatsAppTlsFingerprint",
    "whatsAppUsername",
    "whatsAppPasswordSecret",
    "vm",
    "zone",
    "project",
];

/// The example number of the README and of the template's own comments.
fn example_values() -> BTreeMap<&'static str, String> {
    [
        ("PROJECT", "acme-prod"),
        ("REGION", "europe-west3"),
        ("JOB_NAME", "keepalive-whatsapp-4915112345678"),
        ("TOPIC", "whatsapp-keepalive"),
        ("WHATSAPP_HOSTNAME", "https://34.89.1.2"),
        (
            "TLS_FINGERPRINT",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ),
        ("WHATSAPP_USERNAME", "admin"),
        (
            "PASSWORD_SECRET",
            "projects/acme-prod/secrets/whatsapp-4915112345678-admin-password/versions/latest",
        ),
        ("VM", "whatsapp-4915112345678"),
        ("ZONE", "europe-west3-c"),
        ("TIME_ZONE", "Etc/UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// Fills in every `${NAME}`; panics on one left over.
fn render(template: &str, values: &BTreeMap<&str, String>) -> Value {
    let mut text = template.to_string();
    for (k, v) in values {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    let job: Value = serde_norway::from_str(&text).expect("the rendered job is not YAML");
    let mut left = BTreeSet::new();
    placeholders(&job, &mut left);
    assert!(left.is_empty(), "placeholders left: {left:?}");
    job
}

/// Every `${NAME}` in the keys and string values of `v`.
fn placeholders(v: &Value, found: &mut BTreeSet<String>) {
    fn scan(s: &str, found: &mut BTreeSet<String>) {
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let end = after.find('}').expect("unclosed ${");
            found.insert(after[..end].to_string());
            rest = &after[end + 1..];
        }
    }
    match v {
        Value::String(s) => scan(s, found),
        Value::Array(a) => a.iter().for_each(|x| placeholders(x, found)),
        Value::Object(o) => {
            for (k, x) in o {
                scan(k, found);
                placeholders(x, found);
            }
        }
        _ => {}
    }
}

fn keys(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| keys(x, found)),
        Value::Object(o) => {
            for (k, x) in o {
                found.push(k.clone());
                keys(x, found);
            }
        }
        _ => {}
    }
}

/// The Cloud Scheduler API's `Job` for a rendered template: `pubsubTarget.payload` becomes
/// `pubsubTarget.data`, the base64 of its compact JSON (what the provisioner sends).
fn api_job(rendered: &Value) -> Value {
    let mut job = rendered.clone();
    let target = job["pubsubTarget"].as_object_mut().expect("pubsubTarget");
    let payload = target.remove("payload").expect("pubsubTarget.payload");
    target.insert(
        "data".into(),
        json!(STANDARD.encode(serde_json::to_vec(&payload).unwrap())),
    );
    job
}

/// What the job publishes: the decoded `data`.
fn published_payload(job: &Value) -> Value {
    let data = job["pubsubTarget"]["data"].as_str().expect("data");
    serde_json::from_slice(&STANDARD.decode(data).expect("data is not base64"))
        .expect("data is not JSON")
}

#[test]
fn scheduler_template_is_a_five_minute_job_with_the_password_by_reference() {
    let template = read_root_file("scheduler.yaml");
    let raw: Value = serde_norway::from_str(&template).expect("scheduler.yaml is not YAML");
    let mut found = BTreeSet::new();
    placeholders(&raw, &mut found);
    let want: BTreeSet<String> = PLACEHOLDERS.iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want, "the template's placeholders");
    assert_eq!(raw["schedule"], "*/5 * * * *");

    let mut all_keys = Vec::new();
    keys(&raw, &mut all_keys);
    assert!(all_keys.iter().any(|k| k == "whatsAppPasswordSecret"));
    for k in &all_keys {
        assert!(
            !k.to_ascii_lowercase().contains("password") || k == "whatsAppPasswordSecret",
            "a clear password field in the template: {k}"
        );
    }
    let payload_keys: BTreeSet<&str> = raw["pubsubTarget"]["payload"]
        .as_object()
        .expect("pubsubTarget.payload")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        payload_keys,
        PAYLOAD_KEYS.into_iter().collect::<BTreeSet<_>>()
    );

    let job = render(&template, &example_values());
    assert_eq!(
        job["name"],
        "projects/acme-prod/locations/europe-west3/jobs/keepalive-whatsapp-4915112345678"
    );
    assert_eq!(
        job["pubsubTarget"]["topicName"],
        "projects/acme-prod/topics/whatsapp-keepalive"
    );
    assert_eq!(job["timeZone"], "Etc/UTC");
    assert_eq!(job["retryConfig"]["retryCount"], 0);
    let deadline = job["attemptDeadline"].as_str().expect("attemptDeadline");
    assert!(
        deadline
            .strip_suffix('s')
            .is_some_and(|n| n.parse::<u32>().is_ok()),
        "{deadline}"
    );
    for (k, v) in job["pubsubTarget"]["attributes"].as_object().unwrap() {
        assert!(v.is_string(), "attribute {k} must be a string: {v}");
    }

    // Minus the documented `payload` → `data` step, the template is an API `Job`.
    let api = api_job(&job);
    let fields: BTreeSet<&str> = api
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let job_fields = [
        "name",
        "description",
        "schedule",
        "timeZone",
        "pubsubTarget",
        "retryConfig",
        "attemptDeadline",
    ];
    assert!(
        fields.is_subset(&job_fields.into_iter().collect()),
        "{fields:?}"
    );
    let target: BTreeSet<&str> = api["pubsubTarget"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        target,
        ["attributes", "data", "topicName"]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    let published = published_payload(&api);
    assert_eq!(published, job["pubsubTarget"]["payload"]);

    // The gcloud command in the comments publishes the same payload on the same schedule.
    let comments: String = template
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(comments.contains("gcloud scheduler jobs create pubsub"));
    assert!(comments.contains(r#"--schedule="*/5 * * * *""#));
    assert!(comments.contains("--time-zone=Etc/UTC"));
    assert!(comments.contains("--max-retry-attempts=0"), "retryCount 0");
    let body = comments
        .split("--message-body='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("--message-body='{...}' in the comments");
    let body: Value = serde_json::from_str(body).expect("--message-body is not JSON");
    assert_eq!(
        body, published,
        "the gcloud example and the template differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_payload_is_accepted_by_the_real_binary() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    let secret = format!("projects/{FAKE_PROJECT}/secrets/whatsapp-4915112345678-admin-password");
    w.g.secrets.put(&secret, PASSWORD);
    // The password from Secret Manager goes only to one of the VM's addresses.
    w.g.compute.set_nat_ip(FAKE_PROJECT, ZONE, VM, "127.0.0.1");
    let mut values = example_values();
    for (k, v) in [
        ("PROJECT", FAKE_PROJECT.to_string()),
        ("WHATSAPP_HOSTNAME", w.wa.host_port()),
        ("WHATSAPP_USERNAME", USER.to_string()),
        ("PASSWORD_SECRET", format!("{secret}/versions/latest")),
        ("VM", VM.to_string()),
        ("ZONE", ZONE.to_string()),
        ("JOB_NAME", format!("keepalive-{VM}")),
    ] {
        values.insert(k, v);
    }
    let job = api_job(&render(&read_root_file("scheduler.yaml"), &values));
    let mut payload = published_payload(&job);
    assert!(payload.get("whatsAppPassword").is_none(), "{payload}");
    // The fake answers plain HTTP: no certificate to pin.
    payload
        .as_object_mut()
        .unwrap()
        .remove("whatsAppTlsFingerprint");

    // Healthy: the password came from Secret Manager and the login worked.
    let run = w.check(&payload, &["--dry-run"]).await;
    let o = run.outcome();
    assert_eq!(run.code, Some(0), "{o} {}", run.stderr);
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert_eq!(
        (&o["vm"], &o["zone"], &o["project"]),
        (&json!(VM), &json!(ZONE), &json!(FAKE_PROJECT))
    );
    assert!(
        w.g.secrets.access_count() >= 1,
        "the password was read from Secret Manager"
    );
    assert_eq!(w.wa.successful_login_count(), 1);

    // Down: the VM, zone and project it names are the instance a reset would hit.
    w.wa.set_health(Health::Single("disconnected"));
    let run = w.check(&payload, &["--dry-run"]).await;
    let o = run.outcome();
    assert_eq!(
        (run.code, o["verdict"].as_str()),
        (Some(1), Some("reset")),
        "{o}"
    );
    assert_eq!(w.resets(), 0, "--dry-run never resets");
}

// ---------------------------------------------------------------------------------------------
// The binary in a container: what serve.rs does not cover
// ---------------------------------------------------------------------------------------------

/// `docker run` without `-d` forwards Ctrl-C as SIGINT; the keepalive treats it as SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_serve_with_exit_0() {
    let mut w = World::new().await;
    w.set_env("RUST_LOG", "info");
    let bin = tokio::task::spawn_blocking(keepalive_bin).await.unwrap();
    let port = free_port();
    let mut child = Command::new(bin)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&w.env)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start keepalive serve");
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        assert!(Instant::now() < until, "serve did not listen within 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve still running 10 s after SIGINT");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let logs = format!("{stdout}\n{stderr}");
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("SIGINT"), "{logs}");
    common::assert_json_logs(&stdout);
}

/// The shared libraries an ELF binary asks for (`DT_NEEDED`); 64-bit little-endian only.
fn needed_libraries(elf: &[u8]) -> Vec<String> {
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF", "not an ELF file");
    assert_eq!(
        (elf[4], elf[5]),
        (2, 1),
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let section = |i: usize| shoff + i * shentsize;
    const SHT_DYNAMIC: usize = 6;
    const DT_NULL: usize = 0;
    const DT_NEEDED: usize = 1;
    let Some(dynamic) = (0..shnum)
        .map(section)
        .find(|&s| u32_at(s + 4) == SHT_DYNAMIC)
    else {
        return Vec::new(); // statically linked
    };
    let (offset, size) = (u64_at(dynamic + 24), u64_at(dynamic + 32));
    let strtab = u64_at(section(u32_at(dynamic + 40)) + 24);
    let mut libs = Vec::new();
    for entry in (offset..offset + size).step_by(16) {
        match u64_at(entry) {
            DT_NULL => break,
            DT_NEEDED => {
                let start = strtab + u64_at(entry + 8);
                let end = start + elf[start..].iter().position(|&b| b == 0).unwrap();
                libs.push(String::from_utf8_lossy(&elf[start..end]).into_owned());
            }
            _ => {}
        }
    }
    libs
}

/// distroless/cc provides glibc and libgcc (and libstdc++); anything else the binary asked
/// for would be missing at start-up in Cloud Run, after the image built fine. TLS is rustls,
/// so no OpenSSL either.
#[test]
fn binary_needs_only_the_libraries_of_distroless_cc() {
    let path = keepalive_bin();
    let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let libs = needed_libraries(&elf);
    assert!(libs.iter().any(|l| l == "libc.so.6"), "{libs:?}");
    let distroless_cc = |lib: &str| {
        [
            "libc.so",
            "libm.so",
            "libgcc_s.so",
            "libstdc++.so",
            "libpthread.so",
            "libdl.so",
            "librt.so",
            "libutil.so",
            "ld-linux-",
        ]
        .iter()
        .any(|prefix| lib.starts_with(prefix))
    };
    let foreign: Vec<&String> = libs.iter().filter(|l| !distroless_cc(l)).collect();
    assert!(
        foreign.is_empty(),
        "keepalive links {foreign:?}, which distroless/cc-debian12 does not provide (all: {libs:?})"
    );
}
