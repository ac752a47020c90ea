import { assertArrayEquals, assertEquals, background, deferred, type WebLocksSuite } from './harness.js';
import type { Lock } from '@lockwire/client';

/** Port of `web-locks/mode-mixed.https.any.js`. */
export const modeMixedSuite: WebLocksSuite = {
  name: 'mode-mixed',
  cases: [
    {
      name: 'Lock requests are granted in order',
      async run(t) {
        const [a, b] = [t.uniqueName(), t.uniqueName()];
        const blocked = deferred();
        const granted: string[] = [];
        // Granted at once and held until unblocked.
        for (const n of [1, 2, 3]) {
          background(
            t.locks.request(a, { mode: 'shared' }, async () => {
              granted.push(`a-shared-${n}`);
              await blocked.promise;
            }),
          );
        }
        let exclusive: Lock | null = null;
        const exclusiveRequest = t.locks.request(a, (lock) => {
          granted.push('a-exclusive');
          exclusive = lock;
        });
        await t.locks.request(b, { mode: 'exclusive' }, () => void granted.push('b-exclusive'));
        assertArrayEquals(granted, ['a-shared-1', 'a-shared-2', 'a-shared-3', 'b-exclusive'], 'before unblocking');
        blocked.resolve();
        await exclusiveRequest;
        assertEquals((exclusive as Lock | null)?.mode, 'exclusive', 'mode');
        assertArrayEquals(
          granted,
          ['a-shared-1', 'a-shared-2', 'a-shared-3', 'b-exclusive', 'a-exclusive'],
          'after unblocking',
        );
      },
    },
  ],
};
