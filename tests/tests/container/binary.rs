//! The binary in a container, what `serve.rs` does not cover: SIGINT stops `serve` with exit 0,
//! and it needs only the shared libraries of distroless/cc.

use crate::common::{self, World};
use keepalive_tests::binaries::{free_port, keepalive_bin};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
pub fn needed_libraries(elf: &[u8]) -> Vec<String> {
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
