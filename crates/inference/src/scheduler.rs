//! The continuous-batching scheduler: which sequence sits in which slot, which tokens go
//! into the next decode step, and when a slot frees. A pure state machine over token ids,
//! so it is unit-tested without a model; the engine thread drives it.
//!
//! **Prefix reuse.** A slot keeps the tokens whose KV cells it holds after its sequence
//! ends. A new sequence takes the free slot whose tokens share the longest prefix with its
//! prompt (ties: the least recently used) and decodes only the rest. When a busy slot holds
//! (or is about to hold) a much longer shared prefix, such as a system prompt several
//! concurrent requests share, the new sequence waits for it and then copies that slot's
//! cells ([`Copy`]) instead of decoding the prefix again. Reuse is keyed: a sequence reuses
//! only cells decoded under the same [`ReuseKey`] (the adapter set and its scales change
//! the KV state), and a sequence without a key neither reuses nor leaves anything behind.

use std::collections::VecDeque;

/// A token id as llama.cpp numbers it.
pub type TokenId = i32;

/// What the KV cells of a sequence depend on besides the model and the tokens (the
/// adapter set and scales). Cells are reused only under an equal key.
pub type ReuseKey = u64;

/// The shortest shared prefix worth a copy from another slot: a copy moves the slot's whole
/// KV buffer (llama.cpp copies whole streams between sequences), which costs about as much
/// as decoding a few dozen tokens on a CPU.
pub const MIN_SHARE: usize = 64;

/// Decode steps one adapter set is served in a row while another waits: changing the
/// context's adapters makes llama.cpp reserve its compute graph again (about a step's
/// time), so sets take turns in runs of steps, and a set waits at most this many steps per
/// other busy set.
pub const SET_QUANTUM: usize = 8;

/// Why the scheduler refused a sequence.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is busy and the waiting queue is at its bound.
    QueueFull,
    /// Prompt plus the generation budget do not fit in one slot's context.
    TooLong {
        prompt: usize,
        max_tokens: usize,
        ctx: usize,
    },
    /// An empty prompt has nothing to condition on.
    EmptyPrompt,
}

/// A sequence's progress through its slot.
#[derive(Debug)]
struct Seq {
    /// The prompt, then each generated token as it is fed back: the token at position `i`.
    tokens: Vec<TokenId>,
    /// How many of `tokens` are the prompt.
    prompt_len: usize,
    /// Tokens whose KV cells the slot holds (reused, copied or decoded); the next
    /// token's position.
    n_past: usize,
    /// Tokens generated so far.
    generated: usize,
    /// The generation budget.
    max_tokens: usize,
    /// The last sampled token, to be fed in the next step.
    next: Option<TokenId>,
    /// `None`: this sequence neither reuses cells nor leaves its own behind.
    key: Option<ReuseKey>,
    /// Prompt tokens that came from a cache instead of a decode; set when its prefill starts.
    reused: Option<usize>,
    /// Waiting to copy a prefix another slot is decoding.
    wait: Option<Share>,
    /// The adapter set it decodes under (0: none): one decode step serves one set.
    group: usize,
}

/// A prefix to copy from another slot once that slot holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    src: usize,
    upto: usize,
}

/// A sequence that occupies a slot, with the caller's payload (sampler, reply channel).
#[derive(Debug)]
struct Active<J> {
    seq: Seq,
    job: J,
}

/// One llama.cpp sequence: its current sequence, or what its cells hold once it is free.
#[derive(Debug)]
struct Slot<J> {
    active: Option<Active<J>>,
    /// Free slot: the tokens at positions `0..` whose cells it still holds.
    cached: Vec<TokenId>,
    /// The key `cached` was decoded under.
    key: Option<ReuseKey>,
    /// Admission tick of its last sequence (least recently used first).
    used: u64,
}

impl<J> Slot<J> {
    /// The tokens whose cells the slot holds now, and their key.
    fn content(&self) -> (&[TokenId], Option<ReuseKey>) {
        match &self.active {
            Some(a) => (&a.seq.tokens[..a.seq.n_past], a.seq.key),
            None => (&self.cached, self.key),
        }
    }
}

/// Tokens one slot contributes to a decode step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The slot, which is also the llama.cpp sequence id.
    pub slot: usize,
    /// Tokens in order.
    pub tokens: Vec<TokenId>,
    /// Position of the first token.
    pub pos: usize,
    /// Whether the last token's logits are needed (prompt complete, or decoding).
    pub logits: bool,
    /// Prompt tokens (as opposed to a generated token fed back).
    pub prefill: bool,
    /// On a sequence's first prompt chunk: the prompt tokens it did not decode (reused or
    /// copied); 0 otherwise.
    pub reused: usize,
}

