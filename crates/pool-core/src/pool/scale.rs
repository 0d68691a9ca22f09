//! The pool's size: the pending initialize / scaleUp / scaleDown operations and how
//! they finish, adding and removing slots, and the autoscaler's periodic decision.

use super::state::{InitFailure, PendingOp, Phase, Retire, SlotNo, State};
use crate::config::AutoScale;
use crate::error::CoreError;
use crate::process;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

impl State {
    /// Adds up to `count` workers (never above maxWorkers); `op` resolves when ready.
    pub(super) fn scale_up(&mut self, count: usize, op: u64) -> usize {
        let size = self.active_size();
        let target = (size + count).min(self.cfg.max_workers as usize);
        let add = target.saturating_sub(size);
        let group = 0;
        for _ in 0..add {
            let slot = self.new_slot(group);
            self.roster.slots.get_mut(&slot).expect("new slot").op = Some(op);
            self.effects.spawn_requests.push(slot);
        }
        self.ops.pending.push(PendingOp::ScaleUp {
            op,
            waiting: add,
            added: add,
        });
        if add == 0 {
            self.finish_ops();
        }
        add
    }

    /// Removes up to `count` workers (never below minWorkers): idle ones first, busy
    /// ones drain. `op` resolves when they have exited.
    pub(super) fn scale_down(&mut self, count: usize, op: u64) -> usize {
        let size = self.active_size();
        let target = size.saturating_sub(count).max(self.cfg.min_workers as usize);
        let mut remove = size.saturating_sub(target);
        // Idle workers first, newest first; then busy ones, which drain.
        let mut order: Vec<(bool, SlotNo)> = self
            .roster
            .slots
            .iter()
            .filter(|(_, s)| !s.failed)
            .map(|(&sn, s)| {
                let busy = s
                    .worker
                    .and_then(|w| self.roster.workers.get(&w))
                    .is_some_and(|w| !w.in_flight.is_empty() || !w.ready);
                (busy, sn)
            })
            .collect();
        order.sort_by_key(|&(busy, sn)| (busy, std::cmp::Reverse(sn)));
        let mut waiting = Vec::new();
        let mut removed = 0;
        for (_, sn) in order {
            if remove == 0 {
                break;
            }
            if !self.slot_removable(sn) {
                continue;
            }
            remove -= 1;
            removed += 1;
            let slot = self.roster.slots.remove(&sn).expect("slot exists");
            if let Some(wn) = slot.worker {
                waiting.push(wn);
                self.retire(wn, Retire::ScaleDown);
            }
        }
        self.ops.pending.push(PendingOp::ScaleDown { op, waiting, removed });
        self.finish_ops();
        removed
    }

    /// The first worker of a slot an operation waits for became ready (or failed).
    pub(super) fn op_worker_done(&mut self, op_id: u64, ready: bool) {
        for op in self.ops.pending.iter_mut() {
            match op {
                PendingOp::Init { op, waiting, .. } if *op == op_id => *waiting = waiting.saturating_sub(1),
                PendingOp::ScaleUp { op, waiting, added } if *op == op_id => {
                    *waiting = waiting.saturating_sub(1);
                    if !ready {
                        *added = added.saturating_sub(1);
                    }
                }
                _ => {}
            }
        }
    }

    /// Answers every pending operation that is complete (ready workers counted, or
    /// retired ones gone), in order.
    pub(super) fn finish_ops(&mut self) {
        let mut i = 0;
        while i < self.ops.pending.len() {
            if self.op_complete(&self.ops.pending[i]) {
                let op = self.ops.pending.remove(i);
                self.answer_op(op);
            } else {
                i += 1;
            }
        }
    }

    fn op_complete(&self, op: &PendingOp) -> bool {
        match op {
            PendingOp::Init { waiting, failed, .. } => *waiting == 0 || failed.is_some(),
            PendingOp::ScaleUp { waiting, .. } => *waiting == 0,
            PendingOp::ScaleDown { waiting, .. } => waiting.iter().all(|w| !self.roster.workers.contains_key(w)),
        }
    }

    fn answer_op(&mut self, op: PendingOp) {
        let size = self.active_size();
        match op {
            PendingOp::Init { op, failed: Some(err), .. } => self.init_failed(op, err),
            PendingOp::Init { op, .. } => self.init_done(op, size),
            PendingOp::ScaleUp { op, added, .. } => {
                // The pool was just grown: every idle clock restarts now, so none
                // of the workers counts as idle since before the scaleUp.
                let now = Instant::now();
                for w in self.roster.workers.values_mut() {
                    w.idle_since = w.idle_since.max(now);
                }
                if added > 0 {
                    self.emit("pool-scaled-up", json!({ "count": added, "newSize": size }));
                    self.log("info", &format!("Scaled up by {added} to {size} workers"));
                }
                self.op_done(op, Ok(json!({ "count": added, "newSize": size })));
                self.dispatch();
            }
            PendingOp::ScaleDown { op, removed, .. } => {
                if removed > 0 {
                    self.emit("pool-scaled-down", json!({ "count": removed, "newSize": size }));
                    self.log("info", &format!("Scaled down by {removed} to {size} workers"));
                }
                self.op_done(op, Ok(json!({ "count": removed, "newSize": size })));
            }
        }
    }

