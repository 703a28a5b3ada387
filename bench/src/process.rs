//! CPU time and memory of the server under test, read from `/proc/PID` (Linux).

use std::fs;

/// Clock ticks per second of `/proc/PID/stat` times. 100 on every Linux this tool targets;
/// reading it would need libc for one constant.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// User + system CPU time, in seconds.
    pub cpu_s: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
}

/// The sum over several processes (several relays, or a relay and its Redis); `None` for none.
pub fn sample_all(pids: &[u32]) -> anyhow::Result<Option<Sample>> {
    let mut total: Option<Sample> = None;
    for &pid in pids {
        let one = sample(pid)?;
        let sum = total.get_or_insert(Sample {
            cpu_s: 0.0,
            rss_kib: 0,
        });
        sum.cpu_s += one.cpu_s;
        sum.rss_kib += one.rss_kib;
    }
    Ok(total)
}

pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    sample_at(&format!("/proc/{pid}"))
}

/// The calling thread's own CPU time (its RSS is the process's): how busy one thread of the
/// load tool was.
pub fn sample_this_thread() -> anyhow::Result<Sample> {
    sample_at("/proc/thread-self")
}

/// Reads `stat` and `status` under a `/proc` directory (a process's or a thread's).
fn sample_at(dir: &str) -> anyhow::Result<Sample> {
    let stat = fs::read_to_string(format!("{dir}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unexpected {dir}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; here, counted from field 3, at 11 and 12.
    let ticks: f64 = fields
        .get(11..13)
        .ok_or_else(|| anyhow::anyhow!("short {dir}/stat"))?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    let status = fs::read_to_string(format!("{dir}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Sample {
        cpu_s: ticks / TICKS_PER_SECOND,
        rss_kib,
    })
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> anyhow::Result<u64> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// A server the tool started: killed when dropped, so that a run that fails half-way does not
/// leave it running.
pub struct Spawned(pub std::process::Child);

impl Spawned {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Asks it to stop (SIGTERM, so that it drains as in production).
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn cpu_time_grows_with_work_done() {
        let pid = std::process::id();
        let before = sample(pid).expect("own /proc entry").cpu_s;
        // Burn CPU until the counter moves by two ticks' worth; a reader that returned a
        // constant (or parsed the wrong fields) never gets there.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut spin: u64 = 0;
        while sample(pid).expect("own /proc entry").cpu_s < before + 0.02 {
            for i in 0..1_000_000u64 {
                spin = spin.wrapping_mul(31).wrapping_add(i);
            }
            assert!(Instant::now() < deadline, "CPU time did not grow ({spin})");
        }
    }

    #[test]
    fn a_thread_is_charged_only_its_own_cpu_time() {
        // A spinning thread moves the process's counter; the calling thread's stays put.
        let mine = sample_this_thread().expect("own thread entry").cpu_s;
        let before = sample(std::process::id()).expect("own entry").cpu_s;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut spin: u64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    spin = spin.wrapping_mul(31).wrapping_add(1);
                }
                spin
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while sample(std::process::id()).expect("own entry").cpu_s < before + 0.05 {
            assert!(Instant::now() < deadline, "process CPU time did not grow");
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = spinner.join();
        let after = sample_this_thread().expect("own thread entry").cpu_s;
        assert!(after < mine + 0.04, "this thread {mine} -> {after} s");
    }

    #[test]
    fn resident_memory_grows_with_memory_touched() {
        let pid = std::process::id();
        let before = sample(pid).expect("own /proc entry").rss_kib;
        // 64 MiB, every page written so that it is resident.
        let block = vec![1u8; 64 << 20];
        let after = sample(pid).expect("own /proc entry").rss_kib;
        assert!(
            after >= before + (60 << 10),
            "RSS {before} KiB -> {after} KiB after touching 64 MiB ({})",
            block
                .iter()
                .step_by(4096)
                .map(|&b| b as usize)
                .sum::<usize>()
        );
    }

    #[test]
    fn several_processes_add_up() {
        // The parent (cargo, or the shell) waits idle while the tests run, so its readings
        // do not move between calls, unlike this process's (other tests allocate here).
        let parent = std::os::unix::process::parent_id();
        let one = sample(parent).expect("the parent's /proc entry");
        let total = sample_all(&[parent, parent])
            .expect("the parent's /proc entry")
            .expect("one sample per pid");
        let ratio = total.rss_kib as f64 / one.rss_kib as f64;
        assert!((1.9..=2.1).contains(&ratio), "ratio {ratio}");
        assert!(sample_all(&[]).expect("nothing to read").is_none());
    }
}
