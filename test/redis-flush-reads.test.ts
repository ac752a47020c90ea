import type { LockServer } from '@lockwire/server';
import { afterEach, describe, expect, it } from 'vitest';
import type { Frame } from './helpers/raw-client.js';
import { RawClient } from './helpers/raw-client.js';
import { startNodesAt, useRedisNodes } from './helpers/redis-nodes.js';
import { flushAll, untilStateLossFound } from './helpers/redis-state-loss.js';

// Redis loses its state (a FLUSHALL, or a restart without persistence) while
// a session holds keys through a node that has not noticed yet: its node TTL
// is 10 s, so its own renew rounds (every 3.3 s) do not find the flush before
// the holder's read does. A read by the holder that shows its key free shows
// its hold gone: the holder must hear `lost` (revoked) before that answer, as
// before the answer of its release, extend, wait or acquire of the key, and
// only once, not again when the node finds the flush.

/** The `lost` messages `client` received before `reply`, sorted by key. */
function lostBefore(client: RawClient, reply: Frame): Frame[] {
  return client
    .received('lost')
    .filter((m) => client.indexOf(m) < client.indexOf(reply))
    .sort((x, y) => String(x.key).localeCompare(String(y.key)));
}

describe('Redis store: reads by a holder after a flush its node has not noticed yet', () => {
  const fixture = useRedisNodes('flrd');
  /** Nodes a test starts one after the other on a namespace of its own. */
  const late: LockServer[] = [];
  afterEach(async () => {
    await Promise.all(late.splice(0).map((node) => node.close()));
  });

  /** A node that does not find a flush on its own before the test's requests; a client of it. */
  async function holderNode(): Promise<RawClient> {
    const [node] = await fixture.startNodes(1, { nodeTtl: 10_000, commandTimeout: 500 });
    if (!node) throw new Error('node');
    return fixture.connect(node);
  }

  it('a holder whose status shows its own key free hears lost (revoked) once, before that answer', async () => {
    const a = await holderNode();
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    await flushAll(fixture.redis.url);
    const reply = await a.request({ op: 'status', key: 'k' });
    expect(reply).toMatchObject({ ok: true, locked: false, heldByYou: false });
    expect(lostBefore(a, reply)).toEqual([{ type: 'lost', key: 'k', token: held.token, reason: 'revoked' }]);
    // The node's own finding of the flush does not tell the holder a second time.
    await untilStateLossFound(a);
    expect(a.received('lost')).toHaveLength(1);
  });

  it('a holder whose list no longer shows its keys hears lost (revoked) for each of them once, before that answer', async () => {
    const a = await holderNode();
    const j = await a.request({ op: 'acquire', key: 'j' });
    const k = await a.request({ op: 'acquire', key: 'k' });
    expect([j, k]).toMatchObject([{ ok: true, acquired: true }, { ok: true, acquired: true }]);
    await flushAll(fixture.redis.url);
    const reply = await a.request({ op: 'list', prefix: '' });
    expect(reply).toMatchObject({ ok: true, locks: [], truncated: false });
    expect(lostBefore(a, reply)).toEqual([
      { type: 'lost', key: 'j', token: j.token, reason: 'revoked' },
      { type: 'lost', key: 'k', token: k.token, reason: 'revoked' },
    ]);
    await untilStateLossFound(a);
    expect(a.received('lost')).toHaveLength(2);
  });

  it('a holder whose list of a prefix no longer shows its key there hears lost (revoked) for it before that answer', async () => {
    const a = await holderNode();
    const held = await a.request({ op: 'acquire', key: 'app/k' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    await flushAll(fixture.redis.url);
    const reply = await a.request({ op: 'list', prefix: 'app/', limit: 1 });
    expect(reply).toMatchObject({ ok: true, locks: [], truncated: false });
    expect(lostBefore(a, reply)).toEqual([{ type: 'lost', key: 'app/k', token: held.token, reason: 'revoked' }]);
    await untilStateLossFound(a);
    expect(a.received('lost')).toHaveLength(1);
  });

  it('a holder whose status and list still show its hold hears no lost', async () => {
    const a = await holderNode();
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    expect(await a.request({ op: 'status', key: 'k' })).toMatchObject({ ok: true, locked: true, heldByYou: true });
    const listed = await a.request({ op: 'list', prefix: '' });
    expect(listed).toMatchObject({ ok: true, locks: [{ key: 'k', heldByYou: true }] });
    // Ordered after the reads on the same socket: any lost they caused came before it.
    expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
    expect(a.received('lost')).toEqual([]);
  });

  // Not a flush: a step this node has not heard yet. Node A starts after the key already has a
  // history in Redis and a watch there covers the key, so A records no version of the key when its
  // holder acquires it; a read must not take that for having heard every step of the key.
  for (const op of ['status', 'list'] as const) {
    it(`a holder whose key was stolen through another node hears lost (stolen), not revoked, before its ${op} shows the stealer, and its node keeps serving`, async () => {
      const namespace = `flrd${process.pid}steal${op}`;
      const [b] = await startNodesAt([fixture.redis.url], { namespace }, late);
      if (!b) throw new Error('node b');
      const onB = await fixture.connect(b);
      expect(await onB.request({ op: 'acquire', key: 'k' })).toMatchObject({ ok: true, acquired: true });
      expect(await onB.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
      const [a] = await startNodesAt([fixture.redis.url], { namespace }, late);
      if (!a) throw new Error('node a');
      // Free, the key is not in the watch's snapshot.
      const watcher = await fixture.connect(a);
      expect(await watcher.request({ op: 'watch', prefix: 'k' })).toMatchObject({ ok: true });
      const holder = await fixture.connect(a);
      const held = await holder.request({ op: 'acquire', key: 'k' });
      expect(held).toMatchObject({ ok: true, acquired: true });
      const thief = await fixture.connect(b);
      expect(await thief.request({ op: 'acquire', key: 'k', steal: true })).toMatchObject({ ok: true, acquired: true });
      const reply = await holder.request(op === 'status' ? { op, key: 'k' } : { op, prefix: 'k' });
      expect(reply).toMatchObject(
        op === 'status' ? { ok: true, locked: true, heldByYou: false } : { ok: true, locks: [{ key: 'k', heldByYou: false }] },
      );
      expect(lostBefore(holder, reply)).toEqual([{ type: 'lost', key: 'k', token: held.token, reason: 'stolen' }]);
      // A steal is no loss of Redis' state: the node stays healthy.
      expect(await holder.request({ op: 'acquire', key: 'other', acquireTimeout: 0 })).toMatchObject({ ok: true, acquired: true });
      expect(holder.received('lost')).toHaveLength(1);
    });
  }
});
