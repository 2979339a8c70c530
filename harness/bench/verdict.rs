//! What a comparison's rounds say of one workload: which server did better, or that the rounds
//! cannot tell.
//!
//! A median ratio near 1.0 is not an answer: on a small machine the per-round ratios of one
//! workload spread by a tenth or more either way, and two runs of the same build put the same
//! row's median on either side of 1.0. Each round measures both servers back to back, so each
//! round is one paired trial; if the two servers were equal, which of them did better in a round
//! would be a coin toss. The verdict is a sign test over the rounds that differed, at
//! [`SIGNIFICANCE`] in each direction: a server is called better only when as many rounds as it
//! won, or more, would come up by chance at most 5% of the time (5 of 5, 6 of 6, 7 of 7, 7 of 8,
//! 8 of 9; 6 of 7 is a tie). Either direction may be called, so with equal servers a row gets
//! some verdict twice as often as one direction alone: one time in 16 at five rounds, one in 32
//! at six. A comparison of eleven rows will show a verdict somewhere by chance in many runs; one
//! that two runs repeat is the one to trust.

use serde::Serialize;

/// The largest chance of the rounds' outcome under equal servers at which one is called better.
pub const SIGNIFICANCE: f64 = 0.05;

/// Which server the rounds favour, if they favour one beyond chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    SmartHostBetter,
    SmtpSinkBetter,
    NoClearDifference,
}

/// One workload's rounds, counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowVerdict {
    pub workload: String,
    /// Rounds with a figure from both servers (a failed run's NaN counts in none).
    pub rounds: usize,
    /// Rounds in which the smart host did better (faster, or less memory where less is better).
    pub smart_host_ahead: usize,
    /// Rounds in which smtp-sink did better; a round level to the last bit counts in neither.
    pub smtp_sink_ahead: usize,
    /// The chance, were the servers equal, of the server ahead winning as many of the rounds
    /// that differed, or more (one direction's).
    pub chance: f64,
    pub verdict: Verdict,
}

impl RowVerdict {
    /// The rounds of one workload: `smart_host[i]` and `smtp_sink[i]` are round `i`'s figures.
    pub fn of(
        workload: &str,
        smart_host: &[f64],
        smtp_sink: &[f64],
        higher_is_better: bool,
    ) -> RowVerdict {
        let (mut host, mut sink, mut level) = (0, 0, 0);
        for (h, s) in smart_host.iter().zip(smtp_sink) {
            if h.is_nan() || s.is_nan() {
                continue;
            }
            if h == s {
                level += 1;
            } else if (h > s) == higher_is_better {
                host += 1;
            } else {
                sink += 1;
            }
        }
        let decided = host + sink;
        let chance = at_least(host.max(sink), decided);
        let verdict = if chance > SIGNIFICANCE || host == sink {
            Verdict::NoClearDifference
        } else if host > sink {
            Verdict::SmartHostBetter
        } else {
            Verdict::SmtpSinkBetter
        };
        RowVerdict {
            workload: workload.to_owned(),
            rounds: decided + level,
            smart_host_ahead: host,
            smtp_sink_ahead: sink,
            chance,
            verdict,
        }
    }

    /// For the table: `better 5/5`, `worse 0/5` or `tie 3/5`, the count being the rounds the
    /// smart host did better in.
    pub fn label(&self) -> String {
        let word = match self.verdict {
            Verdict::SmartHostBetter => "better",
            Verdict::SmtpSinkBetter => "worse",
            Verdict::NoClearDifference => "tie",
        };
        format!("{word} {}/{}", self.smart_host_ahead, self.rounds)
    }
}