/// A whole-sequence copy to make before the step's decode: `dst` gets `src`'s cells, then
/// drops every cell from position `keep` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    pub src: usize,
    pub dst: usize,
    pub keep: usize,
}

/// A sequence placed in a slot: the caller drops the slot's cells from position `keep` on
/// (all of them when `keep` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub slot: usize,
    pub keep: usize,
}

/// What happened after a token was sampled for a slot.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterToken {
    /// Keep generating.
    Continue,
    /// The generation budget is spent.
    Length,
}

/// How a slot ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Its cells are whole (finished, or the client left between steps): keep them for reuse.
    Keep,
    /// A failure: the caller clears the cells.
    Clear,
}

/// Slots, the waiting queue and the token budget of one decode step.
#[derive(Debug)]
pub struct Scheduler<J> {
    slots: Vec<Slot<J>>,
    /// Admitted requests waiting for a slot, oldest first.
    waiting: VecDeque<(Seq, J)>,
    /// Bound of `waiting`.
    queue_cap: usize,
    /// Largest number of tokens in one decode step (llama.cpp's n_batch).
    step_budget: usize,
    /// Context length of one slot.
    ctx: usize,
    /// Admissions so far (the clock of least recently used).
    tick: u64,
    /// The adapter set the last planned step serves.
    turn: usize,
    /// Steps served in a row to `turn`.
    turn_steps: usize,
}

