import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { LockServer } from '@lockwire/server';
import { BARRIER } from '../server/src/redis/sync-barrier.js';
import type { Frame, RawClient } from './helpers/raw-client.js';
import { startNodesAt, useRedisNodes } from './helpers/redis-nodes.js';
import { startTapProxy } from './helpers/tap-proxy.js';

// A session W on the watching node sends a watch while it already watches:
// the same prefix again, or a second prefix overlapping the first. The new
// watch reads its snapshot key by key, then waits for a barrier marker it
// publishes to its node's own channel. The watching node reaches Redis
// through a proxy that holds the connection that publishes that marker,
// from the marker on, while the test changes keys through another node: the
// watching node hears those steps (W's first watch delivers them) before the
// new snapshot's reads are done. An observer on the watching node tells the
// test when it heard them.

/** A proxy to Redis that can hold the connection publishing the next barrier marker, from that marker on. */
interface MarkerGate {
  readonly url: string;
  /** Holds, from the next barrier marker on, what its connection sends Redis; resolves once the marker came. */
  stopAtMarker(): Promise<void>;
  /** Sends Redis what the held connection held, in order, and carries its bytes again. */
  open(): void;
  /**
   * Holds, from the next barrier marker on, what Redis sends the connection
   * that marker comes back on (the node's pub/sub one); resolves once `count`
   * markers are held.
   */
  holdReturns(count: number): Promise<void>;
  /** Hands the node what `holdReturns` held, in one write, and carries the bytes from Redis again. */
  openReturns(): void;
  close(): void;
}

interface Link {
  readonly up: Socket;
  readonly down: Socket;
  /** Bytes held on their way to Redis; null while they flow. */
  held: Buffer[] | null;
  /** Bytes held on their way from Redis; null while they flow. */
  heldReturns: Buffer[] | null;
}

/** A hold of returning markers: how many to wait for, and who waits. */
interface ReturnsHold {
  readonly count: number;
  readonly caught: () => void;
}

async function startMarkerGate(targetPort: number): Promise<MarkerGate> {
  let armed: (() => void) | null = null;
  let stopped: Link | null = null;
  let returnsArmed: ReturnsHold | null = null;
  let returnsStopped: Link | null = null;
  let returnsCount = 0;
  // A RESP argument travels between CRLFs: the marker is its own argument of a PUBLISH, and of the message it comes back in.
  const marker = `\r\n${BARRIER}`;
  const markersIn = (chunk: Buffer) => chunk.toString('latin1').split(marker).length - 1;
  const proxy = await startTapProxy(targetPort, ({ client, upstream }) => {
    const link: Link = { up: upstream, down: client, held: null, heldReturns: null };
    client.on('data', (chunk: Buffer) => {
      if (armed && chunk.includes('PUBLISH') && chunk.includes(marker)) {
        const caught = armed;
        armed = null;
        link.held = [];
        stopped = link;
        caught();
      }
      if (link.held) link.held.push(chunk);
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (returnsArmed && !link.heldReturns && markersIn(chunk) > 0) {
        link.heldReturns = [];
        returnsStopped = link;
      }
      if (!link.heldReturns) return void client.write(chunk);
      link.heldReturns.push(chunk);
      returnsCount += markersIn(chunk);
      if (returnsArmed && returnsCount >= returnsArmed.count) {
        const { caught } = returnsArmed;
        returnsArmed = null;
        caught();
      }
    });
  });
  return {
    url: proxy.url,
    stopAtMarker: () => new Promise<void>((caught) => (armed = caught)),
    open: () => {
      const link = stopped;
      stopped = null;
      if (!link) return;
      const held = link.held ?? [];
      link.held = null;
      for (const chunk of held) link.up.write(chunk);
    },
    holdReturns: (count) =>
      new Promise<void>((caught) => {
        returnsCount = 0;
        returnsArmed = { count, caught };
      }),
    openReturns: () => {
      const link = returnsStopped;
      returnsStopped = null;
      if (!link) return;
      const held = link.heldReturns ?? [];
      link.heldReturns = null;
      link.down.write(Buffer.concat(held));
    },
    close: () => proxy.close(),
  };
}

