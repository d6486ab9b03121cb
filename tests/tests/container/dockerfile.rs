//! `Dockerfile.keepalive`, `.dockerignore` and `cloudbuild.keepalive.yaml` checked as text, and
//! each check tested on a Dockerfile broken on purpose.

use crate::dockerfile_parser::*;
use crate::dockerfile_rules::*;
use crate::read_root_file;
use serde_json::Value;

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
