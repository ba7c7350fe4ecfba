/**
 * `ocivirt` entry point: dispatches to a subcommand and turns errors into exit codes
 * (0 done, 2 bad input or usage with a one-line reason on stderr, 1 anything else).
 */
import { errorMessage, isInputError } from '../errors.js';
import type { Command, CommandIO } from './command.js';
import { COMMANDS } from './commands.js';

function toolHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'ocivirt: run OCI containers as libvirt-lxc domains',
    '',
    'Usage: ocivirt <command> [options] [arguments]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'ocivirt <command> --help' for a command's options.",
    'Exit codes: 0 done, 2 bad input or usage, 1 any other failure.',
    '',
  ].join('\n');
}

export async function main(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(toolHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    io.stdout.write('ocivirt 0.1.0\n');
    return 0;
  }
  const command: Command | undefined = COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.stderr.write(`ocivirt: unknown command '${name}' (see 'ocivirt --help')\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(command.usage.endsWith('\n') ? command.usage : command.usage + '\n');
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    if (isInputError(e)) {
      io.stderr.write(`ocivirt ${name}: ${errorMessage(e).replace(/\s*\n\s*/g, ' ')}\n`);
      return 2;
    }
    const msg = errorMessage(e).replace(/\s*\n\s*/g, ' ');
    io.stderr.write(`ocivirt ${name}: ${msg}\n`);
    if (process.env.OCIVIRT_DEBUG) io.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
    return 1;
  }
}

const io: CommandIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`ocivirt: ${errorMessage(e)}\n`);
    process.exitCode = 1;
  },
);