describe('Redis store: a session watching again while its node hears other nodes change keys', () => {
  const nodes = useRedisNodes('rwpend');
  const servers: LockServer[] = [];
  const gates: MarkerGate[] = [];
  let run = 0;

  afterEach(async () => {
    for (const gate of gates) {
      gate.open();
      gate.openReturns();
    }
    await Promise.all(servers.splice(0).map((server) => server.close()));
    for (const gate of gates.splice(0)) gate.close();
  });

  /**
   * The watching node (through a gate) and another node straight to Redis,
   * in a namespace of their own; W and an observer of `k` on the watching
   * node, W watching `firstPrefix`.
   */
  async function watchingNode(firstPrefix: string) {
    const gate = await startMarkerGate(nodes.redis.port);
    gates.push(gate);
    const namespace = `rwpend${process.pid}y${++run}`;
    const [watching, other] = await startNodesAt([gate.url, nodes.redis.url], { namespace, nodeTtl: 3000 }, servers);
    if (!watching || !other) throw new Error('the nodes did not start');
    const observer = await nodes.connect(watching);
    const w = await nodes.connect(watching);
    expect(await observer.request({ op: 'watch', prefix: 'k' })).toMatchObject({ ok: true });
    expect(await w.request({ op: 'watch', prefix: firstPrefix })).toMatchObject({ ok: true });
    return { gate, other, observer, w };
  }

  /** Sends W's watch of `prefix` and resolves, with its id, once its snapshot's reads are done and its barrier is held. */
  async function watchHeldAtBarrier(gate: MarkerGate, w: RawClient, prefix: string): Promise<number> {
    const caught = gate.stopAtMarker();
    const id = w.id();
    w.send({ op: 'watch', id, prefix });
    await caught;
    return id;
  }

  /** W's messages strictly between `from` and `to`, as `event <key> <event>` or `<type> <id>`. */
  const between = (w: RawClient, from: Frame, to: Frame) =>
    w.messages
      .slice(w.indexOf(from) + 1, w.indexOf(to))
      .map((m) => (m.type === 'event' ? `event ${String(m.key)} ${String(m.event)}` : `${m.type} ${String(m.id)}`));

  /**
   * X holds `kA`; W watches `firstPrefix`, then `k`. The new snapshot reads
   * `kA` (held by X); then, before its barrier, X releases `kA` and Y
   * acquires `k0`, so the snapshot reads `k0` (held by Y) as a key its
   * buffered events name. Returns what the snapshot shows, the events W
   * gets before it, and those after it up to the pong of a ping sent then.
   */
  async function watchWhileKeysChange(firstPrefix: string) {
    const { gate, other, observer, w } = await watchingNode(firstPrefix);
    const x = await nodes.connect(other);
    const y = await nodes.connect(other);
    expect(await x.request({ op: 'acquire', key: 'kA' })).toMatchObject({ acquired: true });
    const id = await watchHeldAtBarrier(gate, w, 'k');
    expect(await x.request({ op: 'release', key: 'kA' })).toMatchObject({ released: true });
    expect(await y.request({ op: 'acquire', key: 'k0' })).toMatchObject({ acquired: true });
    await observer.nextEvent('k0', 'acquired');
    gate.open();
    const snapshot = await w.reply(id);
    const pong = await w.request({ op: 'ping' });
    const who = (session: unknown) => (session === x.session ? 'X' : session === y.session ? 'Y' : String(session));
    const shown = (snapshot.locks as Frame[]).map((lock) => `${String(lock.key)} ${(lock.holders as Frame[]).map((h) => who(h.session)).join()}`);
    const events = (from: number, to: number) =>
      w.messages
        .slice(from, to)
        .filter((m) => m.type === 'event')
        .map((e) => `${String(e.key)} ${String(e.event)} ${who(e.session)} holders=${String(e.holders)}`);
    return { shown, before: events(0, w.indexOf(snapshot)), after: events(w.indexOf(snapshot) + 1, w.indexOf(pong)) };
  }

  it('watching a watched prefix again sends no event of a step its fresh snapshot shows, and misses none between the snapshots', async () => {
    const { shown, after, before } = await watchWhileKeysChange('k');
    // The snapshot read kA before X released it and k0 after Y acquired it.
    expect(shown).toEqual(['k0 Y', 'kA X']);
    expect(after).toEqual(['kA released X holders=0']);
    // Y's acquire of k0 is between the two snapshots: it goes before the new one.
    expect(before).toEqual(['kA acquired X holders=1', 'k0 acquired Y holders=1']);
  });

  it('a second watch overlapping a watched prefix sends no event of a step its snapshot shows, and the first watch misses none', async () => {
    const { shown, after, before } = await watchWhileKeysChange('');
    expect(shown).toEqual(['k0 Y', 'kA X']);
    expect(after).toEqual(['kA released X holders=0']);
    expect(before).toEqual(['kA acquired X holders=1', 'k0 acquired Y holders=1']);
  });

  it('an unwatch sent while a watch of the same prefix again reads its snapshot stops the stream: no event follows its reply', async () => {
    const { gate, other, observer, w } = await watchingNode('k');
    const x = await nodes.connect(other);
    const id = await watchHeldAtBarrier(gate, w, 'k');
    const unwatched = await w.request({ op: 'unwatch', prefix: 'k' });
    expect(await x.request({ op: 'acquire', key: 'k1' })).toMatchObject({ acquired: true });
    await observer.nextEvent('k1', 'acquired');
    gate.open();
    await w.reply(id);
    const pong = await w.request({ op: 'ping' });
    expect(between(w, unwatched, pong)).toEqual([`reply ${id}`]);
  });

  it('a ping is answered after an event the session is owed while another watch of the session reads its snapshot', async () => {
    const { gate, other, observer, w } = await watchingNode('');
    const x = await nodes.connect(other);
    const id = await watchHeldAtBarrier(gate, w, 'k');
    expect(await x.request({ op: 'acquire', key: 'kA' })).toMatchObject({ acquired: true });
    // The watching node heard the acquire: W's watch of "" owes it to W.
    await observer.nextEvent('kA', 'acquired');
    const pingId = w.id();
    w.send({ op: 'ping', id: pingId });
    gate.open();
    const pong = await w.reply(pingId);
    await w.reply(id);
    const eventsOfKey = (frames: Frame[]) => frames.filter((m) => m.type === 'event' && m.key === 'kA').map((e) => e.event);
    expect(eventsOfKey(w.messages.slice(0, w.indexOf(pong)))).toEqual(['acquired']);
    expect(eventsOfKey(w.messages)).toEqual(['acquired']);
  });

  it('watches of a watched prefix again are answered in request order, each with its snapshot, when the later one has its snapshot first', async () => {
    const { gate, other, observer, w } = await watchingNode('k');
    const x = await nodes.connect(other);
    const y = await nodes.connect(other);
    expect(await x.request({ op: 'acquire', key: 'kA' })).toMatchObject({ acquired: true });
    const start = await w.nextEvent('kA', 'acquired');
    // The second watch reads kA held by X. Before its barrier X releases kA
    // and Y acquires kB, a key it did not read: it reads kB after its barrier.
    const second = await watchHeldAtBarrier(gate, w, 'k');
    expect(await x.request({ op: 'release', key: 'kA' })).toMatchObject({ released: true });
    expect(await y.request({ op: 'acquire', key: 'kB' })).toMatchObject({ acquired: true });
    await observer.nextEvent('kB', 'acquired');
    // The third reads the table as it is now. Both barriers come back in one
    // read: the third's snapshot is done while the second still reads kB.
    const third = w.id();
    w.send({ op: 'watch', id: third, prefix: 'k' });
    const returned = gate.holdReturns(2);
    gate.open();
    await returned;
    gate.openReturns();
    const [secondReply, thirdReply] = [await w.reply(second), await w.reply(third)];
    const pong = await w.request({ op: 'ping' });
    const who = (session: unknown) => (session === x.session ? 'X' : session === y.session ? 'Y' : String(session));
    const shown = (reply: Frame) => (reply.locks as Frame[]).map((lock) => `${String(lock.key)} ${(lock.holders as Frame[]).map((h) => who(h.session)).join()}`);
    expect(shown(secondReply)).toEqual(['kA X', 'kB Y']);
    expect(shown(thirdReply)).toEqual(['kB Y']);
    // Applied in order, the replies and events end on the third snapshot.
    expect(between(w, start, pong)).toEqual(['event kB acquired', `reply ${second}`, 'event kA released', `reply ${third}`]);
  });
});
