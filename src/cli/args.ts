import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * Strict flag parsing for a subcommand: unknown flags and missing values become UsageError
 * (exit 2). `--help` is always accepted and reported as `help: true`.
 */
export function parseCommandArgs<O extends Options>(
  command: string,
  argv: string[],
  options: O,
  positionals: { min: number; max: number },
) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(`${command}: ${(e as Error).message.split('\n')[0]} (see 'ocivirt ${command} --help')`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const help = values.help === true;
  if (!help) {
    const n = parsed.positionals.length;
    if (n < positionals.min) throw new UsageError(`${command}: missing argument (see 'ocivirt ${command} --help')`);
    if (n > positionals.max)
      throw new UsageError(`${command}: unexpected argument '${parsed.positionals[positionals.max]}' (see 'ocivirt ${command} --help')`);
    for (const p of parsed.positionals)
      if (p === '') throw new UsageError(`${command}: an argument is empty (see 'ocivirt ${command} --help')`);
  }
  type Values = { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string };
  return { values: values as Values, positionals: parsed.positionals, help };
}
