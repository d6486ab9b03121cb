//! CPU isolation for the measuring binaries (`bench`): `keepalive` runs on one CPU of its own,
//! as a Cloud Run instance deployed with `cpu: 1` does, and the harness (the fakes of the
//! WhatsApp clients and Google, and the load client) on the other CPUs, as those live on
//! other machines in production. Without it the harness's work competes with the measured
//! process for the same cores, and a burst measures both.

use std::io;
use std::process::Command;

/// Which CPUs keepalive runs on, and which the harness runs on.
#[derive(Clone, Debug)]
pub struct CpuSplit {
    pub keepalive: Vec<usize>,
    pub harness: Vec<usize>,
}

impl CpuSplit {
    /// From the CPUs this process may run on: the first for keepalive, the others for the
    /// harness. `None` with fewer than two (nothing to split).
    pub fn detect() -> Option<CpuSplit> {
        let allowed = allowed_cpus().ok()?;
        let (first, rest) = allowed.split_first()?;
        if rest.is_empty() {
            return None;
        }
        Some(CpuSplit {
            keepalive: vec![*first],
            harness: rest.to_vec(),
        })
    }

    /// keepalive alone on the first CPU this process may run on (the harness is left where it
    /// is), for a test of `serve` on one CPU; works on a one-CPU machine too.
    pub fn keepalive_on_one_cpu() -> io::Result<CpuSplit> {
        let allowed = allowed_cpus()?;
        Ok(CpuSplit {
            keepalive: allowed.first().copied().into_iter().collect(),
            harness: allowed.get(1..).unwrap_or_default().to_vec(),
        })
    }

    /// Confines the calling thread, and every thread it starts afterwards, to the harness's
    /// CPUs. Call it before any runtime starts its threads.
    pub fn pin_harness(&self) -> io::Result<()> {
        set_affinity(&self.harness)
    }

    /// Makes the process `cmd` starts run on keepalive's CPUs.
    pub fn pin_child(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let set = cpu_set(&self.keepalive);
        // SAFETY: the closure runs between fork and exec and only makes the
        // sched_setaffinity system call (async-signal-safe); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
    }

    /// `CPU 0` / `CPUs 1, 2`, for the report.
    pub fn describe(cpus: &[usize]) -> String {
        let list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
        match cpus.len() {
            1 => format!("CPU {}", list[0]),
            _ => format!("CPUs {}", list.join(", ")),
        }
    }
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: as above; CPU_SET only writes within the set for indices below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_started_with_pin_child_runs_only_on_keepalives_cpus() {
        let allowed = allowed_cpus().unwrap();
        let split = CpuSplit::keepalive_on_one_cpu().unwrap();
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/status");
        split.pin_child(&mut cmd);
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(&*allowed[0].to_string())
        );
    }
}
