// Figures over the wire against one server process: request/reply
// throughput, round-trip latency, handoff and disconnect-to-grant latency,
// watch fan-out. Every timestamp is taken in this (the load generator's)
// process, so release -> grant spans two connections on one clock.
import { ratePerSecond, summarize } from '../lib/stats.mjs';
import { WireClient, closeAll, connectMany } from '../lib/wire-client.mjs';

/** Throws on an error reply, so that fast refusals (say, `rate_limited`) never pass for answers. */
function answered(message) {
  if (message.ok === false) throw new Error(`request refused: ${JSON.stringify(message)}`);
  return message;
}

/**
 * `connections` connections, each looping acquire+release on its own key
 * with one request in flight, while `measure(seconds)` is running: it
 * resolves requests answered per second over that slice. Between slices
 * the connections are idle, so slices of two servers can alternate.
 */
export async function openLoad(url, { connections, welcome }) {
  const clients = await connectMany(url, connections, { welcome });
  const loop = async (client, key, until) => {
    let done = 0;
    while (performance.now() < until) {
      answered(await client.request({ op: 'acquire', key }));
      answered(await client.request({ op: 'release', key }));
      done += 2;
    }
    return done;
  };
  return {
    measure: (seconds) => ratePerSecond(clients.length, seconds, (i, until) => loop(clients[i], `tp:${i}`, until)),
    close: () => closeAll(clients),
  };
}

/**
 * Throughput of `url` next to `anchorUrl`, in alternating slices, so that
 * load from outside the benchmark weighs on both alike. Resolves each
 * slice's requests per second, and the median of the per-round ratios.
 */
export async function pairedThroughput(url, anchorUrl, { connections, slices, sliceSeconds }) {
  const own = await openLoad(url, { connections, welcome: true });
  const anchor = await openLoad(anchorUrl, { connections, welcome: false });
  await own.measure(0.3);
  await anchor.measure(0.3);
  const ownRuns = [];
  const anchorRuns = [];
  for (let i = 0; i < slices; i++) {
    anchorRuns.push(await anchor.measure(sliceSeconds));
    ownRuns.push(await own.measure(sliceSeconds));
  }
  await own.close();
  await anchor.close();
  return { ownRuns, anchorRuns, ratios: ownRuns.map((x, i) => x / (anchorRuns[i] ?? Number.NaN)) };
}

/**
 * Round trips of a request on `echo` (the anchor of every latency figure):
 * `probe()` times one acquire frame and one release frame, resolving both.
 */
export function echoProbe(echo) {
  return async () => {
    const out = [];
    for (const op of ['acquire', 'release']) {
      const sent = echo.send({ op, key: 'probe' });
      out.push((await sent.answer).at - sent.sentAt);
    }
    return out;
  };
}

/**
 * One client, one request at a time: the round trip of each acquire and
 * release on `url`, each pair followed by the same frames on the echo
 * server (`echoUrl`), so both see the same outside load.
 */
export async function roundTrip(url, echoUrl, { samples, warmup = 200 }) {
  const client = await WireClient.connect(url, { welcome: true });
  const echo = await WireClient.connect(echoUrl);
  const probe = echoProbe(echo);
  const rtts = [];
  const echoes = [];
  for (let i = 0; i < samples + warmup; i++) {
    const key = `rtt:${i}`;
    const own = [];
    for (const op of ['acquire', 'release']) {
      const sent = client.send({ op, key });
      const { message, at } = await sent.answer;
      answered(message);
      own.push(at - sent.sentAt);
    }
    const anchor = await probe();
    if (i >= warmup) {
      rtts.push(...own);
      echoes.push(...anchor);
    }
  }
  await closeAll([client, echo]);
  return { own: summarize(rtts), echo: summarize(echoes) };
}

/**
 * A key held by one connection with `waiters` more queued behind it. Each
 * waiter's grant calls `granted(client, at)`; `requeue(client)` puts a
 * connection back at the tail of the queue.
 */
async function contendedKey(url, key, waiters) {
  let onGrant = null;
  const expectGrant = () => new Promise((resolve) => (onGrant = resolve));
  const requeue = async (client) => {
    const sent = client.send({ op: 'acquire', key });
    void sent.answer.then(({ message, at }) => {
      if (!message.ok || !message.acquired) throw new Error(`unexpected answer ${JSON.stringify(message)}`);
      onGrant?.({ client, at });
    });
    await sent.queued;
  };
  const holder = await WireClient.connect(url, { welcome: true });
  const held = await holder.request({ op: 'acquire', key });
  if (!held.acquired) throw new Error(`could not take ${key}: ${JSON.stringify(held)}`);
  const clients = await connectMany(url, waiters, { welcome: true });
  // Queued in batches: within a batch the arrival order is the server's, which
  // does not matter, since whoever is granted next is the next holder.
  for (let i = 0; i < clients.length; i += 200) await Promise.all(clients.slice(i, i + 200).map(requeue));
  return { holder, clients, expectGrant, requeue };
}

