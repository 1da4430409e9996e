//! The continuous-batching scheduler: which sequence sits in which slot, which tokens go
//! into the next decode step, and when a slot frees. A pure state machine over token ids,
//! so it is unit-tested without a model; the engine thread drives it.

use std::collections::VecDeque;

/// A token id as llama.cpp numbers it.
pub type TokenId = i32;

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
    /// The prompt's tokens.
    prompt: Vec<TokenId>,
    /// Tokens already decoded into the KV cache (prompt and generated); the next token's
    /// position.
    n_past: usize,
    /// Tokens generated so far.
    generated: usize,
    /// The generation budget.
    max_tokens: usize,
    /// The last sampled token, to be fed in the next step.
    next: Option<TokenId>,
}

/// A sequence that occupies a slot, with the caller's payload (sampler, reply channel).
#[derive(Debug)]
struct Active<J> {
    seq: Seq,
    job: J,
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
}

/// What happened after a token was sampled for a slot.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterToken {
    /// Keep generating.
    Continue,
    /// The generation budget is spent.
    Length,
}

/// Slots, the waiting queue and the token budget of one decode step.
#[derive(Debug)]
pub struct Scheduler<J> {
    /// One entry per llama.cpp sequence; `None` is free.
    slots: Vec<Option<Active<J>>>,
    /// Admitted requests waiting for a slot, oldest first.
    waiting: VecDeque<(Seq, J)>,
    /// Bound of `waiting`.
    queue_cap: usize,
    /// Largest number of tokens in one decode step (llama.cpp's n_batch).
    step_budget: usize,
    /// Context length of one slot.
    ctx: usize,
}

impl<J> Scheduler<J> {
    pub fn new(slots: usize, queue_cap: usize, step_budget: usize, ctx: usize) -> Self {
        assert!(
            slots > 0 && step_budget >= slots,
            "need a slot and one token per slot per step"
        );
        Scheduler {
            slots: (0..slots).map(|_| None).collect(),
            waiting: VecDeque::new(),
            queue_cap,
            step_budget,
            ctx,
        }
    }