/// The chance of `k` or more heads in `n` tosses of a fair coin (1.0 when `n` is 0).
fn at_least(k: usize, n: usize) -> f64 {
    // Exact, in floating point: n is a count of rounds, never large enough to lose precision
    // that matters at the 5% line.
    let mut total = 0.0;
    let mut choose = 1.0; // C(n, 0)
    for i in 0..=n {
        if i >= k {
            total += choose;
        }
        choose = choose * (n - i) as f64 / (i + 1) as f64;
    }
    total / 2f64.powi(n as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(host: &[f64], sink: &[f64]) -> RowVerdict {
        RowVerdict::of("(a)", host, sink, true)
    }

    #[test]
    fn the_chance_is_the_binomial_tail() {
        assert_eq!(at_least(0, 0), 1.0);
        assert_eq!(at_least(3, 3), 0.125);
        assert_eq!(at_least(5, 5), 1.0 / 32.0);
        // 6 or 7 of 7: (7 + 1) / 128.
        assert_eq!(at_least(6, 7), 8.0 / 128.0);
        // 7 or 8 of 8: (8 + 1) / 256.
        assert_eq!(at_least(7, 8), 9.0 / 256.0);
        assert_eq!(at_least(0, 8), 1.0);
    }

    #[test]
    fn three_rounds_can_never_decide() {
        let v = verdict(&[2.0, 2.0, 2.0], &[1.0, 1.0, 1.0]);
        assert_eq!(v.verdict, Verdict::NoClearDifference);
        assert_eq!(v.smart_host_ahead, 3);
        assert_eq!(v.label(), "tie 3/3");
    }

    #[test]
    fn every_round_of_five_one_way_decides_either_way() {
        let ahead = verdict(&[1.1; 5], &[1.0; 5]);
        assert_eq!(ahead.verdict, Verdict::SmartHostBetter);
        assert_eq!(ahead.label(), "better 5/5");
        let behind = verdict(&[0.9; 5], &[1.0; 5]);
        assert_eq!(behind.verdict, Verdict::SmtpSinkBetter);
        assert_eq!(behind.label(), "worse 0/5");
    }

    #[test]
    fn six_of_seven_is_a_tie_and_seven_of_eight_is_not() {
        let mut host = [1.1; 7];
        host[0] = 0.9;
        assert_eq!(
            verdict(&host, &[1.0; 7]).verdict,
            Verdict::NoClearDifference
        );
        let mut host = [1.1; 8];
        host[0] = 0.9;
        assert_eq!(verdict(&host, &[1.0; 8]).verdict, Verdict::SmartHostBetter);
    }

    #[test]
    fn a_level_round_is_left_out_of_the_test_but_not_of_the_count() {
        let v = verdict(&[1.1, 1.1, 1.1, 1.1, 1.1, 1.0], &[1.0; 6]);
        assert_eq!(v.verdict, Verdict::SmartHostBetter);
        assert_eq!(v.label(), "better 5/6");
    }

    #[test]
    fn four_of_five_is_a_tie_however_large_the_margin() {
        let v = verdict(&[9.0, 9.0, 9.0, 9.0, 0.5], &[1.0; 5]);
        assert_eq!(v.verdict, Verdict::NoClearDifference);
        assert_eq!(v.label(), "tie 4/5");
    }

    #[test]
    fn less_is_better_where_the_row_says_so() {
        let v = RowVerdict::of("(d)", &[2.0; 5], &[100.0; 5], false);
        assert_eq!(v.verdict, Verdict::SmartHostBetter);
    }

    #[test]
    fn a_failed_round_counts_for_neither_server() {
        let v = verdict(&[1.1, 1.1, 1.1, 1.1, 1.1, f64::NAN], &[1.0; 6]);
        assert_eq!((v.rounds, v.smart_host_ahead, v.smtp_sink_ahead), (5, 5, 0));
        assert_eq!(v.verdict, Verdict::SmartHostBetter);
        let level = verdict(&[1.0; 5], &[1.0; 5]);
        assert_eq!((level.rounds, level.smart_host_ahead), (5, 0));
        assert_eq!(level.verdict, Verdict::NoClearDifference);
    }
}
