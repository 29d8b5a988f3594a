//! Host CPU of the processes behind a VM, read from /proc.

use std::time::{Duration, Instant};

/// One process's CPU use so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuReading {
    /// utime + stime from /proc/PID/stat, in seconds (clock-tick resolution).
    pub ticks_s: f64,
    /// The sum of every live thread's run time from /proc/PID/task/*/schedstat, in seconds
    /// (nanosecond resolution), for figures too small for clock ticks.
    pub run_s: f64,
    /// How many times any of its live threads was switched in (schedstat's third field): each
    /// wake-up, and each return after being preempted.
    pub switches: u64,
}

/// USER_HZ, the unit of /proc/PID/stat's times: part of Linux's ABI, 100 on every
/// architecture QEMU hosts run on here.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

pub fn read_cpu(pid: u32) -> Option<CpuReading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let (mut run_ns, mut switches) = (0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            // run time (ns), time waiting to run (ns), times switched in.
            let mut fields = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
            run_ns += fields.next().unwrap_or(0);
            switches += fields.nth(1).unwrap_or(0);
        }
    }
    Some(CpuReading {
        ticks_s: (utime + stime) / CLOCK_TICKS_PER_SECOND,
        run_s: run_ns as f64 / 1e9,
        switches,
    })
}

/// CPU used by a set of processes between two moments.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub ticks_s: f64,
    pub run_s: f64,
    /// Threads switched in; see [`CpuReading::switches`].
    pub switches: u64,
    pub wall: Duration,
}

impl CpuUse {
    /// utime + stime as a percentage of one core.
    pub fn percent(&self) -> f64 {
        100.0 * self.ticks_s / self.wall.as_secs_f64()
    }

    /// Scheduler run time as a percentage of one core.
    pub fn run_percent(&self) -> f64 {
        100.0 * self.run_s / self.wall.as_secs_f64()
    }
}

/// A started measurement over some processes.
#[derive(Debug)]
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Vec<CpuReading>,
    started: Instant,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            start: pids
                .iter()
                .map(|&p| read_cpu(p).unwrap_or_default())
                .collect(),
            started: Instant::now(),
        }
    }

    /// What each process used since `start`, in the order given.
    pub fn per_process(&self) -> Vec<CpuUse> {
        let wall = self.started.elapsed();
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(&pid, s)| {
                let now = read_cpu(pid).unwrap_or(*s);
                CpuUse {
                    ticks_s: now.ticks_s - s.ticks_s,
                    run_s: now.run_s - s.run_s,
                    switches: now.switches.saturating_sub(s.switches),
                    wall,
                }
            })
            .collect()
    }

    /// What all the processes used together since `start`.
    pub fn total(&self) -> CpuUse {
        self.per_process()
            .into_iter()
            .fold(CpuUse::default(), |acc, u| CpuUse {
                ticks_s: acc.ticks_s + u.ticks_s,
                run_s: acc.run_s + u.run_s,
                switches: acc.switches + u.switches,
                wall: u.wall,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu() {
        let pid = std::process::id();
        let before = read_cpu(pid).expect("own /proc/PID/stat");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = read_cpu(pid).expect("own /proc/PID/stat");
        // Run time is summed over the threads there are; other tests' threads that end
        // meanwhile take theirs with them (cargo test runs tests on threads). Clock ticks count
        // the ended threads too, but only in 10 ms steps. One of the two must show the 60 ms.
        let run = after.run_s - before.run_s;
        let ticks = after.ticks_s - before.ticks_s;
        assert!(run >= 0.03 || ticks >= 0.03, "{before:?} → {after:?}");
    }

    #[test]
    fn counts_a_threads_wake_ups() {
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Command, Stdio};
        // A one-thread child that sleeps 20 times between two lines from us. Our own process
        // would not do: libtest's other threads end while this test runs, and a thread that
        // ends takes its switches out of the sum.
        let mut child = Command::new("sh")
            .args(["-c", "read a; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 0.001; done; echo slept; read b"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let before = read_cpu(pid).expect("the child's /proc/PID/stat");
        writeln!(stdin, "go").expect("the child reads");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the child writes");
        assert_eq!(line, "slept\n");
        let after = read_cpu(pid).expect("the child's /proc/PID/stat");
        writeln!(stdin, "end").expect("the child reads");
        assert!(child.wait().expect("the child ends").success());
        assert!(
            after.switches >= before.switches + 20,
            "{before:?} → {after:?}"
        );
    }
}
