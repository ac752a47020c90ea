import { describe, expect, it } from 'vitest';
import { allows, allowsPrefix, watchSnapshot, type Permissions } from '../src/permissions.js';
import { SECRET, connectWith, startServer, token } from './auth-harness.js';
import { sessionLog, within } from './server-harness.js';

async function authServer() {
  const { server, clock } = await startServer({ auth: { secret: SECRET } });
  const as = async (claims: Record<string, unknown>) => connectWith(server.url, await token(claims, { now: clock.now() }));
  return { server, clock, as };
}

const keysOf = (reply: Record<string, unknown>) => (reply.locks as Array<{ key: string }>).map((lock) => lock.key);

describe('key patterns', () => {
  it('match exact keys and prefixes ending in *', () => {
    expect(allows(['doc:*'], 'doc:1')).toBe(true);
    expect(allows(['doc:*'], 'doc:')).toBe(true);
    expect(allows(['doc:*'], 'doc')).toBe(false);
    expect(allows(['doc:1'], 'doc:1')).toBe(true);
    expect(allows(['doc:1'], 'doc:10')).toBe(false);
    expect(allows(['*'], '')).toBe(true);
    expect(allows([], 'a')).toBe(false);
    expect(allowsPrefix(['doc:*'], 'doc:4')).toBe(true);
    expect(allowsPrefix(['doc:*'], 'do')).toBe(false);
    expect(allowsPrefix(['doc:4'], 'doc:4')).toBe(false);
  });
});

