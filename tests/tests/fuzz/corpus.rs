//! The seeds in `tests/fuzz-corpus/` (payloads, and requests as header lines, an empty line,
//! the body), and the target that checks each parses or is refused as its name says.

use crate::oracles::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use shared::envelope;
use shared::payload::Payload;
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus")
}

/// `(file name, contents)` of every file in `fuzz-corpus/<kind>/`, sorted.
pub fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

pub fn payload_seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| corpus("payload"))
}

/// A request as seeded: header lines, an empty line, the body.
#[derive(Debug, Clone)]
pub struct Request {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn parse(file: &[u8]) -> Request {
        let split = if file.starts_with(b"\n") {
            (0, 1)
        } else {
            file.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
                .expect("a seed request needs an empty line after the headers")
        };
        let head = String::from_utf8(file[..split.0].to_vec()).expect("headers are UTF-8");
        let headers = head
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(':').expect("a header line is `Name: value`");
                (k.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec())
            })
            .collect();
        Request {
            headers,
            body: file[split.1..].to_vec(),
        }
    }

    /// The header map, leaving out headers `http` refuses (as a server would never see them).
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                map.append(k, v);
            }
        }
        map
    }

    pub fn decode(&self) -> Result<envelope::PubSubMessage, envelope::EnvelopeError> {
        envelope::decode(&self.header_map(), &self.body)
    }
}

pub fn envelope_seeds() -> &'static [(String, Request)] {
    static SEEDS: OnceLock<Vec<(String, Request)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        corpus("envelope")
            .into_iter()
            .map(|(name, bytes)| (name, Request::parse(&bytes)))
            .collect()
    })
}

#[test]
fn corpus_seeds_parse_as_named() {
    for (name, bytes) in payload_seeds() {
        let r = Payload::parse(bytes);
        match (name.starts_with("ok-"), &r) {
            (true, Ok(_)) | (false, Err(_)) => {}
            _ => panic!("payload seed {name}: {:?}", r.map(|_| "parsed")),
        }
        if let Err(e) = check_result(&r) {
            panic!("payload seed {name}: {e}");
        }
    }
    for (name, req) in envelope_seeds() {
        let r = req.decode();
        match (name.starts_with("ok-"), &r) {
            (true, Ok(m)) => {
                if let Err(e) = Payload::parse(&m.data) {
                    panic!("envelope seed {name} carries an invalid payload: {e}");
                }
            }
            (false, Err(_)) => {}
            _ => panic!("envelope seed {name}: {r:?}"),
        }
    }
}
