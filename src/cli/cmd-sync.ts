/** `ocivirt sync --once`: one reconcile pass, then exit (non-zero when an entry failed). */
import { UsageError } from '../errors.js';
import { withLibvirt } from '../libvirt/adapter.js';
import { syncOnce } from '../reconcile/sync.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';
import { formatPlan, RECONCILE_FLAGS, RECONCILE_FLAGS_USAGE, reconcileSetup } from './cmd-plan.js';
import { printable } from './printable.js';

const usage = `Usage: ocivirt sync --once --spool DIR [--state DIR] [--uri URI] [--config FILE]

Runs one reconcile pass and exits: every spool entry becomes its domain (defined, redefined
when it changed, started on creation when the start policy or the annotation
org.ocivirt.start says so), and domains ocivirt made for entries no longer in the spool are
stopped and undefined (remove policy 'undefine') or kept ('keep'). Domains without ocivirt's
metadata are never touched. A pass over an unchanged spool changes nothing. Prints what was
done and a summary line; the per-entry status is written to <state>/status.json.

Options:
  --once          run one pass and exit (the watching form is 'ocivirt daemon')
${RECONCILE_FLAGS_USAGE}

Exit codes: 0 every entry in step, 1 some entry failed (listed) or libvirt unavailable,
2 bad usage or configuration.
`;

export const syncCommand: Command = {
  name: 'sync',
  summary: 'run one reconcile pass (spool -> libvirt) and exit',
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values } = parseCommandArgs('sync', argv, { ...RECONCILE_FLAGS, once: { type: 'boolean' } }, { min: 0, max: 0 });
    if (!values.once) throw new UsageError("only 'sync --once' exists; the continuous form is 'ocivirt daemon'");
    const { config, opts } = await reconcileSetup('sync', values, io);
    return withLibvirt(config.uri, { logger: opts.log }, async (port) => {
      const r = await syncOnce(port, opts);
      const acted = r.results.filter((x) => x.item.action !== 'nothing');
      if (acted.length) io.stdout.write(formatPlan(acted.map((x) => x.item)) + '\n');
      for (const f of r.failed) io.stderr.write(`failed: ${printable(f.item.domain || '-')} (entry ${printable(f.item.entry)}): ${printable(String(f.error))}\n`);
      for (const k of r.results.filter((x) => x.ok && x.item.action === 'nothing' && x.item.handEdit))
        io.stdout.write(`kept: ${printable(k.item.domain)} was changed in libvirt by hand (driftPolicy keep)\n`);
      for (const p of r.results.filter((x) => x.pending))
        io.stdout.write(`pending: ${printable(p.item.domain)} is running; the new definition applies at its next start\n`);
      const count = (a: string) => r.results.filter((x) => x.ok && x.item.action === a).length;
      io.stdout.write(
        `sync: ${count('create')} created, ${count('update')} updated, ${count('start')} started, ${count('delete')} deleted, ${count('nothing')} unchanged, ${r.failed.length} failed (${r.durationMs} ms)\n`,
      );
      return r.failed.length ? 1 : 0;
    });
  },
};