describe('permissions per op', () => {
  it('allows acquire, release, extend and wait inside locks and refuses them outside with forbidden', async () => {
    const { as } = await authServer();
    const { client } = await as({ sub: 'ana', locks: ['doc:*'] });
    expect(await client.request({ op: 'acquire', id: 1, key: 'doc:1' })).toMatchObject({ ok: true, acquired: true });
    expect(await client.request({ op: 'extend', id: 2, key: 'doc:1', holdTimeout: 1000 })).toMatchObject({ ok: true });
    expect(await client.request({ op: 'wait', id: 3, key: 'doc:2' })).toMatchObject({ ok: true, free: true });
    expect(await client.request({ op: 'release', id: 4, key: 'doc:1' })).toMatchObject({ ok: true, released: true });
    for (const [id, request] of [
      { op: 'acquire', key: 'img:1' },
      { op: 'release', key: 'img:1' },
      { op: 'extend', key: 'img:1', holdTimeout: 5 },
      { op: 'wait', key: 'img:1' },
    ].entries()) {
      expect(await client.request({ ...request, id: 10 + id })).toMatchObject({
        ok: false,
        error: { code: 'forbidden', message: expect.stringContaining('img:1') },
      });
    }
  });

  it('changes nothing when a request is forbidden', async () => {
    const { as } = await authServer();
    const { client: owner } = await as({ sub: 'o', locks: ['*'], watch: ['*'] });
    const { client: other } = await as({ sub: 'x', locks: ['mine'] });
    await owner.request({ op: 'acquire', id: 1, key: 'k', holdTimeout: 60_000 });
    const before = await owner.request({ op: 'status', id: 2, key: 'k' });
    expect(await other.request({ op: 'release', id: 1, key: 'k' })).toMatchObject({ error: { code: 'forbidden' } });
    expect(await other.request({ op: 'acquire', id: 2, key: 'k', steal: true })).toMatchObject({ error: { code: 'forbidden' } });
    expect(await other.request({ op: 'revoke', id: 3, key: 'k' })).toMatchObject({ error: { code: 'forbidden' } });
    expect(await owner.request({ op: 'status', id: 3, key: 'k' })).toEqual({ ...before, id: 3 });
    expect(owner.inbox).toEqual([]);
  });

  it('lets a resumed session release every lock its welcome hands back, even outside its new locks', async () => {
    const sessions = sessionLog();
    const { server, clock } = await startServer({ auth: { secret: SECRET }, sessionGrace: 10_000, logger: sessions.logger });
    const as = async (claims: Record<string, unknown>, query = '') =>
      connectWith(server.url + query, await token(claims, { now: clock.now() }));
    const first = await as({ sub: 'ana', locks: ['*'] });
    expect(await first.client.request({ op: 'acquire', id: 1, key: 'x' })).toMatchObject({ acquired: true });
    first.client.ws.terminate();
    await sessions.closed(1, 'the server to see the drop');
    expect(server.sessionCount()).toBe(0);
    const query = `?session=${String(first.welcome.session)}&resume=${String(first.welcome.resume)}`;
    const { client, welcome } = await as({ sub: 'ana', locks: ['doc:*'], watch: ['*'] }, query);
    expect(welcome).toMatchObject({ resumed: true, held: [{ key: 'x' }] });
    // Keeping and extending it are still outside the new credentials; giving it up is not.
    expect(await client.request({ op: 'extend', id: 1, key: 'x', holdTimeout: 5 })).toMatchObject({
      error: { code: 'forbidden' },
    });
    expect(await client.request({ op: 'release', id: 2, key: 'x' })).toMatchObject({ ok: true, released: true });
    expect(await client.request({ op: 'status', id: 3, key: 'x' })).toMatchObject({ locked: false });
    expect(await client.request({ op: 'release', id: 4, key: 'x' })).toMatchObject({ error: { code: 'forbidden' } });
  });

  it('needs steal for an acquire with steal, besides locks', async () => {
    const { as } = await authServer();
    const { client: holder } = await as({ sub: 'h', locks: ['*'] });
    const { client: thief } = await as({ sub: 't', locks: ['*'], steal: ['s:*'] });
    await holder.request({ op: 'acquire', id: 1, key: 's:1' });
    await holder.request({ op: 'acquire', id: 2, key: 'n:1' });
    expect(await thief.request({ op: 'acquire', id: 1, key: 'n:1', steal: true })).toMatchObject({ error: { code: 'forbidden' } });
    expect(await thief.request({ op: 'acquire', id: 2, key: 's:1', steal: true })).toMatchObject({ ok: true, acquired: true });
    expect(await holder.next((f) => f.type === 'lost')).toMatchObject({ key: 's:1', reason: 'stolen' });
  });

  it('needs admin for revoke and watch for status', async () => {
    const { as } = await authServer();
    const { client: holder } = await as({ sub: 'h', locks: ['*'] });
    const { client: admin } = await as({ sub: 'a', admin: ['r:*'], watch: ['r:*'] });
    await holder.request({ op: 'acquire', id: 1, key: 'r:1' });
    await holder.request({ op: 'acquire', id: 2, key: 'q:1' });
    expect(await admin.request({ op: 'status', id: 1, key: 'q:1' })).toMatchObject({ error: { code: 'forbidden' } });
    expect(await admin.request({ op: 'status', id: 2, key: 'r:1' })).toMatchObject({ ok: true, locked: true });
    expect(await admin.request({ op: 'revoke', id: 3, key: 'q:1' })).toMatchObject({ error: { code: 'forbidden' } });
    expect(await admin.request({ op: 'revoke', id: 4, key: 'r:1' })).toMatchObject({ ok: true, revoked: 1 });
    expect(await holder.next((f) => f.type === 'lost')).toMatchObject({ key: 'r:1', reason: 'revoked' });
    expect(await holder.request({ op: 'status', id: 3, key: 'r:1' })).toMatchObject({ error: { code: 'forbidden' } });
  });

  it('answers status of a key the session holds without watch, and of no other key', async () => {
    const { as } = await authServer();
    const { client: ana, welcome } = await as({ sub: 'ana', locks: ['doc:*'] });
    const { client: ben } = await as({ sub: 'ben', locks: ['doc:*'] });
    const { client: cyd } = await as({ sub: 'cyd', locks: ['doc:*'] });
    const forbidden = { ok: false, error: { code: 'forbidden', message: expect.stringContaining('doc:1') } };
    expect(await ana.request({ op: 'status', id: 1, key: 'doc:1' })).toMatchObject(forbidden);
    expect(await ana.request({ op: 'acquire', id: 2, key: 'doc:1', mode: 'shared' })).toMatchObject({ acquired: true });
    expect(await ben.request({ op: 'acquire', id: 1, key: 'doc:1', mode: 'shared' })).toMatchObject({ acquired: true });
    cyd.send({ op: 'acquire', id: 1, key: 'doc:1' });
    await cyd.next((f) => f.type === 'queued');
    // A holder sees who shares the key with it and who waits behind it.
    const seen = await ana.request({ op: 'status', id: 3, key: 'doc:1' });
    expect(seen).toMatchObject({ ok: true, locked: true, mode: 'shared', heldByYou: true });
    expect((seen.holders as Array<{ session: string }>).map((h) => h.session)).toContain(String(welcome.session));
    expect(seen.holders).toHaveLength(2);
    expect(seen.queue).toHaveLength(1);
    // A session only queued for a key does not hold it; a key another session holds stays hidden.
    expect(await cyd.request({ op: 'status', id: 2, key: 'doc:1' })).toMatchObject(forbidden);
    expect(await ana.request({ op: 'status', id: 4, key: 'doc:2' })).toMatchObject({ error: { code: 'forbidden' } });
    // list still shows only what the watch patterns match, held keys or not.
    expect(await ana.request({ op: 'list', id: 5, prefix: 'doc:' })).toMatchObject({ ok: true, locks: [] });
    expect(await ana.request({ op: 'release', id: 6, key: 'doc:1' })).toMatchObject({ released: true });
    expect(await ana.request({ op: 'status', id: 7, key: 'doc:1' })).toMatchObject(forbidden);
  });

  it('lets anyone ping, cancel its own requests and unwatch', async () => {
    const { as } = await authServer();
    const { client: holder } = await as({ sub: 'h', locks: ['k'] });
    const { client: waiter } = await as({ sub: 'w', locks: ['k'] });
    await holder.request({ op: 'acquire', id: 1, key: 'k' });
    waiter.send({ op: 'acquire', id: 1, key: 'k' });
    await waiter.next((f) => f.type === 'queued');
    expect(await waiter.request({ op: 'cancel', id: 2, target: 1 })).toMatchObject({ ok: true, cancelled: true });
    expect(await waiter.request({ op: 'ping', id: 3 })).toMatchObject({ ok: true });
    expect(await waiter.request({ op: 'unwatch', id: 4, prefix: 'x' })).toMatchObject({ ok: true });
  });
});

