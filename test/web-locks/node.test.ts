import { afterEach, beforeEach, describe, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { LockClient } from '@lockwire/client';
import { runCase } from './harness.js';
import { suites } from './index.js';

let server: LockServer;

beforeEach(async () => {
  server = await createLockServer({ port: 0, heartbeatInterval: 0 });
});
afterEach(() => server.close());

const connect = () => LockClient.connect(server.url, { reconnect: false });

let index = 0;
for (const suite of suites) {
  describe(`web-locks/${suite.name}`, () => {
    for (const testCase of suite.cases) {
      const caseIndex = index++;
      it(testCase.name, () => runCase(connect, testCase, caseIndex));
    }
  });
}
