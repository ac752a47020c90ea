import { assert, assertArrayEquals, type WebLocksSuite } from './harness.js';

/** Port of `web-locks/mode-shared.https.any.js`. */
export const modeSharedSuite: WebLocksSuite = {
  name: 'mode-shared',
  cases: [
    {
      name: 'Lock requests are granted in order',
      async run(t) {
        const [a, b, c] = [t.uniqueName(), t.uniqueName(), t.uniqueName()];
        const granted: number[] = [];
        const logGrant = (n: number) => () => void granted.push(n);
        await Promise.all(
          [a, b, c, a, b, c].map((name, i) => t.locks.request(name, { mode: 'shared' }, logGrant(i + 1))),
        );
        assertArrayEquals(granted, [1, 2, 3, 4, 5, 6], 'grant order');
      },
    },
    {
      name: 'Shared locks are not exclusive',
      async run(t) {
        const a = t.uniqueName();
        let acquired = false;
        let acquiredAgain = false;
        await t.locks.request(a, { mode: 'shared' }, async () => {
          acquired = true;
          // Blocked forever if the lock were not shared.
          await t.locks.request(a, { mode: 'shared' }, () => {
            acquiredAgain = true;
          });
        });
        assert(acquired, 'first lock acquired');
        assert(acquiredAgain, 'second lock acquired');
      },
    },
    {
      name: 'Shared locks are not exclusive (separate connections)',
      async run(t) {
        const a = t.uniqueName();
        const other = await t.connect();
        let acquiredAgain = false;
        await t.locks.request(a, { mode: 'shared' }, async () => {
          await other.locks.request(a, { mode: 'shared' }, () => {
            acquiredAgain = true;
          });
        });
        assert(acquiredAgain, 'the other client shares the lock');
      },
    },
  ],
};
