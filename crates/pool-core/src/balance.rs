//! Load balancing: each strategy is a pure function of (task, candidate workers).

use crate::config::Strategy;
use std::cmp::Reverse;

#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Worker number (`worker-<num>`); round-robin follows this order.
    pub num: u64,
    pub in_flight: usize,
    /// When the worker was last given a task (a pool-wide counter; 0 = never).
    pub last_used: u64,
    pub capabilities: &'a [String],
}

pub fn can_serve(requires: &[String], caps: &[String]) -> bool {
    requires.iter().all(|r| caps.iter().any(|c| c == r))
}

/// Picks the worker (its `num`) for a task needing `requires`, in one pass over the
/// candidates (no allocation: this runs for every task). `last` is the number of the
/// worker round-robin chose last time.
pub fn choose<'a>(strategy: Strategy, requires: &[String], cands: impl Iterator<Item = Candidate<'a>>, last: u64) -> Option<u64> {
    let eligible = cands.filter(|c| can_serve(requires, c.capabilities));
    match strategy {
        Strategy::RoundRobin => {
            let mut first: Option<u64> = None;
            let mut after: Option<u64> = None;
            for c in eligible {
                if first.is_none_or(|n| c.num < n) {
                    first = Some(c.num);
                }
                if c.num > last && after.is_none_or(|n| c.num < n) {
                    after = Some(c.num);
                }
            }
            after.or(first)
        }
        // Ties go to the worker used most recently: its code and data are still in the
        // CPU's caches and the scheduler keeps it near us, so an idle pool answers a
        // lone task fastest, and the workers left cold can be retired when idle.
        Strategy::LeastLoaded => eligible.min_by_key(|c| (c.in_flight, Reverse(c.last_used), c.num)).map(|c| c.num),
        Strategy::CapabilityBased => eligible
            .min_by_key(|c| (c.capabilities.len(), c.in_flight, Reverse(c.last_used), c.num))
            .map(|c| c.num),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_robin_cycles_in_worker_order() {
        let none = caps(&[]);
        let c: Vec<Candidate> = [3u64, 1, 2]
            .iter()
            .map(|&num| Candidate {
                num,
                in_flight: 0,
                last_used: 0,
                capabilities: &none,
            })
            .collect();
        let pick = |last| choose(Strategy::RoundRobin, &[], c.iter().copied(), last).unwrap();
        assert_eq!(pick(0), 1);
        assert_eq!(pick(1), 2);
        assert_eq!(pick(2), 3);
        assert_eq!(pick(3), 1);
    }

    #[test]
    fn least_loaded_prefers_fewest_in_flight_then_the_most_recently_used() {
        let none = caps(&[]);
        let c = [
            Candidate {
                num: 0,
                in_flight: 1,
                last_used: 0,
                capabilities: &none,
            },
            Candidate {
                num: 1,
                in_flight: 0,
                last_used: 4,
                capabilities: &none,
            },
            Candidate {
                num: 2,
                in_flight: 0,
                last_used: 9,
                capabilities: &none,
            },
        ];
        assert_eq!(choose(Strategy::LeastLoaded, &[], c.iter().copied(), 0), Some(2));
    }

    #[test]
    fn capability_based_fits_tightly_and_filters() {
        let gpu_big = caps(&["gpu", "big-mem", "net"]);
        let gpu = caps(&["gpu"]);
        let plain = caps(&[]);
        let c = [
            Candidate {
                num: 0,
                in_flight: 0,
                last_used: 0,
                capabilities: &gpu_big,
            },
            Candidate {
                num: 1,
                in_flight: 0,
                last_used: 5,
                capabilities: &gpu,
            },
            Candidate {
                num: 2,
                in_flight: 0,
                last_used: 0,
                capabilities: &plain,
            },
        ];
        assert_eq!(choose(Strategy::CapabilityBased, &caps(&["gpu"]), c.iter().copied(), 0), Some(1));
        assert_eq!(choose(Strategy::CapabilityBased, &[], c.iter().copied(), 0), Some(2));
        assert_eq!(choose(Strategy::RoundRobin, &caps(&["net"]), c.iter().copied(), 0), Some(0));
        assert_eq!(choose(Strategy::LeastLoaded, &caps(&["tpu"]), c.iter().copied(), 0), None);
    }
}
