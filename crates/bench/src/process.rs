//! CPU time and memory of another process, from /proc.

/// CPU seconds (user + system) and peak RSS in bytes of `pid`.
pub fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((cpu_seconds(&stat)?, status_bytes(&status, "VmHWM:")?))
}

/// Resident memory of `pid` in bytes: `(now, peak)` (`VmRSS`, `VmHWM`).
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((
        status_bytes(&status, "VmRSS:")?,
        status_bytes(&status, "VmHWM:")?,
    ))
}

/// The resident set of a process, read from one `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// `RssAnon`, bytes: the heap, stacks and other private pages, without the pages of
    /// mapped files such as the program's own code (whose residency varies from run to run
    /// with what the kernel maps around each fault). `None` on kernels before 4.5.
    pub anonymous: Option<u64>,
}

/// The resident set of `pid` ([`Resident`]).
pub fn resident(pid: u32) -> Option<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Resident {
        rss: status_bytes(&status, "VmRSS:")?,
        anonymous: status_bytes(&status, "RssAnon:"),
    })
}

/// User + system CPU seconds from the text of `/proc/PID/stat`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name, in parentheses, may hold spaces and parentheses: fields are counted
    // from the last `)`.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3 of stat, utime 14, stime 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = 100.0; // USER_HZ on Linux
    Some((utime + stime) / ticks)
}

/// The `kB` value of line `name` (such as `VmRSS:`) of `/proc/PID/status`, in bytes.
fn status_bytes(status: &str, name: &str) -> Option<u64> {
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_is_user_plus_system_ticks_after_the_command_name() {
        // utime 250 and stime 50 ticks; the command name holds a space and a parenthesis.
        let stat = "4242 (isthmus (cp) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 200";
        assert_eq!(super::cpu_seconds(stat), Some(3.0));
        assert_eq!(super::cpu_seconds("4242 (short) S 1 2"), None);
        assert_eq!(super::cpu_seconds("no parenthesis"), None);
    }

    #[test]
    fn status_lines_are_kilobytes() {
        let status =
            "Name:\tisthmus\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nRssAnon:\t   12288 kB\n";
        assert_eq!(super::status_bytes(status, "VmRSS:"), Some(20480 * 1024));
        assert_eq!(super::status_bytes(status, "VmHWM:"), Some(40960 * 1024));
        assert_eq!(super::status_bytes(status, "RssAnon:"), Some(12288 * 1024));
        assert_eq!(super::status_bytes(status, "VmSwap:"), None);
        assert_eq!(super::status_bytes("VmRSS:\t? kB\n", "VmRSS:"), None);
    }

    #[test]
    fn reads_its_own_usage() {
        let (cpu, rss) = super::usage(std::process::id()).expect("own /proc");
        assert!(cpu >= 0.0);
        assert!(
            rss > 1024 * 1024,
            "a test process uses more than 1 MiB: {rss}"
        );
    }

    #[test]
    fn reads_its_own_memory() {
        let (now, peak) = super::memory(std::process::id()).expect("own /proc");
        assert!(
            now > 1024 * 1024,
            "a test process uses more than 1 MiB: {now}"
        );
        assert!(peak >= now, "the peak {peak} is at least the current {now}");
        let r = super::resident(std::process::id()).expect("own /proc");
        let anon = r.anonymous.expect("own RssAnon");
        assert!(
            anon > 0 && anon <= r.rss,
            "the private pages {anon} are part of the resident set {}",
            r.rss
        );
    }
}
