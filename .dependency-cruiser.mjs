// The import graph's rules, checked by `npm run lint` (depcruise). The floors, lowest first:
//
//   src/core                            wire types, error codes, ids, cancel vocabulary
//   src/store, src/models               persistence and model providers
//   src/runtime                         runs tasks
//   src/threads, src/tasks              what runs on the runtime
//   src/server, src/client, src/worker  HTTP/WebSocket server, SDK, remote worker SDK
//   src/cli, src/index.ts               the `leash` command and the package's entry
//
// A file imports its own floor and the floors below, never one above; no import
// circles; src/core imports nothing of leash; src/client and src/worker (which ship to
// browsers and other processes) import only src/core; the web UI reaches leash only
// through src/client.
//
// KNOWN_VIOLATIONS lists the imports that break a rule today and are being fixed on other
// branches (issue #17). Each entry exempts exactly one import (from → to) from exactly one
// rule; delete the entry once its fix is merged (lint fails on an entry that no longer
// matches a violation: scripts/check-known-violations.ts). Do not add to it: fix the import.

/** @type {Array<{ rule: string, from: string, to: string, why: string }>} */
export const KNOWN_VIOLATIONS = [];

const FLOORS = [
  ['core'],
  ['store', 'models'],
  ['runtime'],
  ['threads', 'tasks'],
  ['server', 'client', 'worker'],
  ['cli'],
];

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const dirs = (names) => `^src/(${names.join('|')})/`;
const exempt = (rule) =>
  KNOWN_VIOLATIONS.filter((v) => v.rule === rule).map((v) => ({
    from: `^${escape(v.from)}$`,
    to: `^${escape(v.to)}$`,
  }));

/** One rule per floor: nothing in it imports a floor above it (or the package entry). */
const floorRules = FLOORS.slice(0, -1).map((floor, i) => {
  const above = FLOORS.slice(i + 1).flat();
  const name = `no-import-up-from-${floor.join('-')}`;
  return {
    name,
    severity: 'error',
    comment: `src/${floor.join(', src/')} may import only their own floor and the ones below: not src/${above.join(', src/')} or src/index.ts.`,
    from: { path: dirs(floor) },
    to: { path: [dirs(above), '^src/index\\.ts$'] },
  };
});

/** Turns a rule into one that skips the known violations listed for it. */
const withExemptions = (rule) => {
  const skips = exempt(rule.name);
  if (skips.length === 0) return [rule];
  // depcruise has no per-pair exceptions: the rule is split into one that skips the
  // exempted sources and one per exempted source that skips only its exempted targets.
  const sources = [...new Set(skips.map((s) => s.from))];
  return [
    { ...rule, from: { ...rule.from, pathNot: [...(rule.from.pathNot ?? []), ...sources] } },
    ...sources.map((from, k) => ({
      ...rule,
      comment: `${rule.comment} (known-violation exemptions for ${from}; entry ${k + 1})`,
      from: { ...rule.from, path: from },
      to: {
        ...rule.to,
        pathNot: [...(rule.to.pathNot ?? []), ...skips.filter((s) => s.from === from).map((s) => s.to)],
      },
    })),
  ];
};

/** @type {import('dependency-cruiser').IConfiguration} */
/** The rules as they are, without the known violations' exemptions (scripts/check-known-violations.ts). */
export const RULES = [
  {
    name: 'no-circular',
    severity: 'error',
    comment: 'No import circles: pull what both sides need into a lower file.',
    from: { path: '^src/' },
    to: { circular: true },
  },
  {
    name: 'core-imports-nothing-of-leash',
    severity: 'error',
    comment: 'src/core is the ground floor: it imports only src/core and packages.',
    from: { path: '^src/core/' },
    to: { path: '^src/', pathNot: '^src/core/' },
  },
  ...floorRules,
  {
    name: 'client-imports-only-core',
    severity: 'error',
    comment: 'src/client ships to browsers: it imports only src/client and src/core.',
    from: { path: '^src/client/' },
    to: { path: '^src/', pathNot: ['^src/client/', '^src/core/'] },
  },
  {
    name: 'worker-imports-only-core',
    severity: 'error',
    comment: 'src/worker runs in other processes: it imports only src/worker and src/core.',
    from: { path: '^src/worker/' },
    to: { path: '^src/', pathNot: ['^src/worker/', '^src/core/'] },
  },
  {
    name: 'web-only-through-client',
    severity: 'error',
    comment: 'The web UI reaches leash only through the client SDK (src/client) and src/core.',
    from: { path: '^web/src/' },
    to: { path: '^src/', pathNot: ['^src/client/', '^src/core/'] },
  },
  {
    name: 'src-imports-no-tests',
    severity: 'error',
    comment: 'Shipped code does not import tests, benchmarks or examples.',
    from: { path: '^src/' },
    to: { path: '^(test|bench|examples)/' },
  },
];

export default {
  forbidden: RULES.flatMap(withExemptions),
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['leash-source', 'import', 'types', 'default'],
    },
  },
};
