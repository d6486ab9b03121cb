//! Mutations of bytes for the corpus seeds: flips, sets, inserts, deletes, truncation,
//! duplication and JSON/URL/CloudEvent tokens.

use proptest::prelude::*;

#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize, usize),
    Token(usize, &'static str),
}

pub const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "true",
    "0",
    "-0",
    "1e999",
    "-1e-999",
    "18446744073709551616",
    "\"\"",
    "\" \"",
    "\\u0000",
    "\\ud800",
    "\\udfff\\ud800",
    "\u{0}",
    "\u{feff}",
    "\u{2028}",
    "\u{10ffff}",
    "\u{ff}",
    "=",
    "==",
    "%",
    "+/",
    "-_",
    "\"vm\":",
    "\"zone\":",
    "\"message\":",
    "\"data\":",
    "{\"data\":\"\"}",
    "\"attributes\":{\"a\":1}",
    "http://",
    "https://",
    "ftp://",
    "@",
    ":0",
    ":65536",
    ":99999",
    "[::1]",
    "//",
    "/../",
    "?x#y",
    "ce-",
    "1.0",
    "0.3",
    "application/cloudevents+json",
    "\r\n",
    "\t",
    "    ",
];

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1..16usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..32usize, any::<usize>())
            .prop_map(|(a, n, b)| Mutation::Duplicate(a, n, b)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(p, t)| Mutation::Token(p, t)),
    ]
}

pub fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = data.len();
        let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::Flip(p, bit) if len > 0 => data[p % len] ^= 1 << bit,
            Mutation::Set(p, b) if len > 0 => data[p % len] = *b,
            Mutation::Insert(p, bytes) => {
                let i = at(*p);
                data.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(p, n) if len > 0 => {
                let i = p % len;
                data.drain(i..(i + n).min(len));
            }
            Mutation::Truncate(p) => data.truncate(at(*p)),
            Mutation::Duplicate(a, n, b) if len > 0 => {
                let i = a % len;
                let chunk = data[i..(i + n).min(len)].to_vec();
                let j = at(*b);
                data.splice(j..j, chunk);
            }
            Mutation::Token(p, t) => {
                let i = at(*p);
                data.splice(i..i, t.bytes());
            }
            _ => {}
        }
    }
    data
}
