//! The Redis keys of one queue, named as BullMQ names them: `<prefix>:<queue>:<type>`.

#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// `<prefix>:<queue>:` — a job's hash is this plus its id.
    pub base: String,
    pub wait: String,
    pub active: String,
    pub paused: String,
    pub prioritized: String,
    pub delayed: String,
    pub completed: String,
    pub failed: String,
    pub events: String,
    pub stalled: String,
    pub stalled_check: String,
    pub limiter: String,
    pub meta: String,
    pub pc: String,
    pub marker: String,
    pub repeat: String,
}

impl QueueKeys {
    pub fn new(prefix: &str, queue: &str) -> QueueKeys {
        let base = format!("{prefix}:{queue}:");
        let k = |t: &str| format!("{base}{t}");
        QueueKeys {
            wait: k("wait"),
            active: k("active"),
            paused: k("paused"),
            prioritized: k("prioritized"),
            delayed: k("delayed"),
            completed: k("completed"),
            failed: k("failed"),
            events: k("events"),
            stalled: k("stalled"),
            stalled_check: k("stalled-check"),
            limiter: k("limiter"),
            meta: k("meta"),
            pc: k("pc"),
            marker: k("marker"),
            repeat: k("repeat"),
            base,
        }
    }

    /// A job's hash.
    pub fn job(&self, id: &str) -> String {
        format!("{}{id}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bullmqs() {
        let k = QueueKeys::new("bull", "q1");
        assert_eq!(k.base, "bull:q1:");
        assert_eq!(k.wait, "bull:q1:wait");
        assert_eq!(k.stalled_check, "bull:q1:stalled-check");
        assert_eq!(k.job("7"), "bull:q1:7");
        let t = QueueKeys::new("{bull}", "q");
        assert_eq!(t.marker, "{bull}:q:marker");
    }
}
