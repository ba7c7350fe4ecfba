/** Work serialised per key within this process. */

const queues = new Map<string, Promise<unknown>>();

/** Work on one key (a shared image, a volume), one after another in this process: the unpack lock would refuse a second at once. */
export function oneAtATime<T>(key: string, work: () => Promise<T>): Promise<T> {
  const prev = queues.get(key) ?? Promise.resolve();
  const result = prev.then(work, work);
  const tail = result.catch(() => undefined);
  queues.set(key, tail);
  void tail.then(() => {
    if (queues.get(key) === tail) queues.delete(key);
  });
  return result;
}
