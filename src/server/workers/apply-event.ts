// An event frame of a worker handed to its task's ctx (progress / emit / checkpoint),
// resolving with what its ack says: the seq the event got (seq-acks.ts), or dropped.

import type { EventFrame } from './protocol.ts';
import type { EventAck, Job } from './records.ts';

/** Hands an event frame to the task's ctx; `committedSeq`: the task's last stored seq. */
export async function applyEvent(job: Job, f: EventFrame, committedSeq: () => number | null): Promise<EventAck> {
  const ctx = job.ctx;
  if (ctx.signal.aborted) return { applied: false, seq: null };
  switch (f.kind) {
    case 'progress': {
      const wait = job.seqs.expect('progress');
      ctx.progress(f.progress, f.message ?? undefined);
      // Not appended (the task stopped meanwhile, e.g. the store's backlog is full).
      if (ctx.signal.aborted) wait.dropped();
      const seq = await wait.seq;
      return { applied: seq !== null, seq };
    }
    case 'output': {
      const wait = job.seqs.expect('output', f.text.length);
      if (!ctx.emit(f.text)) wait.dropped();
      const seq = await wait.seq;
      return { applied: seq !== null, seq };
    }
    case 'checkpoint': {
      await ctx.checkpoint(f.state);
      if (ctx.signal.aborted) return { applied: false, seq: null };
      job.checkpoint = { state: f.state };
      // Everything before it is stored: its seq is the task's last one, which it covers.
      return { applied: true, seq: committedSeq() };
    }
  }
}