    /// Queue a sequence; it takes a slot at the next [`Scheduler::admit`].
    pub fn submit(
        &mut self,
        prompt: Vec<TokenId>,
        max_tokens: usize,
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
            prompt,
            n_past: 0,
            generated: 0,
            max_tokens,
            next: None,
        };
        self.waiting.push_back((seq, job));
        Ok(())
    }

    fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_none()).count()
    }

    /// Move waiting sequences into free slots, skipping those `dead` says were abandoned.
    /// Returns the slots filled and the abandoned jobs.
    pub fn admit(&mut self, mut dead: impl FnMut(&J) -> bool) -> (Vec<usize>, Vec<J>) {
        let mut filled = Vec::new();
        let mut dropped = Vec::new();
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                continue;
            }
            while let Some((seq, job)) = self.waiting.pop_front() {
                if dead(&job) {
                    dropped.push(job);
                    continue;
                }
                self.slots[i] = Some(Active { seq, job });
                filled.push(i);
                break;
            }
        }
        (filled, dropped)
    }

    /// Plan the next decode step: one token for every decoding slot first (so streams keep
    /// flowing), then prompt chunks from the remaining budget, oldest slot first. Positions
    /// advance as if the step succeeds.
    pub fn next_step(&mut self) -> Vec<Chunk> {
        let mut budget = self.step_budget;
        let mut chunks = Vec::new();
        for (slot, a) in self.slots.iter_mut().enumerate() {
            let Some(a) = a else { continue };
            if let Some(tok) = a.seq.next.take() {
                chunks.push(Chunk {
                    slot,
                    tokens: vec![tok],
                    pos: a.seq.n_past,
                    logits: true,
                    prefill: false,
                });
                a.seq.n_past += 1;
                budget -= 1;
            }
        }
        for (slot, a) in self.slots.iter_mut().enumerate() {
            let Some(a) = a else { continue };
            let fed = a.seq.n_past;
            if budget == 0 || fed >= a.seq.prompt.len() {
                continue;
            }
            let end = a.seq.prompt.len().min(fed + budget);
            let tokens = a.seq.prompt[fed..end].to_vec();
            budget -= tokens.len();
            chunks.push(Chunk {
                slot,
                tokens,
                pos: fed,
                logits: end == a.seq.prompt.len(),
                prefill: true,
            });
            a.seq.n_past = end;
        }
        chunks
    }

    /// Record the token sampled for `slot`; it is fed at the next step unless the caller
    /// releases the slot (end of generation, stop string, closed channel).
    pub fn on_token(&mut self, slot: usize, token: TokenId) -> AfterToken {
        let a = self.slots[slot].as_mut().expect("token for an empty slot");
        a.seq.generated += 1;
        if a.seq.generated >= a.seq.max_tokens {
            return AfterToken::Length;
        }
        a.seq.next = Some(token);
        AfterToken::Continue
    }

    /// Free a slot, returning its job. The caller clears the slot's KV cells.
    pub fn release(&mut self, slot: usize) -> Option<J> {
        self.slots[slot].take().map(|a| a.job)
    }

    /// Free every slot whose job `dead` says was abandoned; returns their slots and jobs.
    pub fn reap(&mut self, mut dead: impl FnMut(&J) -> bool) -> Vec<(usize, J)> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|a| dead(&a.job)) {
                out.push((i, self.release(i).expect("checked above")));
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
        self.slots[slot].as_mut().map(|a| &mut a.job)
    }

    /// Prompt length and tokens generated so far for `slot`.
    pub fn counts(&self, slot: usize) -> Option<(usize, usize)> {
        self.slots[slot]
            .as_ref()
            .map(|a| (a.seq.prompt.len(), a.seq.generated))
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
        let mut out: Vec<J> = self
            .slots
            .iter_mut()
            .filter_map(|s| s.take().map(|a| a.job))
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

    #[test]
    fn admits_into_free_slots_and_queues_the_rest_up_to_the_bound() {
        let mut s: Scheduler<u32> = Scheduler::new(2, 1, 512, 100);
        for j in 0..3 {
            s.submit(toks(4), 8, j).unwrap();
        }
        assert_eq!(s.submit(toks(4), 8, 9), Err((Refused::QueueFull, 9)));
        let (filled, dropped) = s.admit(|_| false);
        assert_eq!(filled, vec![0, 1]);
        assert!(dropped.is_empty());
        assert_eq!((s.busy(), s.queued()), (2, 1));
        // The queue has room again once its waiting job could not take a slot.
        assert_eq!(s.submit(toks(4), 8, 10), Err((Refused::QueueFull, 10)));
    }

    #[test]
    fn too_long_names_both_numbers() {
        let mut s: Scheduler<()> = Scheduler::new(1, 1, 512, 100);
        let (r, _) = s.submit(toks(90), 20, ()).unwrap_err();
        assert_eq!(
            r,
            Refused::TooLong {
                prompt: 90,
                max_tokens: 20,
                ctx: 100
            }
        );
        assert_eq!(
            s.submit(vec![], 20, ()).unwrap_err().0,
            Refused::EmptyPrompt
        );
    }

    #[test]
    fn decoding_slots_go_first_and_prompts_are_chunked_by_the_budget() {
        let mut s: Scheduler<()> = Scheduler::new(2, 0, 8, 100);
        s.submit(toks(5), 4, ()).unwrap();
        s.admit(|_| false);
        let step = s.next_step();
        assert_eq!(
            step,
            vec![Chunk {
                slot: 0,
                tokens: toks(5),
                pos: 0,
                logits: true,
                prefill: true
            }]
        );
        assert_eq!(s.on_token(0, 77), AfterToken::Continue);
        // A long prompt joins while slot 0 decodes: slot 0 gets its one token first.
        s.submit(toks(20), 4, ()).unwrap();
        s.admit(|_| false);
        let step = s.next_step();
        assert_eq!(
            step[0],
            Chunk {
                slot: 0,
                tokens: vec![77],
                pos: 5,
                logits: true,
                prefill: false
            }
        );
        assert_eq!(
            step[1],
            Chunk {
                slot: 1,
                tokens: toks(7),
                pos: 0,
                logits: false,
                prefill: true
            }
        );
        assert_eq!(step.iter().map(|c| c.tokens.len()).sum::<usize>(), 8);
        // Slot 0 sampled nothing new (no logits consumed yet), so slot 1 gets the whole budget.
        let step = s.next_step();
        assert_eq!(
            step,
            vec![Chunk {
                slot: 1,
                tokens: (7..15).collect(),
                pos: 7,
                logits: false,
                prefill: true
            }]
        );
        let step = s.next_step();
        assert_eq!(
            step,
            vec![Chunk {
                slot: 1,
                tokens: (15..20).collect(),
                pos: 15,
                logits: true,
                prefill: true
            }]
        );
    }

    #[test]
    fn generation_budget_ends_with_length() {
        let mut s: Scheduler<()> = Scheduler::new(1, 0, 8, 100);
        s.submit(toks(3), 2, ()).unwrap();
        s.admit(|_| false);
        s.next_step();
        assert_eq!(s.on_token(0, 1), AfterToken::Continue);
        s.next_step();
        assert_eq!(s.on_token(0, 2), AfterToken::Length);
        assert_eq!(s.counts(0), Some((3, 2)));
        s.release(0);
        assert!(s.is_idle());
    }

    #[test]
    fn abandoned_jobs_free_their_slot_at_once_and_leave_the_queue() {
        let mut s: Scheduler<u32> = Scheduler::new(1, 2, 8, 100);
        for j in 0..3 {
            s.submit(toks(2), 2, j).unwrap();
        }
        s.admit(|_| false);
        let reaped = s.reap(|j| *j != 2);
        assert_eq!(reaped, vec![(0, 0), (usize::MAX, 1)]);
        assert_eq!(s.busy(), 0);
        let (filled, _) = s.admit(|_| false);
        assert_eq!(filled, vec![0]);
        assert_eq!(s.job_mut(0), Some(&mut 2));
    }

    #[test]
    fn dead_waiting_jobs_are_skipped_on_admission() {
        let mut s: Scheduler<u32> = Scheduler::new(1, 2, 8, 100);
        s.submit(toks(2), 2, 1).unwrap();
        s.submit(toks(2), 2, 2).unwrap();
        let (filled, dropped) = s.admit(|j| *j == 1);
        assert_eq!((filled, dropped), (vec![0], vec![1]));
        assert_eq!(s.job_mut(0), Some(&mut 2));
        assert_eq!(s.drain_all(), vec![2]);
    }
}
