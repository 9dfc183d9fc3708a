// Ink view of one task (`leash run`, `leash tasks watch` in a terminal): the
// output above, written once per finished row, and a live status line with a
// progress bar under it. No JSX (Node's type stripping has none): h = createElement.

import React, { useSyncExternalStore } from 'react';
import { Box, Static, Text } from 'ink';
import type { StaticProps } from 'ink';
import { describeEnd, progressBar } from '../format.ts';
import type { TaskViewModel, TaskViewState } from '../task-model.ts';

const h = React.createElement;
/** Ink's <Static> is generic; createElement cannot infer its item type. */
const StaticRows = Static as (props: StaticProps<string>) => React.ReactElement;

const STATUS_COLOR: Record<string, string> = {
  queued: 'gray',
  running: 'cyan',
  cancelling: 'yellow',
  completed: 'green',
  failed: 'red',
  cancelled: 'yellow',
};

export function statusLine(s: TaskViewState): string {
  if (s.ended) return `${s.id}  ${s.type}  ${describeEnd(s.ended)}`;
  const pct = s.progress === null ? '' : `  ${Math.round(s.progress)}%`;
  const msg = s.message ? `  ${s.message}` : '';
  return `${s.id}  ${s.type}  ${s.status}  ${progressBar(s.progress, 24)}${pct}${msg}`;
}

export function TaskView(props: { model: TaskViewModel }): React.ReactElement {
  const s = useSyncExternalStore(props.model.subscribe, props.model.getSnapshot);
  return h(
    Box,
    { flexDirection: 'column' },
    // <Static> renders each row once and never again: an output longer than the
    // screen scrolls like any program's output instead of being redrawn. An empty
    // Text has no height in Ink: a blank row is a space.
    h(StaticRows, { items: s.rows as string[], children: (row, i) => h(Text, { key: i }, row === '' ? ' ' : row) }),
    s.tail === '' ? null : h(Text, null, s.tail),
    h(Text, { color: STATUS_COLOR[s.status] ?? 'white', bold: s.ended !== null }, statusLine(s)),
    s.notice === null ? null : h(Text, { dimColor: true }, s.notice),
  );
}
