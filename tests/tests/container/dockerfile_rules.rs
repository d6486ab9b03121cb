//! Everything that can be wrong with the keepalive's Dockerfile: unpinned images, secrets in
//! `ARG`/`ENV`, the dependency layer, the release build, the user, the entrypoint.

use crate::dockerfile_parser::*;
use std::collections::BTreeSet;

/// Why `image` is not pinned to a specific version, if it is not.
pub fn image_pin_problem(image: &str) -> Option<String> {
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
pub fn looks_secret(name: &str) -> bool {
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

pub fn has_package_keepalive(words: &[&str]) -> bool {
    words
        .windows(2)
        .any(|w| matches!(w[0], "-p" | "--package") && w[1] == "keepalive")
        || words
            .iter()
            .any(|w| *w == "--package=keepalive" || *w == "-pkeepalive")
}

/// A release build of the keepalive package alone, with the lock file as it is.
pub fn is_release_build(ins: &Instruction, allow_chef: bool) -> bool {
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
pub fn is_manifest(path: &str) -> bool {
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
pub fn dockerfile_problems(text: &str) -> Vec<String> {
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
