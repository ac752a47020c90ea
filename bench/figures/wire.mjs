// Figures of lockwire against the bare ws echo anchor, on the memory store:
// throughput, round trip, handoff, disconnect-to-grant, watch fan-out.
import { ratio } from '../lib/stats.mjs';
import { disconnectToGrant, handoff, pairedThroughput, relayDisconnect, roundTrip, watchBurst, watchFanOut } from '../measure/wire.mjs';

const ms = 'ms';
const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

/** Request/reply throughput: slices alternating between echo and lockwire, same client code. */
async function throughputFigure(ctx) {
  const { sizes } = ctx;
  const echo = await ctx.shared('echo', 'echo');
  const lockwire = await ctx.shared('lockwire', 'lockwire');
  const paired = await pairedThroughput(lockwire.info.url, echo.info.url, {
    connections: sizes.connections,
    slices: sizes.throughputSlices,
    sliceSeconds: sizes.sliceSeconds,
  });
  const r = ratio(median(paired.ratios), 1);
  return {
    raw: paired,
    rows: [{
      figure: `throughput, acquire+release on distinct keys, ${sizes.connections} connections`,
      value: median(paired.ownRuns), unit: 'req/s', anchor: median(paired.anchorRuns), anchorLabel: 'ws echo',
      ratio: r, target: '>= 0.8x echo', met: r >= 0.8, note: `median of ${paired.ratios.length} alternating slices`,
    }],
  };
}

async function roundTripFigure(ctx) {
  const lockwire = await ctx.shared('lockwire', 'lockwire');
  const echo = await ctx.shared('echo', 'echo');
  const cpuBefore = await Promise.all([lockwire.call('cpu'), echo.call('cpu')]);
  const { own, echo: anchor } = await roundTrip(lockwire.info.url, echo.info.url, { samples: ctx.sizes.rttSamples });
  const cpuAfter = await Promise.all([lockwire.call('cpu'), echo.call('cpu')]);
  // Server CPU per request, user + system, in µs: what the server itself adds to a round trip.
  const requests = own.n;
  const [ownCpu, echoCpu] = [0, 1].map((i) => {
    const used = (cpuAfter[i].user + cpuAfter[i].system - cpuBefore[i].user - cpuBefore[i].system) / requests;
    return Math.round(used * 10) / 10;
  });
  const r50 = ratio(own.p50, anchor.p50);
  return {
    raw: { echo: anchor, lockwire: own, serverCpuMicrosPerRequest: { lockwire: ownCpu, echo: echoCpu } },
    rows: [
      { figure: 'round trip p50, one client', value: own.p50, unit: ms, anchor: anchor.p50, anchorLabel: 'echo p50', ratio: r50, target: '<= 1.3x echo', met: r50 <= 1.3 },
      { figure: 'round trip p99, one client', value: own.p99, unit: ms, anchor: anchor.p99, anchorLabel: 'echo p99', ratio: ratio(own.p99, anchor.p99), target: '-', met: null },
      { figure: 'server CPU per request (user+system), one client', value: ownCpu, unit: 'µs', anchor: echoCpu, anchorLabel: 'echo server', ratio: ratio(ownCpu, echoCpu), target: '-', met: null },
    ],
  };
}

async function handoffFigure(ctx) {
  const lockwire = await ctx.shared('lockwire', 'lockwire');
  const probe = await ctx.echoProbe();
  const raw = {};
  const rows = [];
  for (const waiters of ctx.sizes.handoffWaiters) {
    const { own, echo } = await handoff(lockwire.info.url, { waiters, samples: ctx.sizes.handoffSamples, probe });
    raw[waiters] = { own, echo };
    const r = ratio(own.p50, echo.p50);
    rows.push(
      { figure: `handoff p50, ${waiters} waiters`, value: own.p50, unit: ms, anchor: echo.p50, anchorLabel: 'echo RTT p50', ratio: r, target: '<= 1.5x echo RTT', met: r <= 1.5 },
      { figure: `handoff p99, ${waiters} waiters`, value: own.p99, unit: ms, anchor: echo.p99, anchorLabel: 'echo RTT p99', target: '<= 2 ms', met: own.p99 <= 2 },
    );
  }
  return { raw, rows };
}