describe('filtered views', () => {
  it('filters list to the watch patterns, exactly, even for a wider prefix', async () => {
    const { as } = await authServer();
    const { client: holder } = await as({ sub: 'h', locks: ['*'] });
    for (const [id, key] of ['a', 'doc:1', 'doc:2', 'doc:3', 'img:1', 'img:2', 'z'].entries()) {
      await holder.request({ op: 'acquire', id, key });
    }
    const { client: viewer } = await as({ sub: 'v', watch: ['doc:*', 'img:2', 'z'] });
    expect(keysOf(await viewer.request({ op: 'list', id: 1 }))).toEqual(['doc:1', 'doc:2', 'doc:3', 'img:2', 'z']);
    const limited = await viewer.request({ op: 'list', id: 2, limit: 2 });
    expect(keysOf(limited)).toEqual(['doc:1', 'doc:2']);
    expect(limited.truncated).toBe(true);
    expect(keysOf(await viewer.request({ op: 'list', id: 3, prefix: 'img' }))).toEqual(['img:2']);
    expect(keysOf(await viewer.request({ op: 'list', id: 4, prefix: 'doc:2' }))).toEqual(['doc:2']);
    const { client: blind } = await as({ sub: 'b', locks: ['*'] });
    expect(await blind.request({ op: 'list', id: 1 })).toMatchObject({ ok: true, locks: [], truncated: false });
  });

  it('accepts a watch wider than allowed and filters its snapshot and its events', async () => {
    const { as } = await authServer();
    const { client: holder } = await as({ sub: 'h', locks: ['*'] });
    await holder.request({ op: 'acquire', id: 1, key: 'doc:1' });
    await holder.request({ op: 'acquire', id: 2, key: 'hidden:1' });
    const { client: viewer } = await as({ sub: 'v', watch: ['doc:*'] });
    const snapshot = await viewer.request({ op: 'watch', id: 1, prefix: '' });
    expect(keysOf(snapshot)).toEqual(['doc:1']);
    await holder.request({ op: 'acquire', id: 3, key: 'hidden:2' });
    await holder.request({ op: 'acquire', id: 4, key: 'doc:2' });
    expect(await viewer.next((f) => f.type === 'event')).toMatchObject({ key: 'doc:2', event: 'acquired' });
    await holder.request({ op: 'release', id: 5, key: 'hidden:1' });
    expect(await viewer.request({ op: 'ping', id: 2 })).toMatchObject({ ok: true });
    expect(viewer.inbox).toEqual([]);
  });

  it('snapshots a watch of a wider prefix exactly as list does: hidden keys do not count against limit', async () => {
    const { as } = await authServer();
    const { client: holder } = await as({ sub: 'h', locks: ['*'] });
    for (const [id, key] of ['a1', 'a2', 'b1', 'b2', 'b3', 'c1'].entries()) {
      await holder.request({ op: 'acquire', id, key });
    }
    const { client: viewer } = await as({ sub: 'v', watch: ['b*', 'c1'] });
    const cases = [
      { prefix: '', limit: 2, keys: ['b1', 'b2'], truncated: true },
      { prefix: '', limit: 4, keys: ['b1', 'b2', 'b3', 'c1'], truncated: false },
      { prefix: '', limit: 10, keys: ['b1', 'b2', 'b3', 'c1'], truncated: false },
      { prefix: 'b', limit: 3, keys: ['b1', 'b2', 'b3'], truncated: false },
      { prefix: 'b', limit: 1, keys: ['b1'], truncated: true },
    ];
    let id = 0;
    for (const { prefix, limit, keys, truncated } of cases) {
      const listed = await viewer.request({ op: 'list', id: ++id, prefix, limit });
      const watched = await viewer.request({ op: 'watch', id: ++id, prefix, limit });
      expect({ keys: keysOf(watched), truncated: watched.truncated }).toEqual({ keys, truncated });
      expect({ keys: keysOf(listed), truncated: listed.truncated }).toEqual({ keys, truncated });
      await viewer.request({ op: 'unwatch', id: ++id, prefix });
    }
    const { client: narrow } = await as({ sub: 'n', watch: ['b*'] });
    const watched = await narrow.request({ op: 'watch', id: 1, prefix: '', limit: 2 });
    expect(keysOf(watched)).toEqual(['b1', 'b2']);
  });
});

