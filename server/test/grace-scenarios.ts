import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../src/clock.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { LockStore } from '../src/store.js';
import { RawClient, within, type Frame } from './server-harness.js';

const GRACE = 5000;

/** Polls `check` until it holds (bounded), for state another connection changes. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  await within(
    (async () => {
      while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 5));
    })(),
    what,
  );
}

/**
 * Wraps a store so that a `status` call can be held back after the store
 * answered it, as a slow round trip would: `holdNext()` arms the next call;
 * `read` resolves once it has its answer, which it hands over on `release()`.
 */
function slowStatus() {
  let armed: { read: () => void; released: Promise<void> } | null = null;
  const wrap = (inner: LockStore): LockStore =>
    new Proxy(inner, {
      get(target, property, receiver) {
        if (property === 'status') {
          return async (...args: Parameters<LockStore['status']>) => {
            const answer = await target.status(...args);
            const held = armed;
            armed = null;
            if (held) {
              held.read();
              await held.released;
            }
            return answer;
          };
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  const holdNext = () => {
    let read: () => void = () => undefined;
    let release: () => void = () => undefined;
    const wasRead = new Promise<void>((resolve) => (read = resolve));
    armed = { read, released: new Promise<void>((resolve) => (release = resolve)) };
    return { read: wasRead, release };
  };
  return { wrap, holdNext };
}

/** The query that resumes the session of `welcome`. */
export function resumeQuery(welcome: Frame): string {
  return `?session=${encodeURIComponent(String(welcome.session))}&resume=${encodeURIComponent(String(welcome.resume))}`;
}

/**
 * The session grace suite, run against one store: locks kept during grace,
 * restored on resume, released after it, a wrong secret refused.
 */
export function describeGrace(name: string, makeStore: (clock: ManualClock) => Promise<LockStore>): void {
  describe(`session grace (${name})`, () => {
    const servers: LockServer[] = [];
    const clients: RawClient[] = [];

    afterEach(async () => {
      for (const client of clients.splice(0)) client.ws.terminate();
      await Promise.all(servers.splice(0).map((server) => server.close()));
    });

    async function start(wrap: (store: LockStore) => LockStore = (store) => store) {
      const clock = createManualClock(Date.now());
      const server = await createLockServer({
        port: 0,
        heartbeatInterval: 0,
        clock,
        store: wrap(await makeStore(clock)),
        sessionGrace: GRACE,
      });
      servers.push(server);
      const connect = async (query = '') => {
        const connection = await RawClient.connect(`${server.url}${query}`);
        clients.push(connection.client);
        return connection;
      };
      const holderOf = async (observer: RawClient, key: string) => {
        const status = await observer.request({ op: 'status', id: `status-${Math.random()}`, key });
        return (status.holders as Array<{ session: string }>)[0]?.session ?? null;
      };
      return { server, clock, connect, resumeQuery, holderOf };
    }

    it('announces resume, grace, resumed false and no held locks on a fresh session', async () => {
      const { connect } = await start();
      const { welcome } = await connect();
      expect(welcome).toMatchObject({ resume: expect.stringMatching(/^[\w-]{32}$/), grace: GRACE, resumed: false, held: [] });
    });

    it('keeps held locks through a disconnect, drops queued requests, and restores the locks on resume', async () => {
      const { connect, resumeQuery, holderOf } = await start();
      const { client: a, welcome } = await connect();
      const { client: b } = await connect();
      const grant = await a.request({ op: 'acquire', id: 1, key: 'k', holdTimeout: 60_000 });
      await a.request({ op: 'acquire', id: 2, key: 's', mode: 'shared' });
      await b.request({ op: 'acquire', id: 1, key: 'q' });
      a.send({ op: 'acquire', id: 3, key: 'q' });
      await a.next((f) => f.type === 'queued');
      await a.close();
      await until('the queued acquire to leave', async () => {
        const status = await b.request({ op: 'status', id: `q${Math.random()}`, key: 'q' });
        return (status.queue as unknown[]).length === 0;
      });
      expect(await holderOf(b, 'k')).toBe(welcome.session);
      expect(await b.request({ op: 'acquire', id: 2, key: 'k', acquireTimeout: 0 })).toMatchObject({ acquired: false });

      const { client: again, welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ session: welcome.session, resumed: true, grace: GRACE });
      expect(resumed.resume).not.toBe(welcome.resume);
      expect(resumed.held).toEqual([
        { key: 'k', mode: 'exclusive', token: grant.token, expiresAt: grant.expiresAt },
        { key: 's', mode: 'shared', token: expect.any(Number), expiresAt: null },
      ]);
      expect(await again.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true, token: grant.token });
      expect(await again.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ ok: true, released: true });
      expect(await again.request({ op: 'status', id: 3, key: 'q' })).toMatchObject({ heldByYou: false });
    });

    it('releases the locks when the grace runs out, and a late resume gets a fresh session', async () => {
      const { clock, connect, resumeQuery, holderOf } = await start();
      const { client: a, welcome } = await connect();
      const { client: b } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      await a.close();
      b.send({ op: 'acquire', id: 1, key: 'k' });
      await b.next((f) => f.type === 'queued');
      clock.advance(GRACE - 1);
      expect(await holderOf(b, 'k')).toBe(welcome.session);
      clock.advance(1);
      expect(await b.reply(1)).toMatchObject({ ok: true, acquired: true });
      const { welcome: late } = await connect(resumeQuery(welcome));
      expect(late).toMatchObject({ resumed: false, held: [] });
      expect(late.session).not.toBe(welcome.session);
    });

    it('refuses a wrong secret or an unknown session with a fresh session, leaving the grace running', async () => {
      const { connect, resumeQuery, holderOf } = await start();
      const { client: a, welcome } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      await a.close();
      const wrong = await connect(`?session=${String(welcome.session)}&resume=${'x'.repeat(32)}`);
      expect(wrong.welcome).toMatchObject({ resumed: false, held: [] });
      expect(wrong.welcome.session).not.toBe(welcome.session);
      const unknown = await connect(`?session=nobody&resume=${String(welcome.resume)}`);
      expect(unknown.welcome).toMatchObject({ resumed: false });
      expect(await holderOf(wrong.client, 'k')).toBe(welcome.session);
      const right = await connect(resumeQuery(welcome));
      expect(right.welcome).toMatchObject({ session: welcome.session, resumed: true, held: [{ key: 'k' }] });
    });

    it('closes a still open connection with 4001 when its session is resumed elsewhere', async () => {
      const { connect, resumeQuery } = await start();
      const { client: old, welcome } = await connect();
      const grant = await old.request({ op: 'acquire', id: 1, key: 'k' });
      const { client: fresh, welcome: resumed } = await connect(resumeQuery(welcome));
      expect(await within(old.closed, 'the superseded close')).toMatchObject({ code: 4001 });
      expect(resumed).toMatchObject({ session: welcome.session, resumed: true, held: [{ key: 'k', token: grant.token }] });
      expect(await fresh.request({ op: 'release', id: 1, key: 'k' })).toMatchObject({ released: true });
    });

    it('lets hold timeouts run during grace: an expired lock is not in held', async () => {
      const { clock, connect, resumeQuery } = await start();
      const { client: a, welcome } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'short', holdTimeout: 1000 });
      await a.request({ op: 'acquire', id: 2, key: 'long' });
      await a.close();
      clock.advance(1000);
      const { welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ resumed: true, held: [{ key: 'long' }] });
      expect(resumed.held).toHaveLength(1);
    });

    it('ends the session at once when its client closes with 1000, without grace', async () => {
      const { connect, resumeQuery } = await start();
      const { client: a, welcome } = await connect();
      const { client: b } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      b.send({ op: 'acquire', id: 1, key: 'k' });
      await b.next((f) => f.type === 'queued');
      a.ws.close(1000, 'done');
      // Granted with the clock standing still: no grace ran out.
      expect(await b.reply(1)).toMatchObject({ ok: true, acquired: true });
      const { welcome: late } = await connect(resumeQuery(welcome));
      expect(late).toMatchObject({ resumed: false, held: [] });
      expect(late.session).not.toBe(welcome.session);
    });

    it('keeps the grace after a drop without a close frame and after close codes other than 1000', async () => {
      const { server, connect, resumeQuery, holderOf } = await start();
      const { client: observer } = await connect();
      const endings: Array<[string, (client: RawClient) => void]> = [
        ['dropped', (client) => client.ws.terminate()],
        ['going away', (client) => client.ws.close(1001)],
        ['no status', (client) => client.ws.close()],
        ['application code', (client) => client.ws.close(4000, 'bye')],
      ];
      for (const [key, end] of endings) {
        const { client, welcome } = await connect();
        await client.request({ op: 'acquire', id: 1, key });
        const open = server.sessionCount();
        end(client);
        await within(client.closed, `the ${key} close`);
        await until(`the server to see the ${key} close`, async () => server.sessionCount() === open - 1);
        expect(await holderOf(observer, key)).toBe(welcome.session);
        const { welcome: resumed } = await connect(resumeQuery(welcome));
        expect(resumed).toMatchObject({ session: welcome.session, resumed: true, held: [{ key }] });
      }
    });

    it('leaves out of held a lock stolen while the resume reads what is held, and sends its lost after the welcome', async () => {
      const status = slowStatus();
      const { server, connect, resumeQuery } = await start(status.wrap);
      const { client: a, welcome } = await connect();
      const { client: b, welcome: thief } = await connect();
      const grant = await a.request({ op: 'acquire', id: 1, key: 'k' });
      a.ws.terminate();
      await until('the server to see the drop', async () => server.sessionCount() === 1);
      const reading = status.holdNext();
      const resuming = connect(resumeQuery(welcome));
      await within(reading.read, 'the resume to read the status of k');
      // The status said k is held by the session; now it is stolen, and the stealer is answered
      // only once the loss was reported, before the resumed connection opened.
      expect(await b.request({ op: 'acquire', id: 1, key: 'k', steal: true })).toMatchObject({ acquired: true });
      reading.release();
      const { client: again, welcome: resumed } = await resuming;
      expect(resumed).toMatchObject({ session: welcome.session, resumed: true, held: [] });
      expect(await again.request({ op: 'status', id: 1, key: 'k' })).toMatchObject({
        heldByYou: false,
        holders: [{ session: thief.session }],
      });
      expect(again.inbox.filter((frame) => frame.type === 'lost')).toEqual([
        { type: 'lost', key: 'k', token: grant.token, reason: 'stolen' },
      ]);
    });

    it('resumes a session that held nothing, and an old secret does not work twice', async () => {
      const { connect, resumeQuery } = await start();
      const { client: a, welcome } = await connect();
      await a.close();
      const { client: again, welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ session: welcome.session, resumed: true, held: [] });
      // Heard on the resumed connection, the client has read the welcome with the new secret.
      await again.request({ op: 'ping', id: 1 });
      await again.close();
      const { welcome: stale } = await connect(resumeQuery(welcome));
      expect(stale).toMatchObject({ resumed: false });
      const { welcome: current } = await connect(resumeQuery(resumed));
      expect(current).toMatchObject({ session: welcome.session, resumed: true });
    });

    it('takes the secret a resume presented until its client sends on the resumed connection, whose welcome it may never have read', async () => {
      const { server, connect, resumeQuery, holderOf } = await start();
      const { client: a, welcome } = await connect();
      const grant = await a.request({ op: 'acquire', id: 1, key: 'k' });
      const held = [{ key: 'k', token: grant.token }];
      a.ws.terminate();
      // Resumed, then silent: its welcome may be lost on a path that failed again, or come after its client gave up.
      const unread = await connect(resumeQuery(welcome));
      expect(unread.welcome).toMatchObject({ session: welcome.session, resumed: true, held });
      // The client knows only the secret it resumed with: it takes the session over from the silent connection.
      const retried = await connect(resumeQuery(welcome));
      expect(retried.welcome).toMatchObject({ session: welcome.session, resumed: true, held });
      expect(await within(unread.client.closed, 'the superseded close')).toMatchObject({ code: 4001 });
      // The secret of the welcome nobody answered on is spent.
      const spent = await connect(resumeQuery(unread.welcome));
      expect(spent.welcome).toMatchObject({ resumed: false });
      // Dropped silent again, the session is still resumed with that secret, from grace.
      retried.client.ws.terminate();
      await until('the server to see the drop', async () => server.sessionCount() === 1);
      expect(await holderOf(spent.client, 'k')).toBe(welcome.session);
      const third = await connect(resumeQuery(welcome));
      expect(third.welcome).toMatchObject({ session: welcome.session, resumed: true, held });
      // Heard on the resumed connection: only the secret of its welcome works from now on.
      await third.client.request({ op: 'ping', id: 1 });
      third.client.ws.terminate();
      expect((await connect(resumeQuery(welcome))).welcome).toMatchObject({ resumed: false });
      const last = await connect(resumeQuery(third.welcome));
      expect(last.welcome).toMatchObject({ session: welcome.session, resumed: true, held });
      expect(await holderOf(last.client, 'k')).toBe(welcome.session);
    });
  });
}
