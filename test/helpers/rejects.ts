import * as assert from 'uvu/assert';

/** `p` rejects, with a message matching `re`. */
export async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: Error) => e,
  );
  assert.ok(err, `expected a rejection matching ${re}`);
  assert.match(err!.message, re);
}