async function disconnectFigure(ctx) {
  const lockwire = await ctx.shared('lockwire', 'lockwire');
  const probe = await ctx.echoProbe();
  // The same drop on a bare ws server that only tells the next in line: the floor of the figure
  // (the load generator's own teardown of the socket and the FIN's way to the server included).
  const relayServer = await ctx.shared('relay', 'relay');
  const relay = await relayDisconnect(relayServer.info.url, 10);
  const { own, echo, relay: bare } = await disconnectToGrant(lockwire.info.url, { waiters: 10, samples: ctx.sizes.disconnectSamples, probe, relay });
  await relay.close();
  const r = ratio(own.p50, echo.p50);
  return {
    raw: { own, echo, relay: bare },
    rows: [
      { figure: 'disconnect-to-grant p50 (holder terminated), 10 waiters', value: own.p50, unit: ms, anchor: echo.p50, anchorLabel: 'echo RTT p50', ratio: r, target: '<= 2x echo RTT', met: r <= 2, note: `p99 ${own.p99.toFixed(3)} ms; bare ws relay ${ratio(own.p50, bare.p50)}x (below)` },
      { figure: 'disconnect-to-message p50, bare ws relay (holder terminated), 10 waiting', value: bare.p50, unit: ms, anchor: echo.p50, anchorLabel: 'echo RTT p50', ratio: ratio(bare.p50, echo.p50), target: '- (the floor of the row above)', met: null, note: `p99 ${bare.p99.toFixed(3)} ms` },
    ],
  };
}

/**
 * Watch fan-out on a server that counts JSON serialisations of `event`
 * messages: one serialisation per event, however many watchers, and the p99
 * of each event's arrival at each watcher.
 */
async function watchFigure(ctx) {
  const server = await ctx.fresh('watch', 'lockwire', { env: { BENCH_COUNT_EVENT_ENCODES: '1' } });
  const { watchers, watchEvents } = ctx.sizes;
  const before = (await server.call('counters')).eventEncodes;
  // The server's CPU time over the measured events, per event sent to one watcher.
  let cpu0 = null;
  let cpu1 = null;
  const broadcast = await ctx.fresh('broadcast', 'broadcast');
  let anchorCpu0 = null;
  let anchorCpu1 = null;
  const w = await watchFanOut(server.info.url, {
    watchers,
    events: watchEvents,
    anchorUrl: broadcast.info.url,
    onStart: async () => ([cpu0, anchorCpu0] = await Promise.all([server.call('cpu'), broadcast.call('cpu')])),
    onEnd: async () => ([cpu1, anchorCpu1] = await Promise.all([server.call('cpu'), broadcast.call('cpu')])),
  });
  const encodes = (await server.call('counters')).eventEncodes - before;
  const perDelivery = (a, b) => (b.user + b.system - a.user - a.system) / (watchEvents * watchers);
  const cpuPerDelivery = perDelivery(cpu0, cpu1);
  const anchorCpuPerDelivery = perDelivery(anchorCpu0, anchorCpu1);
  await Promise.all([server.stop(), broadcast.stop()]);
  const perEvent = encodes / w.eventsCaused;
  return {
    raw: { ...w, encodes, encodesPerEvent: perEvent, cpuPerDelivery, anchorCpuPerDelivery },
    rows: [
      {
        figure: `watch fan-out, ${watchers} watchers, event latency p99`,
        value: w.p99,
        unit: ms,
        anchor: w.anchor.p99,
        anchorLabel: `bare ws broadcast of the same ${w.frameBytes}-byte frame, p99`,
        ratio: ratio(w.p99, w.anchor.p99),
        target: '<= 20 ms',
        met: w.p99 <= 20,
        note: `p50 ${w.p50.toFixed(2)} ms (broadcast ${w.anchor.p50.toFixed(2)} ms, ${ratio(w.p50, w.anchor.p50)}x); server CPU ${cpuPerDelivery.toFixed(1)} µs per event per watcher (broadcast ${anchorCpuPerDelivery.toFixed(1)} µs)`,
      },
      { figure: 'watch fan-out, JSON serialisations per event', value: perEvent, unit: '', target: '1 (not per watcher)', met: perEvent === 1 },
    ],
  };
}

/**
 * Watch burst: a holder of many keys disconnects, and every watcher is sent
 * an event per key in one step. Shows how the server writes many frames to
 * one connection at once (gathered per event-loop turn); no target.
 */
async function burstFigure(ctx) {
  const server = await ctx.fresh('burst', 'lockwire');
  const { burstWatchers: watchers, burstKeys: keys, burstRounds: rounds } = ctx.sizes;
  const b = await watchBurst(server.info.url, { watchers, keys, rounds });
  await server.stop();
  return {
    raw: b,
    rows: [
      { figure: `watch burst: a holder of ${keys} keys disconnects, ${watchers} watchers, time to each watcher's last event p50`, value: b.p50, unit: ms, target: '-', met: null, note: `p99 ${b.p99.toFixed(2)} ms; ${watchers * keys} events per burst` },
    ],
  };
}

/** The figures of this file, in run order. */
export const wireFigures = [
  { name: 'throughput', run: throughputFigure },
  { name: 'round-trip', run: roundTripFigure },
  { name: 'handoff', run: handoffFigure },
  { name: 'disconnect', run: disconnectFigure },
  { name: 'watch', run: watchFigure },
  { name: 'burst', run: burstFigure },
];
