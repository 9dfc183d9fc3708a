// Where `gguf:<name>` may point: a GGUF file inside the operator's LEASH_MODELS_DIR and
// nowhere else. A name that is absolute, has an empty, `.` or `..` segment, leads
// (through a symlink) out of the directory, is missing, or is not a GGUF file gets one
// answer, the same for all, that echoes no path and no file bytes: a caller learns
// nothing about the disk.

import { closeSync, constants, fstatSync, openSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath, sep } from 'node:path';
import { LeashError } from '../../core/errors.ts';

/**
 * The one answer for every name that is not a GGUF file inside the models directory:
 * the same code and words whether the name escapes, is missing or holds other bytes.
 */
export const notLoadable = (cause?: unknown): LeashError =>
  new LeashError(
    'model_unavailable',
    "Not a loadable model: there is no GGUF model by that name in this server's models directory.",
    cause === undefined ? {} : { cause },
  );

export const ggufOff = (): LeashError =>
  new LeashError(
    'model_unavailable',
    'gguf models are off on this server: the operator sets LEASH_MODELS_DIR to the directory of .gguf files to serve.',
  );

/** Throws unless `path` is a regular file that starts with the GGUF magic. */
export function assertGgufFile(path: string): void {
  // Not a FIFO or device (opening one could block or never end), then four bytes.
  if (!statSync(path).isFile()) throw new Error('not a regular file');
  const fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    if (!fstatSync(fd).isFile()) throw new Error('not a regular file');
    const magic = Buffer.alloc(4);
    if (readSync(fd, magic, 0, 4, 0) !== 4 || magic.toString('latin1') !== 'GGUF') throw new Error('no GGUF magic');
  } finally {
    closeSync(fd);
  }
}

const isInside = (root: string, path: string): boolean => path.startsWith(root.endsWith(sep) ? root : root + sep);

/**
 * `file` (a name from a request) → the real path of a GGUF file inside `dir`, or the
 * one `notLoadable` answer. Absolute names, empty, `.` and `..` segments, NUL and
 * backslashes are refused before the disk is touched; the rest by realpath + prefix check (symlinks
 * out of the directory included) and the file's magic.
 */
export function locateModelFile(dir: string | undefined, file: string): string {
  if (dir === undefined) throw ggufOff();
  if (
    file === '' ||
    isAbsolute(file) ||
    /[\0\\]/.test(file) ||
    // One spelling per model: no empty, `.` or `..` segments (`a//b`, `./a`, `a/`).
    file.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')
  ) {
    throw notLoadable();
  }
  try {
    const root = realpathSync(dir);
    const real = realpathSync(resolvePath(root, file));
    if (!isInside(root, real)) throw new Error('outside the models directory');
    assertGgufFile(real);
    return real;
  } catch (e) {
    throw notLoadable(e);
  }
}

/** The `.gguf` files at the top of the models directory, as `gguf:<name>` (for GET /v1/models). */
export function listModelFiles(dir: string | undefined): string[] {
  if (dir === undefined) return [];
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => (d.isFile() || d.isSymbolicLink()) && d.name.endsWith('.gguf'))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}
