//! The rolling-restart step function (reference §4.3, Marathon's `TaskReplaceActor`).
//!
//! Used by the services framework while a `RestartApplication` action runs: after every change
//! (an instance became healthy and ready, an old one terminated, …) it calls [`step`] with the
//! current counts and applies the decision. Pure and stateless: the same counts give the same
//! answer, so a master restarted mid-deployment simply continues.
//!
//! Invariants (checked by the property test below), with `n` the target count:
//! - healthy instances (old + new) never drop below `ceil(minimumHealthCapacity × n)` because of
//!   a kill decided here;
//! - instances alive (old, dying old, new) never exceed `floor((1 + maximumOverCapacity) × n)`,
//!   except for Marathon's documented quirk: when that equals the minimum healthy count (e.g.
//!   `{1, 0}`), one extra instance is allowed so the deployment can progress.

use meseta_api::marathon::UpgradeStrategy;

/// Counts describing a running restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RollingState {
    /// Target instance count `n`.
    pub target: u32,
    /// Old-version instances still wanted running and healthy (without checks: running).
    pub old_healthy: u32,
    /// Old-version instances still wanted running but not healthy.
    pub old_unhealthy: u32,
    /// Old-version instances already told to die and not yet terminal.
    pub old_dying: u32,
    /// New-version instances launched and not terminal (healthy or not).
    pub new_started: u32,
    /// New-version instances that are healthy **and** ready (`<= new_started`).
    pub new_healthy: u32,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RollingDecision {
    /// Old instances to kill now: all unhealthy ones first, then healthy ones.
    pub kill_old: u32,
    /// New instances to launch now.
    pub start_new: u32,
    /// The restart is complete: `n` new instances healthy and no old instance left.
    pub done: bool,
}

const EPS: f64 = 1e-9;

/// `ceil(n × minimumHealthCapacity)`, ignoring float noise (`10 × 0.7` is 7, not 8).
pub fn min_healthy(target: u32, s: &UpgradeStrategy) -> u32 {
    let v = (f64::from(target) * s.minimum_health_capacity.clamp(0.0, 1.0) - EPS).ceil();
    (v.max(0.0) as u32).min(target)
}

/// `floor(n × (1 + maximumOverCapacity))`, plus one when it equals [`min_healthy`] and `n > 0`
/// (Marathon's `{1, 0}` rule: otherwise nothing could ever be replaced).
pub fn max_capacity(target: u32, s: &UpgradeStrategy) -> u32 {
    let over = s.maximum_over_capacity.clamp(0.0, 1.0);
    let cap = (f64::from(target) * (1.0 + over) + EPS).floor() as u32;
    if target > 0 && cap == min_healthy(target, s) {
        cap + 1
    } else {
        cap
    }
}

