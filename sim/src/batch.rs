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

async fn engine(
    profile: Arc<Profile>,
    mut rx: mpsc::UnboundedReceiver<Admit>,
    stats: Arc<ReplicaStats>,
    load: Arc<AtomicU64>,
) {
    let mut waiting: VecDeque<Seq> = VecDeque::new();
    let mut running: Vec<Seq> = Vec::new();
    let mut kv_used: u64 = 0;
    let mut clock = Instant::now();
    let cap = profile.kv_cache_tokens;
    let max_seqs = profile.max_num_seqs as usize;
    let budget_per_step = u64::from(profile.max_num_batched_tokens);
    let to_seq = |a: Admit| Seq {
        prompt: a.prompt_tokens,
        max_out: a.output_tokens.max(1),
        generated: 0,
        prefill_left: a.prompt_tokens.max(1),
        kv: 0,
        shared: a.shared,
    };
    loop {
        // Idle: wait for work (and restart the clock from now).
        if waiting.is_empty() && running.is_empty() {
            match rx.recv().await {
                Some(a) => waiting.push_back(to_seq(a)),
                None => return,
            }
            clock = Instant::now();
        }
        while let Ok(a) = rx.try_recv() {
            waiting.push_back(to_seq(a));
        }
        // Requests whose client left free their place.
        let before = waiting.len() + running.len();
        waiting.retain(|s| !abandoned(s));
        running.retain(|s| {
            let keep = !abandoned(s);
            if !keep {
                kv_used -= s.kv;
            }
            keep
        });
        let gone = (before - waiting.len() - running.len()) as u64;
        // Admission: while the batch and the cache have room for the whole prefill (of
        // this one and of those admitted but not yet prefilled).
        let mut reserved = kv_used
            + running
                .iter()
                .map(|s| u64::from(s.prefill_left))
                .sum::<u64>();
        while running.len() < max_seqs {
            let Some(front) = waiting.front() else { break };
            let need = u64::from(front.prefill_left) + 1;
            if reserved + need > cap && !running.is_empty() {
                break;
            }
            reserved += need;
            if let Some(s) = waiting.pop_front() {
                running.push(s);
            }
        }
        // The step's token budget: one token per decoding sequence, the rest to prefill.
        let mut budget = budget_per_step;
        let mut kv_read = 0u64;
        let mut decoding = 0usize;
        for s in running.iter().filter(|s| s.prefill_left == 0) {
            if budget == 0 {
                break;
            }
            budget -= 1;
            decoding += 1;
            kv_read += s.kv;
        }
        let mut prefill_tokens = 0u64;
        let mut prefill_plan: Vec<(usize, u32)> = Vec::new();
        for (k, s) in running.iter().enumerate() {
            if budget == 0 {
                break;
            }
            if s.prefill_left > 0 {
                let n = u64::from(s.prefill_left).min(budget) as u32;
                budget -= u64::from(n);
                prefill_tokens += u64::from(n);
                kv_read += s.kv;
                prefill_plan.push((k, n));
            }
        }
        let seqs = decoding + prefill_plan.len();
        let step = profile.step_seconds(seqs, kv_read, prefill_tokens);
        // Steps follow each other on the simulated clock; the timer's ~1 ms granularity
        // makes single steps late, never the clock (unless the host fell far behind).
        let now = Instant::now();
        if now > clock + Duration::from_millis(20) {
            clock = now;
        }
        clock += Duration::from_secs_f64(step);
        stats.running.store(running.len() as u64, Ordering::Relaxed);
        stats
            .waiting
            .store((waiting.len() + rx.len()) as u64, Ordering::Relaxed);
        stats.kv_used.store(kv_used, Ordering::Relaxed);
        tokio::time::sleep_until(clock).await;

        // The step's results: prefill chunks land (a completed prefill yields the first
        // token), every decoding sequence gets its next token.
        let mut emitted = 0u64;
        let mut decoded = 0usize;
        for s in running.iter_mut() {
            if s.prefill_left == 0 && decoded < decoding {
                decoded += 1;
                s.generated += 1;
                s.kv += 1;
                kv_used += 1;
                emitted += 1;
                s.shared.produced.store(s.generated, Ordering::Release);
                s.shared.notify.notify_one();
            }
        }
        for &(k, n) in &prefill_plan {
            let s = &mut running[k];
            s.prefill_left -= n;
            s.kv += u64::from(n);
            kv_used += u64::from(n);
            stats
                .prompt_tokens
                .fetch_add(u64::from(n), Ordering::Relaxed);
            if s.prefill_left == 0 && s.generated == 0 {
                s.generated = 1;
                s.kv += 1;
                kv_used += 1;
                emitted += 1;
                s.shared.produced.store(1, Ordering::Release);
                s.shared.notify.notify_one();
            }
        }
        stats
            .generation_tokens
            .fetch_add(emitted, Ordering::Relaxed);
        stats.steps.fetch_add(1, Ordering::Relaxed);
        // Finished sequences leave and free their cache.
        let mut finished = 0u64;
        running.retain(|s| {
            let done = s.generated >= s.max_out && s.prefill_left == 0;
            if done {
                kv_used -= s.kv;
                s.shared.finished.store(true, Ordering::Release);
                s.shared.notify.notify_one();
                finished += 1;
            }
            !done
        });
        // Decoding overflowed the cache: preempt the newest until it fits.
        while kv_used > cap && running.len() > 1 {
            if let Some(mut s) = running.pop() {
                kv_used -= s.kv;
                s.kv = 0;
                s.prefill_left = s.prompt.max(1) + s.generated;
                stats.preemptions.fetch_add(1, Ordering::Relaxed);
                waiting.push_front(s);
            }
        }
        load.fetch_sub(finished + gone, Ordering::Relaxed);
        stats.running.store(running.len() as u64, Ordering::Relaxed);
        stats
            .waiting
            .store((waiting.len() + rx.len()) as u64, Ordering::Relaxed);
        stats.kv_used.store(kv_used, Ordering::Relaxed);
    }
}
