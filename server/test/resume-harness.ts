import { expect } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { LockStore, SessionId } from '../src/store.js';
import { RawClient, sessionLog } from './server-harness.js';

/**
 * A memory store on a manual clock that records, in `order`, each
 * `closeSession` and its own `close`, and whose `status` (what a resume
 * reads) can be held at a gate once `hold()` was called: `reading` resolves
 * when a held status call arrives, `release(fail)` lets it go on (or reject
 * when `fail`). The gate's opener is pushed onto `gates`, so a teardown can
 * open the gates a failed test left shut and let its resume and server end.
 */
export function gatedStore(gates: Array<() => void>) {
  const clock = createManualClock(Date.now());
  const inner = createMemoryStore({ clock });
  const order: string[] = [];
  let holding = false;
  let arrived: () => void = () => undefined;
  const reading = new Promise<void>((resolve) => (arrived = resolve));
  let open: (fail: boolean) => void = () => undefined;
  const gate = new Promise<boolean>((resolve) => (open = resolve));
  gates.push(() => open(false));
  const store: LockStore = Object.assign(Object.create(inner) as LockStore, {
    start: (listener: Parameters<LockStore['start']>[0]) => inner.start(listener),
    status: async (key: string, viewer: SessionId | null) => {
      if (holding) {
        arrived();
        if (await gate) throw new Error('store unreachable');
      }
      return inner.status(key, viewer);
    },
    closeSession: async (...args: Parameters<LockStore['closeSession']>) => {
      order.push(`closeSession ${args[0]}`);
      return inner.closeSession(...args);
    },
    close: async () => {
      order.push('close');
      return inner.close();
    },
  });
  return {
    clock,
    store,
    order,
    reading,
    hold: () => void (holding = true),
    release: (fail = false) => open(fail),
  };
}

/**
 * A server with a 60 s session grace on a {@link gatedStore} (its opener on
 * `gates`), pushed onto `servers`, and a session that holds `k` and lost its
 * connection: in grace, to be resumed at `resumeUrl` (the server's URL and
 * `query`). Fails the calling test if the acquire is refused.
 */
export async function sessionInGrace(servers: LockServer[], gates: Array<() => void>) {
  const gated = gatedStore(gates);
  const log = sessionLog();
  const server = await createLockServer({
    port: 0,
    heartbeatInterval: 0,
    clock: gated.clock,
    store: gated.store,
    sessionGrace: 60_000,
    logger: log.logger,
  });
  servers.push(server);
  const { client, welcome } = await RawClient.connect(server.url);
  expect(await client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
  client.ws.terminate();
  await log.closed(1, 'the session to detach');
  const session = String(welcome.session);
  const query = `?session=${encodeURIComponent(session)}&resume=${encodeURIComponent(String(welcome.resume))}`;
  return { ...gated, server, session, query, resumeUrl: `${server.url}${query}` };
}
