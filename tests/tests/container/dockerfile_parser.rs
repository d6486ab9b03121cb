//! A small Dockerfile parser: instructions with continuations joined and comments dropped,
//! stages and global `ARG`s, `ENV`/`ARG` assignments, `ARG` substitution in `FROM`.

/// One instruction, its continuation lines joined.
#[derive(Debug, Clone)]
pub struct Instruction {
    /// 1-based line where it starts.
    pub line: usize,
    /// Upper case: `FROM`, `RUN`, ...
    pub keyword: String,
    /// Everything after the keyword.
    pub args: String,
}

impl Instruction {
    pub fn words(&self) -> Vec<&str> {
        self.args.split_whitespace().collect()
    }

    /// `--name=value` flags at the start (`COPY --from=builder`, `FROM --platform=...`).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.words()
            .into_iter()
            .take_while(|w| w.starts_with("--"))
            .find_map(|w| w.strip_prefix(&format!("--{name}=")))
    }

    /// The words after the leading `--flags`.
    pub fn operands(&self) -> Vec<&str> {
        self.words()
            .into_iter()
            .skip_while(|w| w.starts_with("--"))
            .collect()
    }
}

/// Splits a Dockerfile into instructions: `#` comment lines (also inside a continuation) and
/// blank lines are dropped, a trailing `\` continues onto the next line.
pub fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    pub fn finish(line: usize, full: String, out: &mut Vec<Instruction>) {
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
pub struct Stage {
    pub from: Instruction,
    /// The image reference, global `ARG`s substituted.
    pub image: String,
    /// `AS name`, lower case.
    pub name: Option<String>,
    pub body: Vec<Instruction>,
}

/// Global `ARG`s (before the first `FROM`) and the stages.
pub fn stages(instructions: &[Instruction]) -> (Vec<Instruction>, Vec<Stage>) {
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
pub fn assignments(ins: &Instruction) -> Vec<(String, String)> {
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
pub fn substitute_args(s: &str, global: &[Instruction]) -> String {
    let mut out = s.to_string();
    for ins in global.iter().filter(|i| i.keyword == "ARG") {
        for (k, v) in assignments(ins) {
            out = out.replace(&format!("${{{k}}}"), &v);
            out = out.replace(&format!("${k}"), &v);
        }
    }
    out
}
