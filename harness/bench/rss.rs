//! A server's memory, read from `/proc` (Linux).

/// Resident set size of process `pid` in KiB (`VmRSS`), or `None` where `/proc` cannot tell.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Peak resident set size of process `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

/// Starts a new peak for process `pid`: its `VmHWM` becomes its current size (writing 5 to
/// `/proc/PID/clear_refs`, Linux 4.0 and later, as its owner). False when that cannot be done; the
/// peak is then the peak since the process started.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    // About 1.5 KiB; 64 KiB is room to spare.
    let path = format!("/proc/{pid}/status");
    let status = crate::files::read_regular_file(std::path::Path::new(&path), 64 * 1024).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let rss = rss_kib(me);
        if std::path::Path::new("/proc/self/status").exists() {
            let rss = rss.expect("VmRSS is in /proc/self/status");
            assert!(rss > 0);
            assert!(peak_rss_kib(me).expect("VmHWM") >= rss);
        } else {
            assert_eq!(rss, None);
        }
    }
}