/// Length of the common prefix.
fn common(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<J> Scheduler<J> {
    pub fn new(slots: usize, queue_cap: usize, step_budget: usize, ctx: usize) -> Self {
        assert!(
            slots > 0 && step_budget >= slots,
            "need a slot and one token per slot per step"
        );
        Scheduler {
            slots: (0..slots)
                .map(|_| Slot {
                    active: None,
                    cached: Vec::new(),
                    key: None,
                    used: 0,
                })
                .collect(),
            waiting: VecDeque::new(),
            queue_cap,
            step_budget,
            ctx,
            tick: 0,
            turn: 0,
            turn_steps: 0,
        }
    }

    /// Queue a sequence; it takes a slot at the next [`Scheduler::admit`]. `key`: see
    /// [`ReuseKey`]; `None` opts out of reuse both ways.
    pub fn submit(
        &mut self,
        prompt: Vec<TokenId>,
        max_tokens: usize,
        key: Option<ReuseKey>,
        job: J,
    ) -> Result<(), (Refused, J)> {
        self.submit_in(0, prompt, max_tokens, key, job)
    }

    /// [`Scheduler::submit`] for a sequence decoded under adapter set `group` (0: none).
    pub fn submit_in(
        &mut self,
        group: usize,
        prompt: Vec<TokenId>,
        max_tokens: usize,
        key: Option<ReuseKey>,
        job: J,
    ) -> Result<(), (Refused, J)> {
        if prompt.is_empty() {
            return Err((Refused::EmptyPrompt, job));
        }
        if prompt.len() + max_tokens > self.ctx {
            let r = Refused::TooLong {
                prompt: prompt.len(),
                max_tokens,
                ctx: self.ctx,
            };
            return Err((r, job));
        }
        if self.waiting.len() >= self.queue_cap + self.free_slots() {
            return Err((Refused::QueueFull, job));
        }
        let seq = Seq {
            prompt_len: prompt.len(),
            tokens: prompt,
            n_past: 0,
            generated: 0,
            max_tokens,
            next: None,
            key,
            reused: None,
            wait: None,
            group,
        };
        self.waiting.push_back((seq, job));
        Ok(())
    }

    fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_none()).count()
    }

    /// Move waiting sequences into free slots, skipping those `dead` says were abandoned.
    /// Returns where each went with the cells it keeps, and the abandoned jobs.
    pub fn admit(&mut self, mut dead: impl FnMut(&J) -> bool) -> (Vec<Admitted>, Vec<J>) {
        let mut filled = Vec::new();
        let mut dropped = Vec::new();
        while self.free_slots() > 0 {
            let Some((mut seq, job)) = self.waiting.pop_front() else {
                break;
            };
            if dead(&job) {
                dropped.push(job);
                continue;
            }
            let (slot, keep, wait) = self.place(&seq);
            seq.wait = wait;
            self.tick += 1;
            let s = &mut self.slots[slot];
            s.used = self.tick;
            s.cached = Vec::new();
            s.key = None;
            seq.n_past = keep;
            s.active = Some(Active { seq, job });
            filled.push(Admitted { slot, keep });
        }
        (filled, dropped)
    }

    /// The free slot for `seq`, the cells it keeps there, and the busy slot's prefix worth
    /// waiting for, if any.
    fn place(&self, seq: &Seq) -> (usize, usize, Option<Share>) {
        let prompt = &seq.tokens[..seq.prompt_len];
        // Never the whole prompt: its last token is decoded again for the logits.
        let cap = seq.prompt_len - 1;
        let own = |s: &Slot<J>| match seq.key {
            Some(k) if s.key == Some(k) => common(&s.cached, prompt).min(cap),
            _ => 0,
        };
        let free = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
        };
        // Longest prefix first, then least recently used, then the lowest slot.
        let (slot, keep) = free()
            .min_by_key(|(i, s)| (std::cmp::Reverse(own(s)), s.used, *i))
            .map(|(i, s)| (i, own(s)))
            .expect("admit checked a free slot");
        let Some(key) = seq.key else {
            return (slot, keep, None);
        };
        // A busy slot whose tokens (decoded or still to be) share more.
        let share = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let a = s.active.as_ref()?;
                (a.seq.key == Some(key) && a.seq.wait.is_none())
                    .then(|| (i, common(&a.seq.tokens, prompt).min(cap)))
            })
            .max_by_key(|(_, n)| *n);
        match share {
            Some((src, upto)) if upto >= keep + MIN_SHARE => {
                // The copy replaces the slot's cells: take the least valuable one.
                let lru = free()
                    .min_by_key(|(_, s)| (own(s), s.used))
                    .map_or(slot, |(i, _)| i);
                (lru, own(&self.slots[lru]), Some(Share { src, upto }))
            }
            _ => (slot, keep, None),
        }
    }

    /// Settle the waits before planning a step: copy where the source holds the prefix
    /// now, keep waiting where it is still decoding it, and otherwise take what it has (or
    /// decode). The caller makes the copies, in order, before the step's decode.
    pub fn settle(&mut self) -> Vec<Copy> {
        let mut copies = Vec::new();
        for dst in 0..self.slots.len() {
            let Some(Share { src, upto }) =
                self.slots[dst].active.as_ref().and_then(|a| a.seq.wait)
            else {
                continue;
            };
            let (prompt, key, own) = {
                let a = self.slots[dst].active.as_ref().expect("checked above");
                (&a.seq.tokens[..a.seq.prompt_len], a.seq.key, a.seq.n_past)
            };
            let s = &self.slots[src];
            let (held, held_key) = s.content();
            let have = if held_key == key {
                common(held, prompt).min(upto)
            } else {
                0
            };
            let coming = s.active.as_ref().is_some_and(|a| {
                a.seq.key == key && a.seq.wait.is_none() && common(&a.seq.tokens, prompt) >= upto
            });
            let keep = if have >= upto {
                Some(upto)
            } else if coming {
                continue;
            } else {
                (have >= own + MIN_SHARE).then_some(have)
            };
            let a = self.slots[dst].active.as_mut().expect("checked above");
            a.seq.wait = None;
            if let Some(keep) = keep {
                a.seq.n_past = keep;
                copies.push(Copy { src, dst, keep });
            }
        }
        copies
    }

    /// Plan the next decode step (after [`Scheduler::settle`]): one token for every
    /// decoding slot first (so streams keep flowing), then prompt chunks from the remaining
    /// budget, oldest slot first. Positions advance as if the step succeeds.
    ///
    /// llama.cpp applies adapters to a whole batch, so a step serves one adapter set
    /// ([`Scheduler::group`]); the sets with work take turns in order, [`SET_QUANTUM`]
    /// steps each, so a set waits at most that many steps per other busy set.
    pub fn next_step(&mut self) -> Vec<Chunk> {
        let ready: std::collections::BTreeSet<usize> = self
            .slots
            .iter()
            .filter_map(|s| s.active.as_ref())
            .filter(|a| {
                a.seq.next.is_some() || (a.seq.n_past < a.seq.prompt_len && a.seq.wait.is_none())
            })
            .map(|a| a.seq.group)
            .collect();
        let group = if ready.contains(&self.turn) && self.turn_steps < SET_QUANTUM {
            self.turn
        } else {
            let Some(next) = ready
                .range(self.turn + 1..)
                .next()
                .or_else(|| ready.first())
                .copied()
            else {
                return Vec::new();
            };
            self.turn_steps = 0;
            next
        };
        self.turn = group;
        self.turn_steps += 1;
        let mut budget = self.step_budget;
        let mut chunks = Vec::new();
        for (slot, s) in self.slots.iter_mut().enumerate() {
            let Some(a) = &mut s.active else { continue };
            if a.seq.group != group {
                continue;
            }
            if let Some(tok) = a.seq.next.take() {
                a.seq.tokens.push(tok);
                chunks.push(Chunk {
                    slot,
                    tokens: vec![tok],
                    pos: a.seq.n_past,
                    logits: true,
                    prefill: false,
                    reused: 0,
                });
                a.seq.n_past += 1;
                budget -= 1;
            }
        }
        for (slot, s) in self.slots.iter_mut().enumerate() {
            let Some(a) = &mut s.active else { continue };
            let fed = a.seq.n_past;
            if budget == 0
                || fed >= a.seq.prompt_len
                || a.seq.wait.is_some()
                || a.seq.group != group
            {
                continue;
            }
            let end = a.seq.prompt_len.min(fed + budget);
            let tokens = a.seq.tokens[fed..end].to_vec();
            budget -= tokens.len();
            let first = a.seq.reused.is_none();
            a.seq.reused.get_or_insert(fed);
            chunks.push(Chunk {
                slot,
                tokens,
                pos: fed,
                logits: end == a.seq.prompt_len,
                prefill: true,
                reused: if first { fed } else { 0 },
            });
            a.seq.n_past = end;
        }
        chunks
    }

    /// The adapter set the last planned step serves (0: none).
    pub fn group(&self) -> usize {
        self.turn
    }

    /// Start `slot`'s sequence over from its first token: the cells it was to keep or copy
    /// could not be kept (a model whose memory cannot drop part of a sequence, or one that
    /// dropped old cells). Only for a sequence whose prefill has not started.
    pub fn restart(&mut self, slot: usize) {
        if let Some(a) = &mut self.slots[slot].active {
            debug_assert!(a.seq.reused.is_none(), "restart after the prefill started");
            a.seq.n_past = 0;
            a.seq.wait = None;
        }
    }

    /// Record the token sampled for `slot`; it is fed at the next step unless the caller
    /// releases the slot (end of generation, stop string, closed channel).
    pub fn on_token(&mut self, slot: usize, token: TokenId) -> AfterToken {
        let a = self.slots[slot]
            .active
            .as_mut()
            .expect("token for an empty slot");
        a.seq.generated += 1;
        if a.seq.generated >= a.seq.max_tokens {
            return AfterToken::Length;
        }
        a.seq.next = Some(token);
        AfterToken::Continue
    }

    /// Free a slot, returning its job. With [`End::Keep`] (and a key) the slot keeps its
    /// cells for the next sequences; otherwise the caller clears them
    /// ([`Scheduler::holds`] is then 0).
    pub fn release(&mut self, slot: usize, end: End) -> Option<J> {
        let s = &mut self.slots[slot];
        let a = s.active.take()?;
        let mut seq = a.seq;
        match (end, seq.key) {
            (End::Keep, Some(key)) => {
                seq.tokens.truncate(seq.n_past);
                s.cached = seq.tokens;
                s.key = Some(key);
            }
            _ => {
                s.cached = Vec::new();
                s.key = None;
            }
        }
        Some(a.job)
    }

    /// Tokens whose cells `slot` keeps for reuse (0 for a busy slot).
    pub fn holds(&self, slot: usize) -> usize {
        self.slots[slot].cached.len()
    }

    /// Free every slot whose job `dead` says was abandoned (keeping their cells: a client
    /// leaves between steps); returns their slots and jobs.
    pub fn reap(&mut self, mut dead: impl FnMut(&J) -> bool) -> Vec<(usize, J)> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            if self.slots[i].active.as_ref().is_some_and(|a| dead(&a.job)) {
                out.push((i, self.release(i, End::Keep).expect("checked above")));
            }
        }
        let (keep, gone): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, j)| !dead(j));
        self.waiting = keep;
        out.extend(gone.into_iter().map(|(_, j)| (usize::MAX, j)));
        out
    }

    pub fn job_mut(&mut self, slot: usize) -> Option<&mut J> {
        self.slots[slot].active.as_mut().map(|a| &mut a.job)
    }

    /// Prompt length, tokens generated so far and prompt tokens reused for `slot`.
    pub fn counts(&self, slot: usize) -> Option<(usize, usize, usize)> {
        self.slots[slot]
            .active
            .as_ref()
            .map(|a| (a.seq.prompt_len, a.seq.generated, a.seq.reused.unwrap_or(0)))
    }

    pub fn busy(&self) -> usize {
        self.slots.len() - self.free_slots()
    }

    pub fn queued(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_idle(&self) -> bool {
        self.busy() == 0 && self.waiting.is_empty()
    }

    /// Drain everything (shutdown or a failed decode): every job, active and waiting.
    pub fn drain_all(&mut self) -> Vec<J> {
        let mut out: Vec<J> = (0..self.slots.len())
            .filter_map(|i| self.release(i, End::Clear))
            .collect();
        out.extend(self.waiting.drain(..).map(|(_, j)| j));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: usize) -> Vec<TokenId> {
        (0..n as i32).collect()
    }

    fn chunk(slot: usize, tokens: Vec<TokenId>, pos: usize, logits: bool, prefill: bool) -> Chunk {
        Chunk {
            slot,
            tokens,
            pos,
            logits,
            prefill,
            reused: 0,
        }
    }

    /// Admit, run every step to the end of each prompt and release each slot keeping its
    /// cells; returns the admissions.
    fn run_to_end<J>(s: &mut Scheduler<J>) -> Vec<Admitted> {
        let (filled, _) = s.admit(|_| false);
        while s.next_step().iter().any(|c| !c.logits) {}
        for a in &filled {
            s.release(a.slot, End::Keep);
        }
        filled
    }

    #[test]
    fn admits_into_free_slots_and_queues_the_rest_up_to_the_bound() {
        let mut s: Scheduler<u32> = Scheduler::new(2, 1, 512, 100);
        for j in 0..3 {
            s.submit(toks(4), 8, None, j).unwrap();
        }
        assert_eq!(s.submit(toks(4), 8, None, 9), Err((Refused::QueueFull, 9)));
        let (filled, dropped) = s.admit(|_| false);
        assert_eq!(
            filled.iter().map(|a| a.slot).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(dropped.is_empty());
        assert_eq!((s.busy(), s.queued()), (2, 1));
        // The queue has room again once its waiting job could not take a slot.
        assert_eq!(
            s.submit(toks(4), 8, None, 10),
            Err((Refused::QueueFull, 10))
        );
    }

    #[test]
    fn too_long_names_both_numbers() {
        let mut s: Scheduler<()> = Scheduler::new(1, 1, 512, 100);
        let (r, _) = s.submit(toks(90), 20, None, ()).unwrap_err();
        assert_eq!(
            r,
            Refused::TooLong {
                prompt: 90,
                max_tokens: 20,
                ctx: 100
            }
        );
        assert_eq!(
            s.submit(vec![], 20, None, ()).unwrap_err().0,
            Refused::EmptyPrompt
        );
    }

    #[test]
    fn decoding_slots_go_first_and_prompts_are_chunked_by_the_budget() {
        let mut s: Scheduler<()> = Scheduler::new(2, 0, 8, 100);
        s.submit(toks(5), 4, None, ()).unwrap();
        s.admit(|_| false);
        let step = s.next_step();
        assert_eq!(step, vec![chunk(0, toks(5), 0, true, true)]);
        assert_eq!(s.on_token(0, 77), AfterToken::Continue);
        // A long prompt joins while slot 0 decodes: slot 0 gets its one token first.
        s.submit(toks(20), 4, None, ()).unwrap();
        s.admit(|_| false);
        let step = s.next_step();
        assert_eq!(step[0], chunk(0, vec![77], 5, true, false));
        assert_eq!(step[1], chunk(1, toks(7), 0, false, true));
        assert_eq!(step.iter().map(|c| c.tokens.len()).sum::<usize>(), 8);
        // Slot 0 sampled nothing new (no logits consumed yet), so slot 1 gets the whole budget.
        let step = s.next_step();
        assert_eq!(step, vec![chunk(1, (7..15).collect(), 7, false, true)]);
        let step = s.next_step();
        assert_eq!(step, vec![chunk(1, (15..20).collect(), 15, true, true)]);
    }

    #[test]
    fn generation_budget_ends_with_length() {
        let mut s: Scheduler<()> = Scheduler::new(1, 0, 8, 100);
        s.submit(toks(3), 2, None, ()).unwrap();
        s.admit(|_| false);
        s.next_step();
        assert_eq!(s.on_token(0, 1), AfterToken::Continue);
        s.next_step();
        assert_eq!(s.on_token(0, 2), AfterToken::Length);
        assert_eq!(s.counts(0), Some((3, 2, 0)));
        s.release(0, End::Keep);
        assert!(s.is_idle());
        // Without a key nothing stays behind.
        assert_eq!(s.holds(0), 0);
    }

    #[test]
    fn abandoned_jobs_free_their_slot_at_once_and_leave_the_queue() {
        let mut s: Scheduler<u32> = Scheduler::new(1, 2, 8, 100);
        for j in 0..3 {
            s.submit(toks(2), 2, None, j).unwrap();
        }
        s.admit(|_| false);
        let reaped = s.reap(|j| *j != 2);
        assert_eq!(reaped, vec![(0, 0), (usize::MAX, 1)]);
        assert_eq!(s.busy(), 0);
        let (filled, _) = s.admit(|_| false);
        assert_eq!(filled, vec![Admitted { slot: 0, keep: 0 }]);
        assert_eq!(s.job_mut(0), Some(&mut 2));
    }

    #[test]
    fn dead_waiting_jobs_are_skipped_on_admission() {
        let mut s: Scheduler<u32> = Scheduler::new(1, 2, 8, 100);
        s.submit(toks(2), 2, None, 1).unwrap();
        s.submit(toks(2), 2, None, 2).unwrap();
        let (filled, dropped) = s.admit(|j| *j == 1);
        assert_eq!((filled.len(), dropped), (1, vec![1]));
        assert_eq!(s.job_mut(0), Some(&mut 2));
        assert_eq!(s.drain_all(), vec![2]);
    }

    #[test]
    fn the_next_turn_takes_the_slot_with_the_longest_prefix_and_decodes_the_rest() {
        let mut s: Scheduler<()> = Scheduler::new(3, 0, 512, 1000);
        let a: Vec<TokenId> = (0..50).collect();
        let b: Vec<TokenId> = (100..130).collect();
        s.submit(a.clone(), 4, Some(0), ()).unwrap();
        s.submit(b.clone(), 4, Some(0), ()).unwrap();
        run_to_end(&mut s);
        assert_eq!((s.holds(0), s.holds(1)), (50, 30));
        // The next turn of `b`: its 30 tokens, then 10 more.
        let next: Vec<TokenId> = b.iter().copied().chain(500..510).collect();
        s.submit(next, 4, Some(0), ()).unwrap();
        let (filled, _) = s.admit(|_| false);
        assert_eq!(filled, vec![Admitted { slot: 1, keep: 30 }]);
        assert_eq!(s.settle(), vec![]);
        assert_eq!(
            s.next_step(),
            vec![Chunk {
                reused: 30,
                ..chunk(1, (500..510).collect(), 30, true, true)
            }]
        );
        assert_eq!(s.counts(1), Some((40, 0, 30)));
    }

    #[test]
    fn a_prompt_held_whole_decodes_its_last_token_again_for_the_logits() {
        let mut s: Scheduler<()> = Scheduler::new(1, 0, 512, 1000);
        s.submit(toks(20), 4, Some(7), ()).unwrap();
        run_to_end(&mut s);
        s.submit(toks(20), 4, Some(7), ()).unwrap();
        let (filled, _) = s.admit(|_| false);
        assert_eq!(filled, vec![Admitted { slot: 0, keep: 19 }]);
        assert_eq!(
            s.next_step(),
            vec![Chunk {
                reused: 19,
                ..chunk(0, vec![19], 19, true, true)
            }]
        );
    }

    #[test]
    fn ties_go_to_the_least_recently_used_slot_and_the_tail_is_dropped() {
        let mut s: Scheduler<()> = Scheduler::new(2, 0, 512, 1000);
        let shared: Vec<TokenId> = (0..10).collect();
        for tail in [[1000, 1001], [2000, 2001]] {
            s.submit(shared.iter().copied().chain(tail).collect(), 4, Some(0), ())
                .unwrap();
        }
        run_to_end(&mut s);
        // Both slots share 10 tokens with the new prompt; slot 0 was used longest ago.
        s.submit(
            shared.iter().copied().chain([3000]).collect(),
            4,
            Some(0),
            (),
        )
        .unwrap();
        let (filled, _) = s.admit(|_| false);
        assert_eq!(filled, vec![Admitted { slot: 0, keep: 10 }]);
    }

    #[test]
    fn reuse_needs_the_same_key_and_a_keyless_sequence_leaves_nothing() {
        let mut s: Scheduler<()> = Scheduler::new(1, 0, 512, 1000);
        s.submit(toks(30), 4, Some(1), ()).unwrap();
        run_to_end(&mut s);
        s.submit(toks(30), 4, Some(2), ()).unwrap();
        assert_eq!(run_to_end(&mut s), vec![Admitted { slot: 0, keep: 0 }]);
        s.submit(toks(30), 4, None, ()).unwrap();
        assert_eq!(run_to_end(&mut s), vec![Admitted { slot: 0, keep: 0 }]);
        assert_eq!(s.holds(0), 0);
        // A failed sequence leaves nothing either.
        s.submit(toks(30), 4, Some(2), ()).unwrap();
        s.admit(|_| false);
        s.next_step();
        s.release(0, End::Clear);
        assert_eq!(s.holds(0), 0);
    }

    #[test]
    fn a_shared_prefix_being_decoded_is_waited_for_then_copied() {
        let mut s: Scheduler<u8> = Scheduler::new(3, 4, 64, 1000);
        let system: Vec<TokenId> = (0..150).collect();
        for (j, q) in [(1, 900), (2, 901), (3, 902)] {
            let prompt = system.iter().copied().chain([q, q]).collect();
            s.submit(prompt, 4, Some(0), j).unwrap();
        }
        let (filled, _) = s.admit(|_| false);
        assert_eq!(filled.len(), 3);
        // Only slot 0 decodes the shared part, 64 tokens a step.
        for fed in [0, 64] {
            assert_eq!(s.settle(), vec![]);
            let step = s.next_step();
            assert_eq!(step.len(), 1);
            assert_eq!((step[0].slot, step[0].pos), (0, fed));
        }
        assert_eq!(s.settle(), vec![]);
        assert_eq!(s.next_step()[0].tokens.len(), 24);
        // Slot 0 holds all 150 shared tokens: the others copy them and decode their two.
        assert_eq!(
            s.settle(),
            vec![
                Copy {
                    src: 0,
                    dst: 1,
                    keep: 150
                },
                Copy {
                    src: 0,
                    dst: 2,
                    keep: 150
                }
            ]
        );
        assert_eq!(
            s.next_step(),
            vec![
                Chunk {
                    reused: 150,
                    ..chunk(1, vec![901, 901], 150, true, true)
                },
                Chunk {
                    reused: 150,
                    ..chunk(2, vec![902, 902], 150, true, true)
                }
            ]
        );
    }

    #[test]
    fn when_the_source_leaves_early_the_waiter_takes_what_it_holds() {
        let mut s: Scheduler<u8> = Scheduler::new(2, 2, 100, 1000);
        let system: Vec<TokenId> = (0..300).collect();
        s.submit(system.iter().copied().chain([7]).collect(), 4, Some(0), 1)
            .unwrap();
        s.submit(system.iter().copied().chain([8]).collect(), 4, Some(0), 2)
            .unwrap();
        s.admit(|_| false);
        s.next_step();
        s.next_step();
        // Slot 0 decoded 200 tokens, then its client left: slot 1 copies those 200.
        s.reap(|j| *j == 1);
        assert_eq!(
            s.settle(),
            vec![Copy {
                src: 0,
                dst: 1,
                keep: 200
            }]
        );
        let step = s.next_step();
        assert_eq!((step[0].slot, step[0].pos), (1, 200));
        // Had it failed instead (cells cleared), slot 1 would decode everything itself.
        let mut s: Scheduler<u8> = Scheduler::new(2, 2, 100, 1000);
        s.submit(system.iter().copied().chain([7]).collect(), 4, Some(0), 1)
            .unwrap();
        s.submit(system.iter().copied().chain([8]).collect(), 4, Some(0), 2)
            .unwrap();
        s.admit(|_| false);
        s.next_step();
        s.release(0, End::Clear);
        assert_eq!(s.settle(), vec![]);
        let step = s.next_step();
        assert_eq!((step[0].slot, step[0].pos), (1, 0));
    }

    #[test]
    fn adapter_sets_take_turns_in_runs_of_steps_and_none_starves() {
        let mut s: Scheduler<()> = Scheduler::new(4, 0, 64, 1000);
        s.submit_in(1, toks(4), 50, None, ()).unwrap();
        s.submit_in(2, toks(4), 50, None, ()).unwrap();
        s.submit_in(1, toks(4), 50, None, ()).unwrap();
        s.submit(toks(4), 50, None, ()).unwrap();
        s.admit(|_| false);
        let mut served = Vec::new();
        for _ in 0..3 * SET_QUANTUM {
            let step = s.next_step();
            let group = s.group();
            // Only one set's sequences in a step: slots 0 and 2 are set 1, slot 1 set 2.
            let slots: Vec<usize> = step.iter().map(|c| c.slot).collect();
            let expect = match group {
                0 => vec![3],
                1 => vec![0, 2],
                _ => vec![1],
            };
            assert_eq!(slots, expect, "group {group}");
            for c in step.iter().filter(|c| c.logits) {
                s.on_token(c.slot, 9);
            }
            served.push(group);
        }
        // Runs of SET_QUANTUM steps in turn: set 0 (which had the first turn) finishes its
        // run, then sets 1 and 2; none waits more than a run per other set.
        let runs: Vec<usize> = served
            .chunk_by(|a, b| a == b)
            .map(|run| run.len())
            .collect();
        let order: Vec<usize> = served.chunk_by(|a, b| a == b).map(|r| r[0]).collect();
        assert_eq!(order, vec![0, 1, 2]);
        assert_eq!(runs, vec![SET_QUANTUM; 3]);
    }

    mod model {
        //! A model of llama.cpp's cells driven by what the scheduler asks for: whatever
        //! happens, a slot's logits are only asked for when its cells hold exactly its
        //! sequence's tokens, and each prompt token is either reused or decoded once.

        use super::*;
        use proptest::prelude::*;

        #[derive(Debug)]
        struct Job {
            id: usize,
            /// What the sequence's cells must hold when its logits are read.
            expect: Vec<TokenId>,
            prompt_len: usize,
            /// Prompt tokens decoded, and reused.
            decoded: usize,
            reused: usize,
        }

        #[derive(Debug, Clone)]
        enum Op {
            Submit {
                prefix: usize,
                shared: usize,
                tail: Vec<TokenId>,
                key: Option<ReuseKey>,
                max: usize,
            },
            Step,
            Abandon(usize),
            Fail(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (0..3usize, 0..200usize, prop::collection::vec(0..5i32, 1..20),
                      prop::option::weighted(0.8, 0..2u64), 1..6usize)
                    .prop_map(|(prefix, shared, tail, key, max)| Op::Submit { prefix, shared, tail, key, max }),
                8 => Just(Op::Step),
                1 => (0..40usize).prop_map(Op::Abandon),
                1 => (0..4usize).prop_map(Op::Fail),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn logits_are_read_only_over_the_sequences_own_tokens(
                slots in 1..5usize,
                budget in 4..80usize,
                ops in prop::collection::vec(op(), 1..120),
            ) {
                let budget = budget.max(slots);
                let mut s: Scheduler<Job> = Scheduler::new(slots, 3, budget, 400);
                let mut kv: Vec<Vec<TokenId>> = vec![Vec::new(); slots];
                let mut abandoned = std::collections::BTreeSet::new();
                let mut next_id = 0;
                let mut sampled = 0;
                let bases: [Vec<TokenId>; 3] = [
                    (0..300).collect(),
                    (1000..1300).collect(),
                    (0..100).chain(2000..2200).collect(),
                ];
                // Keep stepping after the script so every admitted sequence ends.
                let drain = std::iter::repeat_n(Op::Step, 2000);
                for op in ops.into_iter().chain(drain) {
                    match op {
                        Op::Submit { prefix, shared, tail, key, max } => {
                            let prompt: Vec<TokenId> =
                                bases[prefix][..shared].iter().copied().chain(tail).collect();
                            let job = Job { id: next_id, expect: prompt.clone(), prompt_len: prompt.len(), decoded: 0, reused: 0 };
                            next_id += 1;
                            let _refused = s.submit(prompt, max, key, job);
                        }
                        Op::Abandon(id) => {
                            abandoned.insert(id);
                        }
                        Op::Fail(slot) => {
                            if slot < slots && s.release(slot, End::Clear).is_some() {
                                kv[slot].clear();
                            }
                        }
                        Op::Step => {
                            for (slot, _) in s.reap(|j| abandoned.contains(&j.id)) {
                                if slot == usize::MAX {
                                    continue;
                                }
                                match s.holds(slot) {
                                    0 => kv[slot].clear(),
                                    held => prop_assert_eq!(held, kv[slot].len()),
                                }
                            }
                            let (filled, _) = s.admit(|j| abandoned.contains(&j.id));
                            for a in filled {
                                prop_assert!(a.keep <= kv[a.slot].len());
                                kv[a.slot].truncate(a.keep);
                                let j = s.job_mut(a.slot).unwrap();
                                prop_assert_eq!(&kv[a.slot][..], &j.expect[..a.keep]);
                            }
                            for c in s.settle() {
                                prop_assert!(c.keep <= kv[c.src].len());
                                kv[c.dst] = kv[c.src][..c.keep].to_vec();
                            }
                            let step = s.next_step();
                            for c in &step {
                                prop_assert_eq!(c.pos, kv[c.slot].len(), "chunk must extend the cells");
                                kv[c.slot].extend(&c.tokens);
                                let j = s.job_mut(c.slot).unwrap();
                                if c.prefill {
                                    j.decoded += c.tokens.len();
                                    j.reused += c.reused;
                                }
                                prop_assert!(kv[c.slot].len() <= j.expect.len());
                                prop_assert_eq!(&kv[c.slot][..], &j.expect[..kv[c.slot].len()]);
                            }
                            for c in step.iter().filter(|c| c.logits) {
                                let j = s.job_mut(c.slot).unwrap();
                                prop_assert_eq!(&kv[c.slot], &j.expect);
                                prop_assert_eq!(j.decoded + j.reused, j.prompt_len);
                                sampled += 1;
                                let token = 3000 + (sampled % 7) as TokenId;
                                if s.on_token(c.slot, token) == AfterToken::Continue {
                                    s.job_mut(c.slot).unwrap().expect.push(token);
                                } else {
                                    let (_, _, reused) = s.counts(c.slot).unwrap();
                                    prop_assert_eq!(reused, s.job_mut(c.slot).unwrap().reused);
                                    s.release(c.slot, End::Keep);
                                    let held = s.holds(c.slot);
                                    if held == 0 {
                                        kv[c.slot].clear();
                                    } else {
                                        prop_assert_eq!(held, kv[c.slot].len());
                                    }
                                }
                            }
                        }
                    }
                }
                prop_assert!(s.is_idle(), "sequences were left: busy {}, queued {}", s.busy(), s.queued());
            }
        }
    }
}