/// Decides how many old instances to kill and new ones to start, given the current counts.
///
/// Kills never take the healthy count below [`min_healthy`] (old unhealthy instances are always
/// killed since they count for nothing), and launches never take the alive count — dying old
/// instances included, since a kill is not instant — above [`max_capacity`].
pub fn step(strategy: &UpgradeStrategy, s: &RollingState) -> RollingDecision {
    let n = s.target;
    let new_healthy = s.new_healthy.min(s.new_started);
    let min_h = min_healthy(n, strategy);
    let cap = max_capacity(n, strategy);
    let healthy = s.old_healthy + new_healthy;
    let kill_healthy = s.old_healthy.min(healthy.saturating_sub(min_h));
    let kill_old = s.old_unhealthy + kill_healthy;
    let alive = s.old_healthy + s.old_unhealthy + s.old_dying + s.new_started;
    let start_new = n
        .saturating_sub(s.new_started)
        .min(cap.saturating_sub(alive));
    let old_left = s.old_healthy + s.old_unhealthy + s.old_dying;
    RollingDecision {
        kill_old,
        start_new,
        done: old_left == 0 && new_healthy >= n && s.new_started == n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strat(min: f64, over: f64) -> UpgradeStrategy {
        UpgradeStrategy {
            minimum_health_capacity: min,
            maximum_over_capacity: over,
        }
    }

    fn old(n: u32) -> RollingState {
        RollingState {
            target: n,
            old_healthy: n,
            ..RollingState::default()
        }
    }

    #[test]
    fn limits() {
        assert_eq!(min_healthy(10, &strat(0.7, 0.0)), 7);
        assert_eq!(min_healthy(3, &strat(0.7, 0.0)), 3);
        assert_eq!(max_capacity(10, &strat(0.5, 1.0)), 20);
        assert_eq!(max_capacity(10, &strat(1.0, 0.0)), 11, "{{1,0}} quirk");
        assert_eq!(max_capacity(0, &strat(1.0, 0.0)), 0);
    }

    #[test]
    fn default_strategy_starts_all_side_by_side() {
        let d = step(&strat(1.0, 1.0), &old(4));
        assert_eq!((d.kill_old, d.start_new, d.done), (0, 4, false));
        let mid = RollingState {
            new_started: 4,
            new_healthy: 2,
            ..old(4)
        };
        assert_eq!(step(&strat(1.0, 1.0), &mid).kill_old, 2);
    }

    #[test]
    fn zero_zero_kills_first() {
        let d = step(&strat(0.0, 0.0), &old(3));
        assert_eq!((d.kill_old, d.start_new), (3, 0));
        let after = RollingState {
            target: 3,
            ..RollingState::default()
        };
        assert_eq!(step(&strat(0.0, 0.0), &after).start_new, 3);
    }

    #[test]
    fn one_zero_goes_one_over() {
        let d = step(&strat(1.0, 0.0), &old(3));
        assert_eq!((d.kill_old, d.start_new), (0, 1));
    }

    #[test]
    fn unhealthy_old_are_killed_and_done_detected() {
        let s = RollingState {
            target: 2,
            old_healthy: 1,
            old_unhealthy: 1,
            ..RollingState::default()
        };
        assert_eq!(step(&strat(1.0, 0.0), &s).kill_old, 1);
        let fin = RollingState {
            target: 2,
            new_started: 2,
            new_healthy: 2,
            ..RollingState::default()
        };
        assert!(step(&strat(1.0, 0.0), &fin).done);
        let down = RollingState {
            target: 0,
            old_healthy: 3,
            ..RollingState::default()
        };
        let d = step(&strat(1.0, 1.0), &down);
        assert_eq!((d.kill_old, d.start_new), (3, 0));
    }

    proptest! {
        /// Simulates a restart with events in random order and checks the invariants and that it
        /// finishes.
        #[test]
        fn never_below_min_healthy_nor_over_capacity(
            n in 0u32..25,
            min_hc in 0u32..=100,
            max_oc in 0u32..=100,
            events in proptest::collection::vec(any::<bool>(), 400),
        ) {
            let st = strat(f64::from(min_hc) / 100.0, f64::from(max_oc) / 100.0);
            let floor_h = (f64::from(n) * st.minimum_health_capacity - 1e-9).ceil().max(0.0) as u32;
            let raw_cap = (f64::from(n) * (1.0 + st.maximum_over_capacity) + 1e-9).floor() as u32;
            let cap = if n > 0 && raw_cap == floor_h { raw_cap + 1 } else { raw_cap };
            let mut s = old(n);
            let mut finished = false;
            for &ev in events.iter().chain(std::iter::repeat_n(&true, 400)) {
                let d = step(&st, &s);
                if d.done { finished = true; break; }
                let healthy_before = s.old_healthy + s.new_healthy;
                let unhealthy_kills = d.kill_old.min(s.old_unhealthy);
                s.old_unhealthy -= unhealthy_kills;
                let healthy_kills = d.kill_old - unhealthy_kills;
                prop_assert!(healthy_kills <= s.old_healthy);
                s.old_healthy -= healthy_kills;
                s.old_dying += d.kill_old;
                s.new_started += d.start_new;
                let healthy = s.old_healthy + s.new_healthy;
                prop_assert!(healthy >= floor_h.min(healthy_before),
                    "healthy {} < {} ({:?})", healthy, floor_h, s);
                let alive = s.old_healthy + s.old_unhealthy + s.old_dying + s.new_started;
                prop_assert!(alive <= cap, "alive {} > cap {} ({:?})", alive, cap, s);
                prop_assert!(s.new_started <= n);
                // One event: a dying old instance terminates, or a new one becomes healthy.
                let can_die = s.old_dying > 0;
                let can_heal = s.new_healthy < s.new_started;
                if can_die && (ev || !can_heal) {
                    s.old_dying -= 1;
                } else if can_heal {
                    s.new_healthy += 1;
                }
            }
            prop_assert!(finished, "restart did not finish: {:?}", s);
        }
    }
}
