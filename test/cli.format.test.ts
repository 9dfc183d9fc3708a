// The CLI's text pieces: rows cut from streamed text, durations, ages, bars,
// tables, and the task view (Ink) fed with events.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stripVTControlCharacters } from 'node:util';
import React from 'react';
import { render } from 'ink-testing-library';
import type { Task } from '../src/client/index.ts';
import { describeEnd, formatAge, parseDuration, progressBar, table, taskTable } from '../src/cli/format.ts';
import { RowSplitter, wrapRows } from '../src/cli/rows.ts';
import { TaskViewModel } from '../src/cli/task-model.ts';
import { TaskView } from '../src/cli/ui/task-view.ts';

const TEXT =
  'The quick brown fox jumps over the lazy dog.\nA second line, somewhat longer than the width we give it here, with ' +
  'an extraordinarilylongwordthatcannotfitinonerowatall and a tab\there.\n\nEnd';

function task(over: Partial<Task> = {}): Task {
  return {
    id: 'task_abc',
    type: 'generate',
    status: 'running',
    progress: null,
    progress_message: null,
    input: {},
    result: null,
    output_text: '',
    error: null,
    cancel: null,
    priority: 0,
    thread_id: null,
    owner: 'local',
    created_at: new Date().toISOString(),
    started_at: null,
    ended_at: null,
    deadline_at: null,
    ...over,
  };
}

describe('RowSplitter', () => {
  it('cuts text into rows no wider than the width, at spaces when it can', () => {
    const rows = wrapRows(TEXT, 20);
    for (const r of rows) assert.ok([...r].length <= 20, `"${r}" is wider than 20`);
    assert.deepEqual(rows.slice(0, 3), ['The quick brown fox', 'jumps over the lazy', 'dog.']);
    assert.ok(rows.includes('extraordinarilylongw'), rows.join('|')); // a hard cut for a word longer than a row
    assert.ok(rows.includes(''), 'the blank line is kept');
    assert.equal(rows.at(-1), 'End');
    // Nothing is lost but the spaces the rows were cut at (and tabs become spaces).
    assert.equal(rows.join('').replace(/\s/g, ''), TEXT.replace(/\s/g, ''));
  });

  it('streams the same rows however the text is chunked, and finished rows never change', () => {
    const whole = wrapRows(TEXT, 17);
    for (const size of [1, 2, 3, 7, 50]) {
      const s = new RowSplitter(17);
      const rows: string[] = [];
      for (let i = 0; i < TEXT.length; i += size) {
        rows.push(...s.push(TEXT.slice(i, i + size)));
        // Everything finished so far is a prefix of the final layout.
        assert.deepEqual(rows, whole.slice(0, rows.length));
      }
      rows.push(...s.flush());
      assert.deepEqual(rows, whole, `chunks of ${size}`);
    }
  });

  it('drops control characters that would move the cursor, and handles CRLF', () => {
    assert.deepEqual(wrapRows('a\x1b[2Jb\r\nc\x07', 10), ['a[2Jb', 'c']);
    const s = new RowSplitter(10);
    assert.deepEqual(s.push('abc'), []);
    assert.equal(s.tail, 'abc');
    assert.deepEqual(s.flush(), ['abc']);
    assert.deepEqual(s.flush(), []);
  });
});

