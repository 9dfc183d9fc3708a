// Part of `npm run lint`: every entry of KNOWN_VIOLATIONS in .dependency-cruiser.mjs
// still names an import that breaks its rule. Once the import is fixed the entry would
// only hide the next one like it, so a stale entry is an error: delete it.

import { cruise, type ICruiseResult, type IViolation } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
// @ts-expect-error -- the config is plain JavaScript without types
import { KNOWN_VIOLATIONS, RULES } from '../.dependency-cruiser.mjs';

interface Known {
  rule: string;
  from: string;
  to: string;
}

const CONFIG = './.dependency-cruiser.mjs';
const options = await extractDepcruiseOptions(CONFIG);
const result = await cruise(
  ['src', 'web/src'],
  { ...options, validate: true, ruleSet: { ...options.ruleSet, forbidden: RULES } },
  undefined,
  { tsConfig: extractTSConfig('tsconfig.json') },
);
const violations: IViolation[] = (result.output as ICruiseResult).summary.violations;
// A circle is reported once, from one of its files: any edge of it counts.
const breaks = (k: Known, v: IViolation): boolean => {
  if (v.rule.name !== k.rule) return false;
  if (v.from === k.from && v.to === k.to) return true;
  const cycle = [v.from, ...(v.cycle ?? []).map((c) => (typeof c === 'string' ? c : c.name))];
  return cycle.some((f, i) => f === k.from && cycle[(i + 1) % cycle.length] === k.to);
};
const stale = (KNOWN_VIOLATIONS as Known[]).filter((k) => !violations.some((v) => breaks(k, v)));
for (const k of stale) {
  process.stderr.write(
    `${k.from} → ${k.to} (${k.rule}) is in KNOWN_VIOLATIONS (${CONFIG}) but no longer breaks the rule: delete its entry.\n`,
  );
}
if (stale.length > 0) process.exitCode = 1;
