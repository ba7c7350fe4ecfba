/** What every subcommand provides; `main.ts` dispatches to them by name. */
export interface Command {
  name: string;
  /** One line for `ocivirt --help`. */
  summary: string;
  /** Full usage text for `ocivirt <name> --help`. */
  usage: string;
  /** Returns the exit code. Throws UsageError / InputError for exit 2, anything else for 1. */
  run(argv: string[], io: CommandIO): Promise<number>;
}

export interface CommandIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
}