describe('formatting', () => {
  it('parses durations and rejects anything else as a usage error (exit 2)', () => {
    assert.equal(parseDuration('10m', '--older-than'), 600_000);
    assert.equal(parseDuration('1h30m', '--older-than'), 5_400_000);
    assert.equal(parseDuration('90s', '--x'), 90_000);
    assert.equal(parseDuration('2d', '--x'), 172_800_000);
    assert.equal(parseDuration('500ms', '--x'), 500);
    for (const bad of ['', '10', 'm', '10x', '-5m', '0s', '10m junk', 'ten minutes']) {
      assert.throws(
        () => parseDuration(bad, '--older-than'),
        (e: Error & { exitCode?: number }) => e.exitCode === 2 && e.message.includes('--older-than'),
        bad,
      );
    }
  });

  it('formats ages, bars, tables and endings', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    assert.equal(formatAge('2026-01-01T11:59:55Z', now), '5s');
    assert.equal(formatAge('2026-01-01T11:57:00Z', now), '3m');
    assert.equal(formatAge('2026-01-01T09:00:00Z', now), '3h');
    assert.equal(formatAge('2025-12-29T12:00:00Z', now), '3d');
    assert.equal(formatAge('2026-01-01T12:00:09Z', now), '0s'); // a server clock slightly ahead
    assert.equal(formatAge('garbage', now), '?');

    assert.equal(progressBar(50, 10), '[█████░░░░░]');
    assert.equal(progressBar(0, 4), '[░░░░]');
    assert.equal(progressBar(140, 4), '[████]');
    assert.equal(progressBar(null, 4), '[····]');

    assert.equal(
      table([
        ['a', 'bb'],
        ['ccc', 'd'],
      ]),
      'a    bb\nccc  d',
    );
    const t = taskTable([task({ progress: 42.4, created_at: '2026-01-01T11:59:00Z' })], now);
    assert.deepEqual(t.split('\n'), [
      'ID        TYPE      STATUS   PROGRESS  AGE',
      'task_abc  generate  running  42%       1m',
    ]);

    assert.equal(describeEnd(task({ status: 'completed' })), 'completed');
    assert.equal(
      describeEnd(task({ status: 'cancelled', cancel: { reason: 'deadline', requested_at: '' } })),
      'cancelled (deadline)',
    );
    assert.equal(
      describeEnd(task({ status: 'failed', error: { code: 'model_error', message: 'upstream 500' } })),
      'failed: model_error: upstream 500',
    );
  });
});

describe('TaskView (Ink)', () => {
  it('shows output rows, a progress bar, the Ctrl+C hint, and the ending', async () => {
    const model = new TaskViewModel(task({ status: 'queued' }), 30, 'Ctrl+C cancels the task.');
    const r = render(React.createElement(TaskView, { model }));
    const frame = (): string => stripVTControlCharacters(r.lastFrame() ?? '');
    const tick = (): Promise<void> => new Promise((res) => setTimeout(res, 30));
    try {
      await tick();
      assert.match(frame(), /^task_abc {2}generate {2}queued {2}\[·+\]$/m);
      let seq = 0;
      model.apply({ type: 'task.started', data: {}, task_id: 'task_abc', seq: ++seq });
      model.apply({
        type: 'output.delta',
        data: { text: 'hello world, this is streamed ' },
        task_id: 'task_abc',
        seq: ++seq,
      });
      model.apply({ type: 'output.delta', data: { text: 'text\n\nmore' }, task_id: 'task_abc', seq: ++seq });
      model.apply({
        type: 'task.progress',
        data: { progress: 50, message: '2/4 parts' },
        task_id: 'task_abc',
        seq: ++seq,
      });
      await tick();
      const lines = frame()
        .split('\n')
        .map((l) => l.trimEnd());
      assert.deepEqual(lines, [
        'hello world, this is streamed',
        'text',
        '', // a blank output line stays on screen
        'more',
        `task_abc  generate  running  [${'█'.repeat(12)}${'░'.repeat(12)}]  50%  2/4 parts`,
        'Ctrl+C cancels the task.',
      ]);
      model.apply({ type: 'task.cancelling', data: { reason: 'user' }, task_id: 'task_abc', seq: ++seq });
      await tick();
      assert.match(frame(), /task_abc {2}generate {2}cancelling/);
      model.finish(
        task({ status: 'cancelled', progress: 50, cancel: { reason: 'user', requested_at: '' }, output_text: 'x' }),
      );
      await tick();
      assert.deepEqual(
        frame()
          .split('\n')
          .map((l) => l.trimEnd()),
        ['hello world, this is streamed', 'text', '', 'more', 'task_abc  generate  cancelled (user)'],
      );
    } finally {
      r.unmount();
    }
  });
});
