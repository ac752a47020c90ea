import { assert, assertArrayEquals, type WebLocksSuite } from './harness.js';

/** Port of `web-locks/query-empty.https.any.js`. */
export const queryEmptySuite: WebLocksSuite = {
  name: 'query-empty',
  cases: [
    {
      name: 'query() returns dictionary with empty arrays when no locks are held',
      async run(t) {
        const state = await t.locks.query();
        assert(Object.hasOwn(state, 'pending'), 'state has `pending`');
        assert(Array.isArray(state.pending), '`pending` is an array');
        assertArrayEquals(state.pending, [], 'pending is empty');
        assert(Object.hasOwn(state, 'held'), 'state has `held`');
        assert(Array.isArray(state.held), '`held` is an array');
        assertArrayEquals(state.held, [], 'held is empty');
      },
    },
  ],
};