/**
 * Handoff latency: the holder sends `release`; the time until the queue's
 * head receives its grant. The released connection queues again at the tail,
 * so the queue keeps `waiters` entries. After each handoff `probe()` times
 * the echo anchor.
 */
export async function handoff(url, { waiters, samples, probe, warmup = 50 }) {
  const key = `handoff:${waiters}:${Math.random()}`;
  const { holder, clients, expectGrant, requeue } = await contendedKey(url, key, waiters);
  const latencies = [];
  const echoes = [];
  let current = holder;
  for (let i = 0; i < samples + warmup; i++) {
    const next = expectGrant();
    const release = current.send({ op: 'release', key });
    const { client, at } = await next;
    if (i >= warmup) latencies.push(at - release.sentAt);
    const released = (await release.answer).message;
    if (!released.ok) throw new Error(`release failed: ${JSON.stringify(released)}`);
    await requeue(current);
    current = client;
    const anchor = await probe();
    if (i >= warmup) echoes.push(...anchor);
  }
  await closeAll([holder, ...clients]);
  return { own: summarize(latencies), echo: summarize(echoes) };
}

/**
 * Disconnect-to-grant: the holder's socket is destroyed (no close frame);
 * the time until the queue's head receives its grant. A new connection
 * joins the tail each round. After each, `probe()` times the echo anchor
 * and, with `relay`, the same drop is timed on the bare relay anchor.
 */
export async function disconnectToGrant(url, { waiters, samples, probe, relay = null, warmup = 20 }) {
  const key = `disconnect:${Math.random()}`;
  const { holder, clients, expectGrant, requeue } = await contendedKey(url, key, waiters);
  const latencies = [];
  const echoes = [];
  const relayed = [];
  const all = [holder, ...clients];
  let current = holder;
  for (let i = 0; i < samples + warmup; i++) {
    const next = expectGrant();
    const cutAt = performance.now();
    current.ws.terminate();
    const { client, at } = await next;
    if (i >= warmup) latencies.push(at - cutAt);
    const fresh = await WireClient.connect(url, { welcome: true });
    all.push(fresh);
    await requeue(fresh);
    current = client;
    const anchor = await probe();
    if (i >= warmup) echoes.push(...anchor);
    if (relay) {
      const drop = await relay.sample();
      if (i >= warmup) relayed.push(drop.at - drop.cutAt);
    }
  }
  await closeAll(all);
  return { own: summarize(latencies), echo: summarize(echoes), ...(relay ? { relay: summarize(relayed) } : {}) };
}

/**
 * The bare relay anchor of disconnect-to-grant (`servers/relay.mjs`):
 * `waiters` connections wait; each `sample()` cuts the holder's socket
 * (`cut`, by default `terminate()`: destroyed, no close frame) and resolves
 * `performance.now()` before the cut (`cutAt`), after the cut's call
 * returned (`cutReturnedAt`) and at the FIFO head's frame (`at`); that head
 * then holds, while a new connection joins the tail, as in
 * `disconnectToGrant`.
 * @param {string} url
 * @param {number} waiters
 * @param {(ws: import('ws').WebSocket) => void} [cut]
 */
export async function relayDisconnect(url, waiters, cut = (ws) => ws.terminate()) {
  let onGone = null;
  const wait = async (client) => {
    client.onPush = (message, at) => {
      if (message.type === 'gone') onGone?.({ client, at });
    };
    await client.request({ op: 'wait' });
  };
  let current = await WireClient.connect(url);
  const all = [current];
  for (let i = 0; i < waiters; i++) {
    const client = await WireClient.connect(url);
    all.push(client);
    await wait(client);
  }
  return {
    async sample() {
      const next = new Promise((resolve) => (onGone = resolve));
      const cutAt = performance.now();
      cut(current.ws);
      const cutReturnedAt = performance.now();
      const { client, at } = await next;
      const fresh = await WireClient.connect(url);
      all.push(fresh);
      await wait(fresh);
      current = client;
      return { cutAt, cutReturnedAt, at };
    },
    close: () => closeAll(all),
  };
}

/** Opens `count` connections, each watching `prefix` (200 watch requests at a time). */
async function openWatchers(url, count, prefix) {
  const clients = await connectMany(url, count, { welcome: true });
  for (let i = 0; i < clients.length; i += 200) {
    await Promise.all(clients.slice(i, i + 200).map(async (c) => answered(await c.request({ op: 'watch', prefix }))));
  }
  return clients;
}

/**
 * Watch fan-out: `watchers` connections watch one prefix; one more
 * acquires and releases a key under it, one request at a time. Latency of
 * each event at each watcher from the moment the request was sent.
 * `onStart` and `onEnd` are awaited around the measured events (after the
 * warm-up, and before any connection closes), for the caller to read the
 * servers' CPU time. With `anchorUrl`
 * (the bare broadcast server, `bench/servers/broadcast.mjs`), as many
 * watchers there are sent, after each of lockwire's events, a frame of the
 * same text as lockwire's event, timed the same way: `anchor` then holds
 * those latencies, measured interleaved with lockwire's.
 */
