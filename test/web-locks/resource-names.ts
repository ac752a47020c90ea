import { assert, assertEquals, assertRejects, type WebLocksCase, type WebLocksSuite } from './harness.js';

function codePoints(s: string): string {
  return [...s].map((c) => `0x${c.charCodeAt(0).toString(16).toUpperCase()}`).join(' ');
}

const edgeCases: WebLocksCase[] = ['', 'abc\x00def', '\uD800', '\uDC00', '\uDC00\uD800', '\uFFFF'].map((name) => ({
  name: `DOMString: ${codePoints(name)}`,
  async run(t) {
    await t.locks.request(name, (lock) => {
      assertEquals(lock?.name, name, 'requested name matches granted name');
    });
    // The server saw the same key: another client finds it free afterwards and taken meanwhile.
    const other = await t.connect();
    await t.locks.request(name, async () => {
      assertEquals(await other.locks.request(name, { ifAvailable: true }, (lock) => lock), null, 'taken');
    });
  },
}));

/** Port of `web-locks/resource-names.https.any.js`. */
export const resourceNamesSuite: WebLocksSuite = {
  name: 'resource-names',
  cases: [
    ...edgeCases,
    {
      name: 'Resource names that are not valid UTF-16 are not mangled',
      async run(t) {
        // As a USVString, '\uD800' would become '\uFFFD' and the inner request would block.
        await t.locks.request('\uD800', async (lock) => {
          assertEquals(lock?.name, '\uD800', 'name kept');
          await t.locks.request('\uFFFD', (inner) => {
            assertEquals(inner?.name, '\uFFFD', 'distinct name');
          });
        });
      },
    },
    {
      name: 'Names cannot start with "-"',
      async run(t) {
        for (const name of ['-', '-foo']) {
          await assertRejects(t.locks.request(name, () => undefined), 'NotSupportedError', `name ${name}`);
        }
        let gotLock = false;
        await t.locks.request('x-anything', () => {
          gotLock = true;
        });
        assert(gotLock, 'names with an embedded "-" are accepted');
      },
    },
  ],
};
