import { assertArrayEquals, background, deferred, type WebLocksContext, type WebLocksSuite } from './harness.js';
import type { LockOptions } from '@lockwire/client';

/** Takes `name` and holds it until the returned function is called; resolves once granted. */
async function holdUntilReleased(t: WebLocksContext, name: string, options: LockOptions = {}): Promise<() => void> {
  const granted = deferred();
  const release = deferred();
  background(
    t.locks.request(name, options, () => {
      granted.resolve();
      return release.promise;
    }),
  );
  await granted.promise;
  return () => release.resolve();
}

/** The names of `names` in the order `list` shows them. */
function relevant(list: readonly { name: string }[], names: readonly string[]): string[] {
  return list.map((lock) => lock.name).filter((name) => names.includes(name));
}

/** Port of `web-locks/query-ordering.https.any.js`. */
export const queryOrderingSuite: WebLocksSuite = {
  name: 'query-ordering',
  cases: [
    {
      name: 'Requests appear in state in order made',
      async run(t) {
        const names = [t.uniqueName(), t.uniqueName(), t.uniqueName()] as const;
        const [res1, res2, res3] = names;
        // Never released.
        await Promise.all(names.map((name) => holdUntilReleased(t, name)));
        // Blocked.
        background(t.locks.request(res3, { mode: 'shared' }, () => undefined));
        background(t.locks.request(res2, { mode: 'shared' }, () => undefined));
        background(t.locks.request(res1, { mode: 'shared' }, () => undefined));
        const state = await t.locks.query();
        assertArrayEquals(relevant(state.pending, names), [res3, res2, res1], 'pending locks appear in order');
      },
    },
    {
      name: 'Held locks appear in state in order granted',
      async run(t) {
        const names = [t.uniqueName(), t.uniqueName(), t.uniqueName()] as const;
        const [res1, res2, res3] = names;
        const [release1, release2, release3] = await Promise.all(names.map((name) => holdUntilReleased(t, name)));
        // Blocked until the holders above are released.
        const requests = names.map((name) => holdUntilReleased(t, name));
        // Lets the requests above be queued first.
        await t.locks.request(t.uniqueName(), () => undefined);
        release2?.();
        release3?.();
        release1?.();
        await Promise.all(requests);
        const state = await t.locks.query();
        assertArrayEquals(relevant(state.held, names), [res2, res3, res1], 'held locks appear in granted order');
      },
    },
    {
      name: 'Held locks appear in state in order granted, including when stolen',
      async run(t) {
        const names = [t.uniqueName(), t.uniqueName(), t.uniqueName()] as const;
        const [res1, res2, res3] = names;
        // Held until stolen.
        await Promise.all(names.map((name) => holdUntilReleased(t, name)));
        await Promise.all([
          holdUntilReleased(t, res3, { steal: true }),
          holdUntilReleased(t, res1, { steal: true }),
          holdUntilReleased(t, res2, { steal: true }),
        ]);
        const state = await t.locks.query();
        assertArrayEquals(relevant(state.held, names), [res3, res1, res2], 'held locks appear in granted order');
      },
    },
  ],
};
