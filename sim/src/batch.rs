//! The continuous-batching model: one engine task per replica steps in simulated GPU time,
//! kept in real time (each step ends at an absolute instant, so clients see the delays).
//! A step admits waiting requests while the batch and the KV cache have room, spends its
//! token budget on one decode token per running sequence and on prefill chunks, lasts what
//! the profile says that work costs, and then emits a token to every decoding sequence at
//! once. A sequence whose prefill completes in a step emits its first token then. When
//! decoding overflows the KV cache, the newest running sequence is preempted: its cache is
//! freed and it waits again, to recompute prompt and output so far (vLLM's recompute).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::profile::Profile;

/// What a request and the HTTP stream serving it share with the engine.
#[derive(Debug, Default)]
pub struct SeqShared {
    /// Tokens generated so far.
    pub produced: AtomicU32,
    /// The engine is done with it (all tokens generated).
    pub finished: AtomicBool,
    pub notify: Notify,
}

/// A request handed to a replica.
#[derive(Debug)]
pub struct Admit {
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    pub shared: Arc<SeqShared>,
}

struct Seq {
    prompt: u32,
    max_out: u32,
    generated: u32,
    /// Tokens still to (re)compute before decoding: the prompt, or after a preemption the
    /// prompt and everything generated.
    prefill_left: u32,
    /// KV tokens this sequence holds.
    kv: u64,
    shared: Arc<SeqShared>,
}

/// Live state of a replica, read by `/metrics` and `/stats`.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub kv_used: AtomicU64,
    pub preemptions: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    pub steps: AtomicU64,
}

/// A handle on one replica's engine.
#[derive(Debug, Clone)]
pub struct Replica {
    tx: mpsc::UnboundedSender<Admit>,
    pub stats: Arc<ReplicaStats>,
    /// Requests handed over and not finished (for least-loaded routing).
    pub load: Arc<AtomicU64>,
    pub kv_capacity: u64,
}

