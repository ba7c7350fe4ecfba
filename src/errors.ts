/**
 * Errors a person can act on. `UsageError` and `InputError` mean "bad input or usage"
 * (CLI exit 2); anything else is an internal or environment failure (exit 1).
 */

/** The command line itself is wrong (unknown flag, missing argument). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * The input is wrong: names the file (or entry) and, where there is one, the field or tar entry.
 * The message is one line: `<file>: <field>: <reason>`.
 */
export class InputError extends Error {
  override name = 'InputError';
  readonly file: string | undefined;
  readonly field: string | undefined;
  readonly reason: string;
  constructor(reason: string, where: { file?: string; field?: string } = {}) {
    super([where.file, where.field, reason].filter((p) => p !== undefined && p !== '').join(': '));
    this.file = where.file;
    this.field = where.field;
    this.reason = reason;
  }
  /** The same error, told about the file it came from (when it did not know yet). */
  inFile(file: string): InputError {
    return this.file === undefined ? new InputError(this.reason, { file, field: this.field }) : this;
  }
}

export function isInputError(e: unknown): e is InputError | UsageError {
  return e instanceof InputError || e instanceof UsageError;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A value as it appears in a one-line message: JSON, cut short (hostile input may hold megabytes). */
export function shortJson(value: unknown, max = 80): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}
