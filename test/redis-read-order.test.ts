import { afterEach, describe, expect, it } from 'vitest';
import type { LockServer } from '@lockwire/server';
import type { Frame } from './helpers/raw-client.js';
import { startNodesAt, useRedisNodes } from './helpers/redis-nodes.js';
import { startPubSubGate, type PubSubGate } from './helpers/tap-proxy.js';

// A holds `k` through one node; S steals it through another. The first node
// reaches Redis through a gate that holds back what Redis sends on its
// pub/sub connection, so it hears the steal (the note that A lost `k`) only
// when the test lets it through. A request of A's sent after the steal was
// answered must be answered after that `lost`, as on the memory store: the
// node holds the answer back until it has heard every step the answer shows.

/** ms an answer given without the steal's note takes at most to arrive; well under the node's wait for a late step (1 s). */
const EARLY = 200;

describe('Redis store: a holder whose node hears a steal through another node late', () => {
  const nodes = useRedisNodes('rdord');
  const servers: LockServer[] = [];
  const gates: PubSubGate[] = [];
  let run = 0;

  afterEach(async () => {
    for (const gate of gates) gate.release();
    await Promise.all(servers.splice(0).map((server) => server.close()));
    for (const gate of gates.splice(0)) gate.close();
  });

  /** A on a node behind a gate, S on a node straight to Redis, in a namespace of their own; A holds `k`. */
  async function holderAndStealer({ nodeTtl }: { nodeTtl?: number } = {}) {
    const gate = await startPubSubGate(nodes.redis.port);
    gates.push(gate);
    const namespace = `rdord${process.pid}y${++run}`;
    const [slow, fast] = await startNodesAt([gate.url, nodes.redis.url], { namespace, nodeTtl }, servers);
    if (!slow || !fast) throw new Error('the nodes did not start');
    const a = await nodes.connect(slow);
    const s = await nodes.connect(fast);
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ acquired: true });
    return { gate, a, s, held };
  }

  /**
   * Sends `request` from A once S's steal of `k` was answered, with the
   * steal's note held back; lets the note through once the answer came or
   * had its chance to. Returns A's `lost` of `k` and the answer.
   */
  async function askAfterSteal(request: Record<string, unknown>, { releaseAfterSteal = false } = {}) {
    const { gate, a, s, held } = await holderAndStealer();
    gate.hold();
    expect(await s.request({ op: 'acquire', key: 'k', steal: true })).toMatchObject({ acquired: true });
    if (releaseAfterSteal) expect(await s.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true });
    const id = a.id();
    a.send({ ...request, id });
    const first = (m: Frame) => (m.type === 'reply' || m.type === 'queued') && m.id === id;
    // An answer given without the steal's note comes at once; one that waits for it comes after the note.
    const early = await a.next(first, { timeout: EARLY }).catch(() => null);
    gate.release();
    const lost = await a.nextLost('k', { timeout: 3000 });
    const answer = early ?? (await a.next(first, { timeout: 3000 }));
    expect(lost).toMatchObject({ reason: 'stolen', token: held.token });
    return { a, lost, answer };
  }

  for (const [name, request] of [
    ['release of the key', { op: 'release', key: 'k' }],
    ['extend of the key', { op: 'extend', key: 'k', holdTimeout: 5000 }],
    ['acquire of the key with acquireTimeout 0', { op: 'acquire', key: 'k', acquireTimeout: 0 }],
    ['acquire of the key that queues', { op: 'acquire', key: 'k' }],
    ['wait for the key with timeout 0', { op: 'wait', key: 'k', timeout: 0 }],
    ['ping', { op: 'ping' }],
  ] as const) {
    it(`hears lost (stolen) before the answer to its ${name} sent after the steal was answered`, async () => {
      const { a, lost, answer } = await askAfterSteal(request);
      expect(a.indexOf(lost), `answered before lost: ${JSON.stringify(answer)}`).toBeLessThan(a.indexOf(answer));
    });
  }

  it('hears lost (stolen) before the answer to its status of the key, which shows the stealer holding it', async () => {
    const { a, lost, answer } = await askAfterSteal({ op: 'status', key: 'k' });
    expect(answer).toMatchObject({ ok: true, locked: true, heldByYou: false });
    expect(a.indexOf(lost), `answered before lost: ${JSON.stringify(answer)}`).toBeLessThan(a.indexOf(answer));
  });

  it('hears lost (stolen) before the answer to its list of the key, which shows the stealer holding it', async () => {
    const { a, lost, answer } = await askAfterSteal({ op: 'list', prefix: 'k' });
    expect(answer).toMatchObject({ ok: true, locks: [{ key: 'k', heldByYou: false }], truncated: false });
    expect(a.indexOf(lost), `answered before lost: ${JSON.stringify(answer)}`).toBeLessThan(a.indexOf(answer));
  });

  it('hears lost (stolen) before the answer to its list that no longer finds the key, stolen and released since', async () => {
    const { a, lost, answer } = await askAfterSteal({ op: 'list', prefix: 'k' }, { releaseAfterSteal: true });
    expect(answer).toMatchObject({ ok: true, locks: [], truncated: false });
    expect(a.indexOf(lost), `answered before lost: ${JSON.stringify(answer)}`).toBeLessThan(a.indexOf(answer));
  });

  it('hears lost (stolen) before the snapshot of its watch of the key, which shows the stealer holding it', async () => {
    const { a, lost, answer } = await askAfterSteal({ op: 'watch', prefix: 'k' });
    expect(answer).toMatchObject({ ok: true, locks: [{ key: 'k', heldByYou: false }] });
    expect(a.indexOf(lost), `answered before lost: ${JSON.stringify(answer)}`).toBeLessThan(a.indexOf(answer));
  });

  it('hears lost (stolen) before the snapshot of its watch that no longer finds the key, stolen and released since', async () => {
    const { a, lost, answer } = await askAfterSteal({ op: 'watch', prefix: 'k' }, { releaseAfterSteal: true });
    expect(answer).toMatchObject({ ok: true, locks: [], truncated: false });
    expect(a.indexOf(lost), `answered before lost: ${JSON.stringify(answer)}`).toBeLessThan(a.indexOf(answer));
  });

  it('answers a status of the key within the wait for a late step when the steal is never heard, and the reconciliation then tells the holder lost', async () => {
    // A node TTL long enough that no heartbeat round finds the lost note before the test ends.
    const { gate, a, s, held } = await holderAndStealer({ nodeTtl: 60_000 });
    gate.hold();
    expect(await s.request({ op: 'acquire', key: 'k', steal: true })).toMatchObject({ acquired: true });
    // Held back for good: the node gives up on the steal's note after its wait (1 s) and asks Redis.
    expect(await a.request({ op: 'status', key: 'k' }, { timeout: 3000 })).toMatchObject({ locked: true, heldByYou: false });
    expect(await a.nextLost('k', { timeout: 3000 })).toMatchObject({ token: held.token });
  });

  it('answers a status of a key whose steps its node has heard at once while the node hears nothing from pub/sub', async () => {
    const { gate, a, s } = await holderAndStealer();
    expect(await s.request({ op: 'acquire', key: 'other' })).toMatchObject({ acquired: true });
    // A's ping returns once A's node has heard every step Redis ran before it, the acquire of `other` among them.
    await a.request({ op: 'ping' });
    gate.hold();
    // Nothing of `other` is behind on A's node: the answer waits for no note.
    expect(await a.request({ op: 'status', key: 'other' }, { timeout: EARLY })).toMatchObject({ locked: true, heldByYou: false });
  });
});
