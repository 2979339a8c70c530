//! CPU time and minor page faults from `/proc` (Linux): a server's, this process's own (the load
//! generator runs in it) and those of its children it has waited for (smtp-source). The kernel
//! counts CPU in clock ticks (`USER_HZ`, 100 a second on Linux), so a figure is good to 10 ms:
//! runs of a few hundred milliseconds of CPU read to a few percent. Minor faults (faults served
//! without disk I/O: anonymous memory touched for the first time, or again after the allocator
//! gave it back; page-cache pages such as a program's code; copy-on-write) are counted one by
//! one.

use std::path::Path;

/// Which of a process's counts.
#[derive(Debug, Clone, Copy)]
enum Whose {
    /// The process's own threads, living and ended (`minflt`, `utime` + `stime`).
    Own,
    /// Its children it has waited for (`cminflt`, `cutime` + `cstime`).
    WaitedChildren,
}

/// What a process has used of the machine, as `/proc/PID/stat` counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds, user and system, over all its threads.
    pub cpu_seconds: f64,
    /// Minor page faults: those the kernel served without disk I/O (first touch of anonymous
    /// memory, page-cache pages, copy-on-write).
    pub minor_faults: u64,
}

impl Usage {
    /// What was used between `before` and this reading. Both counts only grow for one process;
    /// the fault count, an integer, saturates rather than wraps should `before` be another
    /// process's (a pid reused), where the CPU time would read negative and show it.
    pub fn since(self, before: Usage) -> Usage {
        Usage {
            cpu_seconds: self.cpu_seconds - before.cpu_seconds,
            minor_faults: self.minor_faults.saturating_sub(before.minor_faults),
        }
    }
}

/// What process `pid` has used over all its threads; `None` where `/proc` cannot tell.
pub fn process_usage(pid: u32) -> Option<Usage> {
    stat_usage(&format!("/proc/{pid}/stat"), Whose::Own)
}

/// What this process has used itself.
pub fn own_usage() -> Option<Usage> {
    stat_usage("/proc/self/stat", Whose::Own)
}

/// What the children this process has waited for have used: read before and after running one
/// (and waiting for it), the difference is that child's.
pub fn waited_children_usage() -> Option<Usage> {
    stat_usage("/proc/self/stat", Whose::WaitedChildren)
}

fn stat_usage(path: &str, whose: Whose) -> Option<Usage> {
    // One line of a few hundred octets; 4 KiB is room to spare. Bytes: the command name in it
    // need not be UTF-8.
    let stat = crate::files::read_regular_bytes(Path::new(path), 4096).ok()?;
    let counts = counts_of(&stat, whose)?;
    Some(Usage {
        cpu_seconds: counts.ticks as f64 / rustix::param::clock_ticks_per_second() as f64,
        minor_faults: counts.minor_faults,
    })
}

/// One process's counts, as `/proc/PID/stat` gives them.
#[derive(Debug, PartialEq)]
struct Counts {
    /// User and system clock ticks, summed.
    ticks: u64,
    /// Minor page faults.
    minor_faults: u64,
}

/// The counts `whose` names, from the bytes of a `/proc/PID/stat`.
fn counts_of(stat: &[u8], whose: Whose) -> Option<Counts> {
    // Field 2 is the command name in parentheses, which may itself hold spaces, parentheses
    // and any bytes: count fields from after its last `)`, where field 3 (the state) begins.
    let name_end = stat.iter().rposition(|b| *b == b')')?;
    let after_name = std::str::from_utf8(&stat[name_end + 1..]).ok()?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    // proc(5): minflt is field 10 and cminflt 11; utime and stime 14 and 15, cutime and cstime
    // 16 and 17.
    let (faults, ticks) = match whose {
        Whose::Own => (10, 14),
        Whose::WaitedChildren => (11, 16),
    };
    Some(Counts {
        ticks: field(ticks)? + field(ticks + 1)?,
        minor_faults: field(faults)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_a_command_name_with_spaces_parentheses_and_any_bytes() {
        let stat = b"4242 (a (b) \xff) S 1 4242 4242 0 -1 4194560 100 40 0 0 7 3 5 11 20 0 1 0";
        assert_eq!(
            counts_of(stat, Whose::Own),
            Some(Counts {
                ticks: 10,
                minor_faults: 100
            })
        );
        assert_eq!(
            counts_of(stat, Whose::WaitedChildren),
            Some(Counts {
                ticks: 16,
                minor_faults: 40
            })
        );
        assert_eq!(counts_of(b"4242 (cut short) S 1", Whose::Own), None);
    }

    #[test]
    fn this_process_and_a_child_it_waited_for_have_used_cpu_and_pages() {
        if !Path::new("/proc/self/stat").exists() {
            assert_eq!(own_usage(), None);
            return;
        }
        // Burn some CPU (three ticks' worth) so the tick count moves past zero.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(own_usage().expect("utime").cpu_seconds > 0.0);
        assert!(
            process_usage(std::process::id())
                .expect("by pid")
                .cpu_seconds
                > 0.0
        );
        // 64 MiB, above the largest block glibc takes from its heap (32 MiB), is mapped fresh
        // for this allocation (a smaller one may reuse memory other tests touched), and zeroed
        // by the kernel, so the allocator does not touch it: each page is faulted in by the
        // writes here, or each 2 MiB where the kernel backs it with huge pages (32 faults).
        let before = own_usage().expect("minflt");
        let mut pages = vec![0u8; 64 << 20];
        for page in pages.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&pages);
        let touched = own_usage().expect("minflt").since(before);
        assert!(touched.minor_faults >= 32, "{touched:?}");
        // A child that counts to 500,000 in the shell (a few hundred milliseconds of CPU; at
        // most 30 s by `timeout`), waited for: its time and faults show in this process's waited
        // children's, as smtp-source's do.
        let before = waited_children_usage().expect("cutime");
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
        let used = waited_children_usage().expect("cutime").since(before);
        assert!(used.cpu_seconds > 0.0, "{used:?}");
        // Every program faults in at least its stack and the pages of its code it ran.
        assert!(used.minor_faults > 0, "{used:?}");
    }
}
