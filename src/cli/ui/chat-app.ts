// Ink view of `leash chat`: renders ChatSession snapshots and forwards keys to it.
// No JSX (Node's type stripping has none): h = createElement.

import React, { useEffect, useSyncExternalStore } from 'react';
import { Box, Static, Text, useApp, useInput, useStdout } from 'ink';
import type { StaticProps } from 'ink';
import type { ChatSession, ChatSnapshot, Entry } from '../chat-session.ts';

const h = React.createElement;
/** Ink's <Static> is generic; createElement cannot infer its item type. */
const StaticEntries = Static as (props: StaticProps<Entry>) => React.ReactElement;

function entryView(e: Entry): React.ReactElement {
  switch (e.kind) {
    case 'user':
      return h(
        Box,
        { key: e.id, marginTop: 1 },
        h(Text, { color: 'cyan', bold: true }, '› '),
        h(Text, { bold: true }, e.text),
      );
    case 'answer':
      // An empty Text has no height in Ink: a blank row is a space.
      return h(Box, { key: e.id, paddingLeft: 2 }, h(Text, null, e.text === '' ? ' ' : e.text));
    case 'mark':
      return h(Box, { key: e.id, paddingLeft: 2 }, h(Text, { color: e.tone === 'failed' ? 'red' : 'yellow' }, e.text));
    case 'error':
      return h(Box, { key: e.id, marginTop: 1 }, h(Text, { color: 'red' }, `! ${e.text}`));
    case 'note':
      return h(Box, { key: e.id, marginTop: 1 }, h(Text, { dimColor: true }, e.text));
  }
}

export function statusText(s: ChatSnapshot): string {
  const model = s.model ?? 'server default';
  const thread = s.threadId ?? 'new';
  const live = s.live === null ? '' : ` (+${s.live.deltas})`;
  return `${model} · thread ${thread} · tokens ${s.tokens.input} in / ${s.tokens.output} out${live}`;
}

function liveAnswer(s: ChatSnapshot): React.ReactElement | null {
  const l = s.live;
  if (l === null) return null;
  const stopping =
    l.phase === 'stopping' ? h(Text, { color: 'yellow' }, l.tail === '' ? '[stopping…]' : ' [stopping…]') : null;
  const waiting = l.phase === 'waiting' ? h(Text, { dimColor: true }, '…') : null;
  return h(Box, { paddingLeft: 2 }, h(Text, null, l.tail, waiting, stopping));
}

export function ChatApp(props: { session: ChatSession }): React.ReactElement {
  const { session } = props;
  const s = useSyncExternalStore(session.subscribe, session.getSnapshot);
  const { exit } = useApp();
  const stdout = useStdout().stdout as NodeJS.WriteStream;

  useEffect(() => {
    const onResize = (): void => session.setWidth(stdout.columns ?? 80);
    onResize();
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [session, stdout]);

  useEffect(() => {
    if (s.exitCode !== null) exit();
  }, [s.exitCode, exit]);

  useInput((input, key) => {
    if (key.ctrl && input === 'c') return session.ctrlC();
    if (key.ctrl && input === 'd') return session.ctrlD();
    if (key.ctrl && input === 'u') return session.clearLine();
    if (key.escape) return void session.stop();
    if (key.return) return void session.submit();
    // Many terminals send DEL for Backspace, which Ink reports as `delete`.
    if (key.backspace || key.delete) return session.backspace();
    if (key.ctrl || key.meta || key.tab || key.upArrow || key.downArrow || key.leftArrow || key.rightArrow) return;
    if (input === '') return;
    // Typed text and Enter can arrive in one chunk (fast typing, tmux send-keys): a
    // trailing CR/LF still means Enter. Newlines inside a chunk are a paste: spaces.
    const enter = /[\r\n]$/.test(input);
    session.type(enter ? input.replace(/[\r\n]+$/, '') : input);
    if (enter) void session.submit();
  });

  const over = s.exitCode !== null;
  return h(
    Box,
    { flexDirection: 'column' },
    h(StaticEntries, { items: s.entries as Entry[], children: entryView }),
    liveAnswer(s),
    s.pendingUser === null
      ? null
      : h(Box, { marginTop: 1 }, h(Text, { color: 'cyan' }, '› '), h(Text, { dimColor: true }, s.pendingUser)),
    over
      ? null
      : h(
          Box,
          { marginTop: 1 },
          h(Text, { color: 'cyan', bold: true }, '› '),
          h(Text, null, s.input, h(Text, { inverse: true }, ' ')),
        ),
    s.notice === null ? null : h(Text, { color: 'yellow' }, s.notice),
    over
      ? null
      : h(
          Text,
          { dimColor: true, wrap: 'truncate-end' },
          `${statusText(s)} · ${s.live === null ? 'Ctrl+C twice quits' : 'Esc stops the answer'}`,
        ),
  );
}
