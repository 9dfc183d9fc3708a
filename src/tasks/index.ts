// The task types leash ships with; the runtime registers these at startup.

import type { AnyTaskDefinition } from '../runtime/define-task.ts';
import { analyze } from './analyze.ts';
import { chat } from './chat.ts';
import { completion } from './completion.ts';
import { generate } from './generate.ts';

export { analyze, chat, generate };

export const builtinTasks: AnyTaskDefinition[] = [generate, analyze, chat, completion];
