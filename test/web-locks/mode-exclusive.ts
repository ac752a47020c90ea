import { assertArrayEquals, deferred, untilQueued, type WebLocksSuite } from './harness.js';

/** Port of `web-locks/mode-exclusive.https.any.js`. */
export const modeExclusiveSuite: WebLocksSuite = {
  name: 'mode-exclusive',
  cases: [
    {
      name: 'Lock requests are granted in order',
      async run(t) {
        const res = t.uniqueName();
        const granted: number[] = [];
        const logGrant = (n: number) => () => void granted.push(n);
        await Promise.all([1, 2, 3].map((n) => t.locks.request(res, logGrant(n))));
        assertArrayEquals(granted, [1, 2, 3], 'grant order');
      },
    },
    {
      name: 'Requests for distinct resources can be granted',
      async run(t) {
        const [a, b] = [t.uniqueName(), t.uniqueName()];
        const granted: number[] = [];
        const logGrant = (n: number) => () => void granted.push(n);
        let inner: Promise<unknown> | undefined;
        await t.locks.request(a, () => {
          // The first is blocked by the held lock, the second is granted at once.
          inner = Promise.all([t.locks.request(a, logGrant(1)), t.locks.request(b, logGrant(2))]);
        });
        await inner;
        assertArrayEquals(granted, [2, 1], 'grant order');
      },
    },
    {
      name: 'Lock requests are granted in order (separate connections)',
      async run(t) {
        const res = t.uniqueName();
        const granted: number[] = [];
        const others = [await t.connect(), await t.connect(), await t.connect()];
        const release = deferred();
        let held!: () => void;
        const holding = new Promise<void>((resolve) => (held = resolve));
        const first = t.locks.request(res, () => {
          held();
          return release.promise;
        });
        await holding;
        const waiting: Promise<unknown>[] = [];
        for (const [i, other] of others.entries()) {
          waiting.push(other.locks.request(res, () => void granted.push(i + 1)));
          // Each joins the server queue before the next asks.
          await untilQueued(t.client, res, i + 1);
        }
        release.resolve();
        await Promise.all([first, ...waiting]);
        assertArrayEquals(granted, [1, 2, 3], 'grant order across clients');
      },
    },
  ],
};