    /// A worker of the initialize failed to start: every worker goes, and the
    /// initialize is rejected once they are gone (`check_closed`).
    fn init_failed(&mut self, op: u64, err: CoreError) {
        self.phase = Phase::Closing;
        self.log("error", &err.message);
        for w in self.roster.workers.values() {
            process::kill_group(w.pid, libc::SIGKILL);
        }
        self.roster.slots.clear();
        self.ops.init_failure = Some(InitFailure { op, err });
        self.check_closed();
    }

    /// Every worker of the initialize is ready: the pool runs.
    fn init_done(&mut self, op: u64, size: usize) {
        self.phase = Phase::Running;
        if let Some(a) = &self.cfg.auto_scale {
            self.clock.next_autoscale = Some(Instant::now() + Duration::from_millis(a.interval_ms));
        }
        let cfg: Value = serde_json::from_str(&self.cfg.to_json()).unwrap_or(Value::Null);
        self.emit("pool-initialized", json!({ "poolSize": size, "config": cfg }));
        self.log("info", &format!("Pool initialized with {size} workers"));
        self.op_done(op, Ok(json!({ "poolSize": size })));
        self.dispatch();
    }

    /// One autoscaling decision: up by `stepUp` when more than `queueDepthHigh` tasks
    /// wait, down by `stepDown` when nothing waits and fewer than `busyLow` workers are
    /// busy; within [minWorkers, maxWorkers] and not again within the cooldown.
    pub(super) fn autoscale_tick(&mut self, now: Instant) {
        let Some(a) = self.cfg.auto_scale.clone() else { return };
        self.clock.next_autoscale = Some(now + Duration::from_millis(a.interval_ms));
        let depth = self.queue.depth();
        let busy = self.roster.workers.values().filter(|w| w.ready && !w.in_flight.is_empty()).count() as u64;
        let size = self.active_size();
        let load = Load { depth, busy, size };
        let bounds = (self.cfg.min_workers as usize, self.cfg.max_workers as usize);
        let Some(dir) = autoscale_decision(load, bounds, &a) else { return };
        let want_up = dir == ScaleMove::Up;
        let direction = dir.word();
        if self.clock.scale_cooldown_until.is_some_and(|t| now < t) {
            self.emit(
                "autoscale",
                json!({ "action": "cooldown", "direction": direction, "size": size, "queueDepth": depth, "busyWorkers": busy }),
            );
            return;
        }
        self.clock.scale_cooldown_until = Some(now + Duration::from_millis(a.cooldown_ms));
        let changed = if want_up {
            self.scale_up(a.step_up as usize, 0)
        } else {
            self.scale_down(a.step_down as usize, 0)
        };
        let to = if want_up { size + changed } else { size - changed };
        self.log(
            "info",
            &format!("Autoscale {direction}: {size} -> {to} workers (queue depth {depth}, {busy} busy)"),
        );
        self.emit(
            "autoscale",
            json!({ "action": format!("scale-{direction}"), "from": size, "to": to, "queueDepth": depth, "busyWorkers": busy }),
        );
    }
}

/// What the autoscaler looks at.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Tasks waiting in the queue.
    depth: u64,
    /// Ready workers running a task.
    busy: u64,
    /// Slots that count toward the pool's size.
    size: usize,
}

/// A direction the autoscaler moves the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScaleMove {
    Up,
    Down,
}

impl ScaleMove {
    fn word(self) -> &'static str {
        match self {
            ScaleMove::Up => "up",
            ScaleMove::Down => "down",
        }
    }
}

/// The autoscaler's decision (before its cooldown): up when more than `queueDepthHigh`
/// tasks wait and the pool is below `max`; down when nothing waits, fewer than
/// `busyLow` workers are busy, and the pool is above `min`; else nothing.
fn autoscale_decision(load: Load, (min, max): (usize, usize), a: &AutoScale) -> Option<ScaleMove> {
    if load.depth > a.queue_depth_high && load.size < max {
        Some(ScaleMove::Up)
    } else if load.depth == 0 && load.busy < a.busy_low && load.size > min {
        Some(ScaleMove::Down)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AutoScale = AutoScale {
        queue_depth_high: 10,
        busy_low: 2,
        step_up: 1,
        step_down: 1,
        interval_ms: 1000,
        cooldown_ms: 5000,
    };

    fn load(depth: u64, busy: u64, size: usize) -> Load {
        Load { depth, busy, size }
    }

    #[test]
    fn a_deep_queue_scales_up_until_max() {
        assert_eq!(autoscale_decision(load(11, 4, 4), (2, 8), &A), Some(ScaleMove::Up));
        assert_eq!(autoscale_decision(load(10, 4, 4), (2, 8), &A), None);
        assert_eq!(autoscale_decision(load(500, 8, 8), (2, 8), &A), None);
    }

    #[test]
    fn an_idle_pool_scales_down_until_min() {
        assert_eq!(autoscale_decision(load(0, 1, 4), (2, 8), &A), Some(ScaleMove::Down));
        assert_eq!(autoscale_decision(load(0, 2, 4), (2, 8), &A), None);
        assert_eq!(autoscale_decision(load(1, 0, 4), (2, 8), &A), None);
        assert_eq!(autoscale_decision(load(0, 0, 2), (2, 8), &A), None);
    }
}
