/** A mistake in how leash was invoked (bad flag, unsafe bind): exit code 2, no stack. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
