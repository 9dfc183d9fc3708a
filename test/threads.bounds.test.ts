// Issue 15: a thread's growth is bounded where it costs — the model context of a
// run (a character budget, oldest turns left out first and the model told so) and
// `GET /api/threads/:id/messages` (pages, newest first). Over HTTP, against a real
// server, with the echo model (it answers with the transcript it was given).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LeashClient } from '../src/client/index.ts';
import { parseApiKeys } from '../src/server/auth.ts';
import { encodeCursor } from '../src/store/paging.ts';
import { createChatTask } from '../src/tasks/chat.ts';
import { builtinTasks } from '../src/tasks/index.ts';
import { leftOutNote } from '../src/threads/context-budget.ts';
import { MESSAGE_PAGE_CHARS } from '../src/threads/threads.ts';
import { api, startTestServer, type TestServer } from './helpers/server.ts';

const BUDGET = 1000;
const ECHO = 'simulated:echo?tps=0';
const SHORT = 'simulated?tps=0&tokens=20';

describe('thread bounds (issue 15)', () => {
  let s: TestServer;

  before(async () => {
    s = await startTestServer({
      apiKeys: parseApiKeys('k1:alice,k2:bob'),
      tasks: [...builtinTasks.filter((t) => t.type !== 'chat'), createChatTask({ contextChars: BUDGET })],
    });
  });
  after(async () => {
    await s.close();
  });

  const call = (method: string, path: string, body?: unknown, key = 'k1') =>
    api(s.url, method, path, { key, ...(body !== undefined && { body }) });

  async function newThread(key = 'k1'): Promise<string> {
    const r = await call('POST', '/api/threads', {}, key);
    assert.equal(r.status, 201);
    return r.body.id as string;
  }

  /** Runs one turn to its end; the task as it ended. */
  async function turn(thread: string, content: string, model: string) {
    const r = await call('POST', `/api/threads/${thread}/runs`, { content, model });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const done = await call('GET', `/api/tasks/${r.body.id}/wait?timeout_s=20`);
    assert.equal(done.body.status, 'completed', JSON.stringify(done.body));
    return done.body as { result: { text: string } };
  }

  /** `[role] content` blocks of an echo transcript (contents may span lines). */
  function parseTranscript(text: string): Array<{ role: string; content: string }> {
    const out: Array<{ role: string; content: string }> = [];
    for (const line of text.split('\n')) {
      const m = /^\[(system|user|assistant)\] (.*)$/.exec(line);
      if (m) out.push({ role: m[1]!, content: m[2]! });
      else out.at(-1)!.content += `\n${line}`;
    }
    return out;
  }

  describe('model context', () => {
    it('a long thread: oldest turns left out, the model told how many, the newest question whole, within the budget', async () => {
      const t = await newThread();
      const questions = Array.from({ length: 8 }, (_, i) => `question ${i} ${'q'.repeat(180)}`);
      for (const q of questions.slice(0, -1)) await turn(t, q, SHORT);
      const last = await turn(t, questions.at(-1)!, ECHO);
      const sent = parseTranscript(last.result.text);
      // 15 messages before the answer; what fits 1000 characters is far fewer.
      assert.equal(sent[0]!.role, 'system');
      const m = /^\[(\d+) earlier messages were left out to fit the context\.\]$/.exec(sent[0]!.content);
      assert.ok(m, `the model is told: ${sent[0]!.content}`);
      const conversation = sent.slice(1);
      assert.equal(Number(m[1]) + conversation.length, 15, 'left out + sent = the whole history');
      assert.deepEqual(conversation.at(-1), { role: 'user', content: questions.at(-1) }, 'the newest question, whole');
      assert.equal(conversation[0]!.role, 'user', 'the window starts with a question, not an orphan answer');
      const chars = conversation.reduce((n, x) => n + x.content.length, 0);
      assert.ok(chars <= BUDGET, `${chars} characters sent, budget ${BUDGET}`);
      assert.ok(!last.result.text.includes('question 0 '), 'the oldest question was left out');
      assert.ok(last.result.text.includes('question 6 '), 'the previous question is still there');
      // The stored thread is untouched: every message is still in history.
      const all = await new LeashClient({ baseUrl: s.url, apiKey: 'k1' }).threads.messages(t);
      assert.equal(all.length, 16);
    });

    it('a newest message longer than the budget is cut with a marker; its start reaches the model', async () => {
      const t = await newThread();
      await turn(t, 'hello', SHORT);
      const huge = `START ${'z'.repeat(5000)} END`;
      const done = await turn(t, huge, ECHO);
      const sent = parseTranscript(done.result.text);
      assert.deepEqual(sent[0], { role: 'system', content: leftOutNote(2) });
      assert.equal(sent.length, 2, 'nothing older fits beside it');
      const q = sent[1]!;
      assert.equal(q.role, 'user');
      assert.ok(q.content.startsWith('START zzz'));
      assert.ok(!q.content.includes('END'));
      assert.match(q.content, /\[… \d+ more characters of this message were left out to fit the context\.\]$/);
      assert.ok(q.content.length <= BUDGET, `${q.content.length} > ${BUDGET}`);
      // Stored whole.
      const r = await call('GET', `/api/threads/${t}/messages`);
      assert.equal(r.body.data[2].content, huge);
    });

    it('a thread within the budget is sent whole, with no note', async () => {
      const t = await newThread();
      await turn(t, 'first', SHORT);
      const done = await turn(t, 'second', ECHO);
      const sent = parseTranscript(done.result.text);
      assert.deepEqual(
        sent.map((x) => x.role),
        ['user', 'assistant', 'user'],
      );
      assert.ok(!done.result.text.includes('left out'));
    });
  });

  describe('GET /api/threads/:id/messages pages', () => {
    let thread: string;
    before(async () => {
      thread = await newThread();
      for (let i = 1; i <= 7; i++) {
        await s.store.appendMessage({
          id: `msg_page_${i}`,
          thread_id: thread,
          role: i % 2 ? 'user' : 'assistant',
          content: `page-message-${i}`,
          status: 'complete',
          task_id: null,
          created_at: new Date().toISOString(),
        });
      }
    });

    const get = (query: string, key = 'k1') => call('GET', `/api/threads/${thread}/messages${query}`, undefined, key);
    const seqs = (body: { data: Array<{ seq: number }> }) => body.data.map((m) => m.seq);

    it('newest page first, oldest → newest within a page; the cursor walks back to the start', async () => {
      const p1 = await get('?limit=3');
      assert.equal(p1.status, 200);
      assert.deepEqual(seqs(p1.body), [5, 6, 7]);
      assert.equal(p1.body.has_more, true);
      assert.equal(typeof p1.body.next_cursor, 'string');
      const p2 = await get(`?limit=3&cursor=${p1.body.next_cursor}`);
      assert.deepEqual(seqs(p2.body), [2, 3, 4]);
      const p3 = await get(`?limit=3&cursor=${p2.body.next_cursor}`);
      assert.deepEqual(seqs(p3.body), [1]);
      assert.equal(p3.body.has_more, false);
      assert.equal(p3.body.next_cursor, null);
      const exact = await get('?limit=7');
      assert.deepEqual(seqs(exact.body), [1, 2, 3, 4, 5, 6, 7]);
      assert.equal(exact.body.has_more, false, 'a page that ends exactly at the start says so');
    });

    it('no limit: up to 100; limit=1000 is allowed', async () => {
      const all = await get('');
      assert.deepEqual(seqs(all.body), [1, 2, 3, 4, 5, 6, 7]);
      assert.equal(all.body.next_cursor, null);
      assert.equal((await get('?limit=1000')).status, 200);
    });

    it('the default page is 100 and the client fetches every page', async () => {
      const t = await newThread();
      for (let i = 1; i <= 250; i++) {
        await s.store.appendMessage({
          id: `msg_many_${i}`,
          thread_id: t,
          role: 'user',
          content: `n${i}`,
          status: 'complete',
          task_id: null,
          created_at: new Date().toISOString(),
        });
      }
      const first = await call('GET', `/api/threads/${t}/messages`);
      assert.equal(first.body.data.length, 100);
      assert.equal(first.body.data[0].seq, 151);
      const client = new LeashClient({ baseUrl: s.url, apiKey: 'k1' });
      const all = await client.threads.messages(t);
      assert.deepEqual(
        all.map((m) => m.seq),
        Array.from({ length: 250 }, (_, i) => i + 1),
      );
    });

    it('a page of huge messages stops at its size bound; the cursor still walks them all, in order', async () => {
      const t = await newThread();
      const big = (i: number) => `${i}`.repeat(MESSAGE_PAGE_CHARS * 0.3); // 3 fit, the 4th would not
      for (let i = 1; i <= 5; i++) {
        await s.store.appendMessage({
          id: `msg_big_${i}`,
          thread_id: t,
          role: 'user',
          content: big(i),
          status: 'complete',
          task_id: null,
          created_at: new Date().toISOString(),
        });
      }
      const pages: number[][] = [];
      let cursor = '';
      do {
        const r = await call('GET', `/api/threads/${t}/messages?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(r.status, 200);
        const chars = r.body.data.reduce((n: number, m: { content: string }) => n + m.content.length, 0);
        assert.ok(chars <= MESSAGE_PAGE_CHARS, `${chars} characters in one page`);
        pages.push(seqs(r.body));
        cursor = r.body.next_cursor ?? '';
      } while (cursor);
      assert.deepEqual(pages, [
        [3, 4, 5],
        [1, 2],
      ]);
    });

    it('bad limits and cursors are 400 invalid_request, never 5xx', async () => {
      const bad = [
        '?limit=0',
        '?limit=-1',
        '?limit=1001',
        '?limit=abc',
        '?limit=1.5',
        '?limit=',
        '?limit=1&limit=2',
        '?cursor=garbage',
        '?cursor=',
        `?cursor=${encodeCursor('t', 3)}`, // a task cursor
        `?cursor=${encodeCursor('h', 3)}`, // a thread-list cursor
        `?cursor=${'A'.repeat(2000)}`,
      ];
      for (const q of bad) {
        const r = await get(q);
        assert.equal(r.status, 400, `${q} → ${r.status} ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, 'invalid_request', q);
      }
    });

    it("another owner's thread is 404, with or without a cursor", async () => {
      const own = await get('?limit=3');
      for (const q of ['', '?limit=3', `?limit=3&cursor=${own.body.next_cursor}`]) {
        const r = await get(q, 'k2');
        assert.equal(r.status, 404, q);
        assert.equal(r.body.error.code, 'not_found');
        assert.ok(!JSON.stringify(r.body).includes('page-message-'), 'no message content');
      }
      const missing = await call('GET', '/api/threads/thread_nope/messages?limit=3', undefined, 'k2');
      assert.equal(missing.status, 404);
    });
  });
});
