import { describe, expect, it } from 'vitest';
import type { RawClient } from './helpers/raw-client.js';
import { useRedisNodes } from './helpers/redis-nodes.js';

describe('three lockwire nodes on one redis-server', () => {
  const fixture = useRedisNodes('nodes');

  /** Three nodes; client i connects to node i % 3. */
  async function connect(count: number): Promise<RawClient[]> {
    const servers = await fixture.startNodes(3);
    const clients: RawClient[] = [];
    for (let i = 0; i < count; i++) {
      const server = servers[i % 3];
      if (!server) throw new Error('no server');
      clients.push(await fixture.connect(server));
    }
    return clients;
  }

  it('grants waiters on different nodes in arrival order, handing over on release, terminate and clean close', async () => {
    const [a, b, c, d] = await connect(4);
    if (!a || !b || !c || !d) throw new Error('clients');
    const first = await a.request({ op: 'acquire', key: 'room' });
    expect(first).toMatchObject({ acquired: true });
    b.send({ op: 'acquire', id: 'b', key: 'room' });
    expect(await b.next((m) => m.type === 'queued')).toMatchObject({ position: 1 });
    c.send({ op: 'acquire', id: 'c', key: 'room' });
    expect(await c.next((m) => m.type === 'queued')).toMatchObject({ position: 2 });
    d.send({ op: 'acquire', id: 'd', key: 'room' });
    expect(await d.next((m) => m.type === 'queued')).toMatchObject({ position: 3 });

    await a.request({ op: 'release', key: 'room' });
    const gb = await b.reply('b');
    expect(gb).toMatchObject({ acquired: true });
    b.terminate();
    const gc = await c.reply('c');
    expect(gc).toMatchObject({ acquired: true });
    await c.close();
    const gd = await d.reply('d');
    expect(gd).toMatchObject({ acquired: true });

    const tokens = [first, gb, gc, gd].map((r) => r.token as number);
    expect([...tokens].sort((x, y) => x - y)).toEqual(tokens);
    expect(new Set(tokens).size).toBe(4);
    expect(await a.request({ op: 'status', key: 'room' })).toMatchObject({ holders: [{ session: d.session }], queue: [] });
  });

  it('shows every node the same table and the same watch events', async () => {
    const [a, b, w] = await connect(3);
    if (!a || !b || !w) throw new Error('clients');
    const snapshot = await w.request({ op: 'watch', prefix: 'doc:' });
    expect(snapshot).toMatchObject({ ok: true, locks: [], truncated: false });
    await a.request({ op: 'acquire', key: 'doc:1', meta: { who: 'a' } });
    await b.request({ op: 'acquire', key: 'doc:2', mode: 'shared' });
    expect(await w.nextEvent('doc:1', 'acquired')).toMatchObject({ session: a.session, meta: { who: 'a' }, holders: 1 });
    expect(await w.nextEvent('doc:2', 'acquired')).toMatchObject({ session: b.session, mode: 'shared' });
    for (const client of [a, b, w]) {
      const list = await client.request({ op: 'list', prefix: 'doc:' });
      expect((list.locks as Array<{ key: string }>).map((l) => l.key)).toEqual(['doc:1', 'doc:2']);
    }
  });
});
