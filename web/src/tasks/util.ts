// Small helpers shared by the task views.
import type { TaskStatus } from '../../../src/client/index.ts';

export const ACTIVE_STATUSES: TaskStatus[] = ['queued', 'running', 'cancelling'];
export const isActive = (s: TaskStatus): boolean => ACTIVE_STATUSES.includes(s);
export const shortId = (id: string): string => id.replace(/^task_/, '').slice(0, 8);