impl Replica {
    /// Starts a replica's engine on the current runtime.
    pub fn start(profile: Arc<Profile>) -> Replica {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ReplicaStats::default());
        let load = Arc::new(AtomicU64::new(0));
        let kv_capacity = profile.kv_cache_tokens;
        tokio::spawn(engine(profile, rx, stats.clone(), load.clone()));
        Replica {
            tx,
            stats,
            load,
            kv_capacity,
        }
    }

    /// Hands a request over; false when the engine is gone.
    pub fn submit(&self, admit: Admit) -> bool {
        self.load.fetch_add(1, Ordering::Relaxed);
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(admit).is_err() {
            self.load.fetch_sub(1, Ordering::Relaxed);
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn waiting(&self) -> u64 {
        self.stats.waiting.load(Ordering::Relaxed)
    }
}

/// The client went away (only the engine holds the shared state).
fn abandoned(s: &Seq) -> bool {
    Arc::strong_count(&s.shared) == 1
}

/// A replica's scheduler state: vLLM-style continuous batching over a KV cache.
struct Engine {
    profile: Arc<Profile>,
    stats: Arc<ReplicaStats>,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    kv_used: u64,
}

/// What one step computes: decoding sequences get a token each, prefill chunks land.
struct Step {
    decoding: usize,
    /// (index into running, prompt tokens prefilled this step).
    prefill: Vec<(usize, u32)>,
    prefill_tokens: u64,
    kv_read: u64,
}

fn seq_of(a: Admit) -> Seq {
    Seq {
        prompt: a.prompt_tokens,
        max_out: a.output_tokens.max(1),
        generated: 0,
        prefill_left: a.prompt_tokens.max(1),
        kv: 0,
        shared: a.shared,
    }
}

impl Engine {
    /// Requests whose client left free their place; returns how many.
    fn drop_abandoned(&mut self) -> u64 {
        let before = self.waiting.len() + self.running.len();
        self.waiting.retain(|s| !abandoned(s));
        let kv_used = &mut self.kv_used;
        self.running.retain(|s| {
            let keep = !abandoned(s);
            if !keep {
                *kv_used -= s.kv;
            }
            keep
        });
        (before - self.waiting.len() - self.running.len()) as u64
    }

    /// Admission: while the batch and the cache have room for the whole prefill (of this
    /// one and of those admitted but not yet prefilled).
    fn admit(&mut self) {
        let cap = self.profile.kv_cache_tokens;
        let max_seqs = self.profile.max_num_seqs as usize;
        let mut reserved = self.kv_used
            + self
                .running
                .iter()
                .map(|s| u64::from(s.prefill_left))
                .sum::<u64>();
        while self.running.len() < max_seqs {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let need = u64::from(front.prefill_left) + 1;
            if reserved + need > cap && !self.running.is_empty() {
                break;
            }
            reserved += need;
            if let Some(s) = self.waiting.pop_front() {
                self.running.push(s);
            }
        }
    }

    /// The step's token budget: one token per decoding sequence, the rest to prefill.
    fn plan(&self) -> Step {
        let mut budget = u64::from(self.profile.max_num_batched_tokens);
        let mut step = Step {
            decoding: 0,
            prefill: Vec::new(),
            prefill_tokens: 0,
            kv_read: 0,
        };
        for s in self.running.iter().filter(|s| s.prefill_left == 0) {
            if budget == 0 {
                break;
            }
            budget -= 1;
            step.decoding += 1;
            step.kv_read += s.kv;
        }
        for (k, s) in self.running.iter().enumerate() {
            if budget == 0 {
                break;
            }
            if s.prefill_left > 0 {
                let n = u64::from(s.prefill_left).min(budget) as u32;
                budget -= u64::from(n);
                step.prefill_tokens += u64::from(n);
                step.kv_read += s.kv;
                step.prefill.push((k, n));
            }
        }
        step
    }

    /// The step's results: prefill chunks land (a completed prefill yields the first
    /// token), every decoding sequence gets its next token. Returns the tokens emitted.
    fn apply(&mut self, step: &Step) -> u64 {
        let mut emitted = 0u64;
        let mut decoded = 0usize;
        for s in self.running.iter_mut() {
            if s.prefill_left == 0 && decoded < step.decoding {
                decoded += 1;
                s.generated += 1;
                s.kv += 1;
                self.kv_used += 1;
                emitted += 1;
                s.shared.produced.store(s.generated, Ordering::Release);
                s.shared.notify.notify_one();
            }
        }
        for &(k, n) in &step.prefill {
            let s = &mut self.running[k];
            s.prefill_left -= n;
            s.kv += u64::from(n);
            self.kv_used += u64::from(n);
            self.stats
                .prompt_tokens
                .fetch_add(u64::from(n), Ordering::Relaxed);
            if s.prefill_left == 0 && s.generated == 0 {
                s.generated = 1;
                s.kv += 1;
                self.kv_used += 1;
                emitted += 1;
                s.shared.produced.store(1, Ordering::Release);
                s.shared.notify.notify_one();
            }
        }
        emitted
    }

    /// Finished sequences leave and free their cache; returns how many.
    fn retire(&mut self) -> u64 {
        let mut finished = 0u64;
        let kv_used = &mut self.kv_used;
        self.running.retain(|s| {
            let done = s.generated >= s.max_out && s.prefill_left == 0;
            if done {
                *kv_used -= s.kv;
                s.shared.finished.store(true, Ordering::Release);
                s.shared.notify.notify_one();
                finished += 1;
            }
            !done
        });
        finished
    }

    /// Decoding overflowed the cache: preempt the newest until it fits.
    fn preempt(&mut self) {
        while self.kv_used > self.profile.kv_cache_tokens && self.running.len() > 1 {
            if let Some(mut s) = self.running.pop() {
                self.kv_used -= s.kv;
                s.kv = 0;
                s.prefill_left = s.prompt.max(1) + s.generated;
                self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
                self.waiting.push_front(s);
            }
        }
    }

    /// The gauges `/metrics` shows.
    fn publish(&self, queued: usize) {
        let stats = &self.stats;
        stats
            .running
            .store(self.running.len() as u64, Ordering::Relaxed);
        stats
            .waiting
            .store((self.waiting.len() + queued) as u64, Ordering::Relaxed);
        stats.kv_used.store(self.kv_used, Ordering::Relaxed);
    }
}

async fn engine(
    profile: Arc<Profile>,
    mut rx: mpsc::UnboundedReceiver<Admit>,
    stats: Arc<ReplicaStats>,
    load: Arc<AtomicU64>,
) {
    let mut e = Engine {
        profile,
        stats,
        waiting: VecDeque::new(),
        running: Vec::new(),
        kv_used: 0,
    };
    let mut clock = Instant::now();
    loop {
        // Idle: wait for work (and restart the clock from now).
        if e.waiting.is_empty() && e.running.is_empty() {
            match rx.recv().await {
                Some(a) => e.waiting.push_back(seq_of(a)),
                None => return,
            }
            clock = Instant::now();
        }
        while let Ok(a) = rx.try_recv() {
            e.waiting.push_back(seq_of(a));
        }
        let gone = e.drop_abandoned();
        e.admit();
        let step = e.plan();
        let seconds = e.profile.step_seconds(
            step.decoding + step.prefill.len(),
            step.kv_read,
            step.prefill_tokens,
        );
        // Steps follow each other on the simulated clock; the timer's ~1 ms granularity
        // makes single steps late, never the clock (unless the host fell far behind).
        let now = Instant::now();
        if now > clock + Duration::from_millis(20) {
            clock = now;
        }
        clock += Duration::from_secs_f64(seconds);
        e.publish(rx.len());
        tokio::time::sleep_until(clock).await;
        let emitted = e.apply(&step);
        e.stats
            .generation_tokens
            .fetch_add(emitted, Ordering::Relaxed);
        e.stats.steps.fetch_add(1, Ordering::Relaxed);
        let finished = e.retire();
        e.preempt();
        load.fetch_sub(finished + gone, Ordering::Relaxed);
        e.publish(rx.len());
    }
}
