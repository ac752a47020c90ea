import { createLockServer } from '@lockwire/server';
import type { ConformanceTarget } from './conformance-target.js';

/**
 * One lockwire server on port 0 with its default memory store, driven by the suite's
 * manual clock, without heartbeat. Each start has a fresh memory store, so a
 * second start on the same clock is a server restart with nothing persisted.
 */
export const memoryTarget: ConformanceTarget = {
  name: 'memory',
  manualClock: true,
  async start({ clock, limits, auth }) {
    const server = await createLockServer({
      port: 0,
      host: '127.0.0.1',
      clock,
      limits,
      heartbeatInterval: 0,
      ...(auth ? { auth } : {}),
    });
    return { urls: [server.url], close: () => server.close() };
  },
};
