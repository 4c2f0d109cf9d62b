//! Process facts: memory from `/proc/self/status`, the open-files limit.

/// `VmRSS` and `VmHWM` of this process in KiB (`None` off Linux or when unreadable).
pub fn memory_kib() -> Option<(u64, u64)> {
    memory_kib_of("/proc/self/status")
}

/// `VmRSS` and `VmHWM` in KiB from a `/proc/<pid>/status` file.
pub fn memory_kib_of(path: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Current resident set in MiB (0 when unknown).
pub fn rss_mib() -> f64 {
    memory_kib().map_or(0.0, |(rss, _)| rss as f64 / 1024.0)
}

/// Peak resident set in MiB (0 when unknown).
pub fn peak_rss_mib() -> f64 {
    memory_kib().map_or(0.0, |(_, hwm)| hwm as f64 / 1024.0)
}

/// Makes sure `needed` file descriptors can be open: raises the soft `RLIMIT_NOFILE` up to
/// the hard limit if it is lower. Returns the soft limit in force, or an error naming both
/// limits when even the hard limit is too low.
pub fn ensure_open_files(needed: u64) -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed {
        anyhow::bail!(
            "{needed} open files needed but the hard limit (ulimit -Hn) is {hard}; \
             raise it or use fewer --clients"
        );
    }
    rlimit::Resource::NOFILE.set(needed.max(soft), hard)?;
    Ok(rlimit::Resource::NOFILE.get()?.0)
}