export async function watchFanOut(url, { watchers, events, warmup = 10, anchorUrl = null, onStart = async () => {}, onEnd = async () => {} }) {
  const prefix = `fan:${Math.random()}:`;
  const clients = await openWatchers(url, watchers, prefix);
  // One acquire and release before the measured ones: every watcher gets both events parsed, and the
  // first is kept as lockwire sent it, for the anchor to send the same bytes.
  let frame = '';
  let pushes = 0;
  let allPushed = () => {};
  for (const client of clients) {
    client.onPush = (message) => {
      frame ||= JSON.stringify(message);
      if (++pushes === watchers) allPushed();
    };
  }
  const actor = await WireClient.connect(url, { welcome: true });
  for (const op of ['acquire', 'release']) {
    pushes = 0;
    const pushed = new Promise((resolve) => (allPushed = resolve));
    answered(await actor.request({ op, key: `${prefix}k` }));
    await pushed;
  }
  const fanOut = (sender, group) => {
    let arrivals = [];
    let remaining = 0;
    let allArrived = null;
    for (const client of group) {
      // Watchers only timestamp frames: parsing a thousand events here would
      // measure this process, not the server's fan-out.
      client.rawOnly = true;
      client.onRawFrame = (at) => {
        arrivals.push(at);
        if (--remaining === 0) allArrived?.();
      };
    }
    /** Sends one request, resolves each watcher's latency of the frame it caused. */
    return async (body) => {
      arrivals = [];
      remaining = group.length;
      const done = new Promise((resolve) => (allArrived = resolve));
      const sent = sender.send(body);
      const [, { message }] = await Promise.all([done, sent.answer]);
      answered(message);
      return arrivals.map((at) => at - sent.sentAt);
    };
  };
  const own = fanOut(actor, clients);
  let floor = null;
  let anchorClients = [];
  if (anchorUrl) {
    anchorClients = await connectMany(anchorUrl, watchers, {});
    await Promise.all(anchorClients.map((c) => c.request({ op: 'watch' })));
    const anchorActor = await WireClient.connect(anchorUrl);
    anchorClients.push(anchorActor);
    floor = fanOut(anchorActor, anchorClients.slice(0, watchers));
  }
  const latencies = [];
  const anchor = [];
  for (let i = 0; i < events + warmup; i++) {
    if (i === warmup) await onStart();
    const mine = await own({ op: i % 2 === 0 ? 'acquire' : 'release', key: `${prefix}k` });
    const bare = floor ? await floor({ op: 'send', frame }) : [];
    if (i >= warmup) {
      latencies.push(...mine);
      anchor.push(...bare);
    }
  }
  // After the last event of both servers and before any connection closes: a CPU window that ended
  // after the closes would count the anchor's 1,001 connection closes as fan-out work.
  await onEnd();
  await closeAll([actor, ...clients, ...anchorClients]);
  // eventsCaused: every acquire and release made on the watched key, so every event the server sent.
  return { ...summarize(latencies), events, watchers, eventsCaused: events + warmup + 2, frameBytes: Buffer.byteLength(frame), anchor: floor ? summarize(anchor) : null };
}

/**
 * Watch burst: `watchers` connections watch one prefix; each round a new
 * connection acquires `keys` keys under it and is then terminated, so that
 * one step of the server releases them all and each watcher is sent `keys`
 * events at once. Time from the cut to each watcher's last event.
 */
export async function watchBurst(url, { watchers, keys, rounds, warmup = 3 }) {
  const prefix = `burst:${Math.random()}:`;
  const clients = await openWatchers(url, watchers, prefix);
  // Per watcher: events still to come this phase, and when the last came.
  const left = new Map();
  const last = new Map();
  let remaining = 0;
  let allArrived = null;
  for (const client of clients) {
    client.rawOnly = true;
    client.onRawFrame = (at) => {
      last.set(client, at);
      const n = left.get(client) - 1;
      left.set(client, n);
      if (n === 0 && --remaining === 0) allArrived?.();
    };
  }
  /** Resolves once every watcher got `keys` more frames. */
  const expectAll = () => {
    for (const client of clients) left.set(client, keys);
    remaining = watchers;
    return new Promise((resolve) => (allArrived = resolve));
  };
  const latencies = [];
  for (let round = 0; round < rounds + warmup; round++) {
    const holder = await WireClient.connect(url, { welcome: true });
    const acquired = expectAll();
    const replies = [];
    for (let k = 0; k < keys; k++) replies.push(holder.send({ op: 'acquire', key: `${prefix}${k}` }).answer);
    for (const { message } of await Promise.all(replies)) answered(message);
    await acquired;
    const released = expectAll();
    const cutAt = performance.now();
    holder.ws.terminate();
    await released;
    if (round >= warmup) for (const client of clients) latencies.push(last.get(client) - cutAt);
  }
  await closeAll(clients);
  return { ...summarize(latencies), watchers, keys, rounds };
}

/** Opens `count` idle connections and resolves them (the caller measures, then closes them). */
export function idleConnections(url, count, welcome) {
  return connectMany(url, count, { welcome });
}
