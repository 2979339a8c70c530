//! CPU time from `/proc` (Linux): a server's, this process's own (the load generator runs in it)
//! and that of its children it has waited for (smtp-source). The kernel counts in clock ticks
//! (`USER_HZ`, 100 a second on Linux), so a figure is good to 10 ms: runs of a few hundred
//! milliseconds of CPU read to a few percent.

use std::path::Path;

/// Which of a process's CPU times.
#[derive(Debug, Clone, Copy)]
enum Whose {
    /// The process's own threads, living and ended (`utime` + `stime`).
    Own,
    /// Its children it has waited for (`cutime` + `cstime`).
    WaitedChildren,
}

/// CPU seconds, user and system, that process `pid` has used over all its threads; `None` where
/// `/proc` cannot tell.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu(&format!("/proc/{pid}/stat"), Whose::Own)
}

/// This process's own CPU seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    stat_cpu("/proc/self/stat", Whose::Own)
}

/// CPU seconds of the children this process has waited for: read before and after running one
/// (and waiting for it), the difference is that child's.
pub fn waited_children_cpu_seconds() -> Option<f64> {
    stat_cpu("/proc/self/stat", Whose::WaitedChildren)
}

fn stat_cpu(path: &str, whose: Whose) -> Option<f64> {
    // One line of a few hundred octets; 4 KiB is room to spare. Bytes: the command name in it
    // need not be UTF-8.
    let stat = crate::files::read_regular_bytes(Path::new(path), 4096).ok()?;
    let ticks = ticks_of(&stat, whose)?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// The two tick counts `whose` names, summed, from the bytes of a `/proc/PID/stat`.
fn ticks_of(stat: &[u8], whose: Whose) -> Option<u64> {
    // Field 2 is the command name in parentheses, which may itself hold spaces, parentheses
    // and any bytes: count fields from after its last `)`, where field 3 (the state) begins.
    let name_end = stat.iter().rposition(|b| *b == b')')?;
    let after_name = std::str::from_utf8(&stat[name_end + 1..]).ok()?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15, cutime and cstime 16 and 17 (proc(5)).
    let first = match whose {
        Whose::Own => 14,
        Whose::WaitedChildren => 16,
    } - 3;
    let a: u64 = fields.get(first)?.parse().ok()?;
    let b: u64 = fields.get(first + 1)?.parse().ok()?;
    Some(a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_a_command_name_with_spaces_parentheses_and_any_bytes() {
        let stat = b"4242 (a (b) \xff) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 5 11 20 0 1 0";
        assert_eq!(ticks_of(stat, Whose::Own), Some(10));
        assert_eq!(ticks_of(stat, Whose::WaitedChildren), Some(16));
        assert_eq!(ticks_of(b"4242 (cut short) S 1", Whose::Own), None);
    }

    #[test]
    fn this_process_and_a_child_it_waited_for_have_used_cpu() {
        if !Path::new("/proc/self/stat").exists() {
            assert_eq!(own_cpu_seconds(), None);
            return;
        }
        // Burn some CPU (three ticks' worth) so the tick count moves past zero.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(own_cpu_seconds().expect("utime") > 0.0);
        assert!(process_cpu_seconds(std::process::id()).expect("by pid") > 0.0);
        // A child that counts to 500,000 in the shell (a few hundred milliseconds of CPU; at
        // most 30 s by `timeout`), waited for: its time shows in this process's waited
        // children's, as smtp-source's does.
        let before = waited_children_cpu_seconds().expect("cutime");
        let status = std::process::Command::new("timeout")
            .args([
                "30",
                "sh",
                "-c",
                "i=0; while [ $i -lt 500000 ]; do i=$((i + 1)); done",
            ])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let after = waited_children_cpu_seconds().expect("cutime");
        assert!(after > before, "{before} -> {after}");
    }
}