describe('watchSnapshot', () => {
  const viewer: Permissions = { user: null, locks: [], watch: ['b*'], steal: [], admin: [], expiresAt: null };
  const lock = (key: string) => ({ key, locked: true, mode: 'exclusive' as const, holders: [], queue: [], heldByYou: false });

  it('says truncated when the store cut its snapshot, even with fewer visible locks than limit', () => {
    const cut = { locks: [lock('a1'), lock('b1')], truncated: true };
    expect(watchSnapshot(viewer, cut, 5)).toEqual({ locks: [lock('b1')], truncated: true });
    expect(watchSnapshot(viewer, { ...cut, truncated: false }, 5)).toEqual({ locks: [lock('b1')], truncated: false });
  });
});

describe('credentials expiring while connected', () => {
  it('reports each held lock lost with reason revoked, releases it, then closes with 1008', async () => {
    const { clock, as } = await authServer();
    const exp = Math.floor(clock.now() / 1000) + 30;
    const { client } = await as({ sub: 'ana', locks: ['*'], exp });
    const { client: waiter } = await as({ sub: 'bo', locks: ['*'], watch: ['*'] });
    const grant = await client.request({ op: 'acquire', id: 1, key: 'a' });
    await client.request({ op: 'acquire', id: 2, key: 'b', mode: 'shared' });
    waiter.send({ op: 'acquire', id: 1, key: 'a' });
    await waiter.next((f) => f.type === 'queued');
    client.send({ op: 'wait', id: 3, key: 'zzz' });
    clock.set(exp * 1000);
    const lost = [await client.next(), await client.next()];
    expect(lost).toEqual(
      expect.arrayContaining([
        { type: 'lost', key: 'a', token: grant.token, reason: 'revoked' },
        { type: 'lost', key: 'b', token: expect.any(Number), reason: 'revoked' },
      ]),
    );
    expect(await client.closed).toMatchObject({ code: 1008 });
    expect(await waiter.reply(1)).toMatchObject({ ok: true, acquired: true });
    expect(await waiter.request({ op: 'list', id: 2 })).toMatchObject({ locks: [{ key: 'a', holders: [{ session: expect.any(String) }] }] });
  });

  it('ends the session in one step as a disconnect does: its queued requests leave first, then watchers see its holds revoked', async () => {
    const { clock, as } = await authServer();
    const exp = Math.floor(clock.now() / 1000) + 30;
    const { client: x } = await as({ sub: 'x', locks: ['*'], exp });
    const { client: y } = await as({ sub: 'y', locks: ['*'], watch: ['*'] });
    expect(await y.request({ op: 'acquire', id: 1, key: 'b' })).toMatchObject({ acquired: true });
    const grant = await x.request({ op: 'acquire', id: 1, key: 'a' });
    x.send({ op: 'acquire', id: 2, key: 'b' });
    await x.next((f) => f.type === 'queued', 'x queued on b');
    await y.request({ op: 'watch', id: 2, prefix: '' });
    clock.set(exp * 1000);
    expect(await x.next((f) => f.type === 'lost', 'the lost of a')).toEqual({
      type: 'lost',
      key: 'a',
      token: grant.token,
      reason: 'revoked',
    });
    expect(await within(x.closed, 'the 1008 close')).toMatchObject({ code: 1008 });
    const first = await y.next((f) => f.type === 'event', 'the first event');
    const second = await y.next((f) => f.type === 'event', 'the second event');
    expect([first, second].map((e) => `${String(e.event)} ${String(e.key)}`)).toEqual(['dequeued b', 'revoked a']);
    expect(second).toMatchObject({ token: grant.token, holders: 0 });
    // Told once: the loss reached the client through the store's listener only.
    expect(x.inbox.filter((f) => f.type === 'lost')).toEqual([]);
  });

  it('counts the holds taken at expiry as lost revoked and logs each as lock lost', async () => {
    const lines: Array<{ msg: string; fields: object }> = [];
    const log = (fields: object, msg: string) => void lines.push({ msg, fields });
    const { server, clock } = await startServer({
      auth: { secret: SECRET },
      logger: { debug: log, info: log, warn: log, error: log },
    });
    const exp = Math.floor(clock.now() / 1000) + 30;
    const { client, welcome } = await connectWith(server.url, await token({ sub: 'ana', locks: ['*'], exp }, { now: clock.now() }));
    const grant = await client.request({ op: 'acquire', id: 1, key: 'a' });
    clock.set(exp * 1000);
    expect(await client.next()).toMatchObject({ type: 'lost', key: 'a', reason: 'revoked' });
    expect(await within(client.closed, 'the 1008 close')).toMatchObject({ code: 1008 });
    expect(await server.metrics.scrape()).toMatch(/^lockwire_locks_lost_total\{reason="revoked"\} 1$/m);
    expect(lines.filter((line) => line.msg === 'lock lost')).toEqual([
      { msg: 'lock lost', fields: { key: 'a', session: welcome['session'], token: grant.token, reason: 'revoked' } },
    ]);
  });

  it('with session grace on, ends the session at once and lets no resume take it back', async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET }, sessionGrace: 60_000 });
    const as = async (claims: Record<string, unknown>, query = '') =>
      connectWith(server.url + query, await token(claims, { now: clock.now() }));
    const exp = Math.floor(clock.now() / 1000) + 30;
    const { client, welcome } = await as({ sub: 'ana', locks: ['*'], exp });
    const { client: waiter } = await as({ sub: 'bo', locks: ['*'] });
    await client.request({ op: 'acquire', id: 1, key: 'a' });
    waiter.send({ op: 'acquire', id: 1, key: 'a' });
    await waiter.next((f) => f.type === 'queued');
    clock.set(exp * 1000);
    expect(await within(client.closed, 'the 1008 close')).toMatchObject({ code: 1008 });
    expect(await waiter.reply(1)).toMatchObject({ ok: true, acquired: true });
    const query = `?session=${String(welcome.session)}&resume=${String(welcome.resume)}`;
    const { welcome: late } = await as({ sub: 'ana', locks: ['*'] }, query);
    expect(late).toMatchObject({ resumed: false, held: [] });
    expect(late.session).not.toBe(welcome.session);
  });

  it('keeps a session open while its token is valid', async () => {
    const { clock, as } = await authServer();
    const exp = Math.floor(clock.now() / 1000) + 30;
    const { client } = await as({ sub: 'ana', locks: ['*'], exp });
    clock.advance(29_000);
    expect(await client.request({ op: 'acquire', id: 1, key: 'a' })).toMatchObject({ ok: true, acquired: true });
  });
});
