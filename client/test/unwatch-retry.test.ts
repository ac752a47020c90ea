import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { LockClient, LockEvent } from '@lockwire/client';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';
import { pauseGate, settled } from './pause-gate.js';

vi.mock('../src/reconnect.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/reconnect.js')>();
  const { pauseGate: gate } = await import('./pause-gate.js');
  return { ...actual, pause: gate.wrap(actual.pause) };
});

type Frame = Record<string, unknown>;

let h: Harness;
let carol: LockClient;
let bob: LockClient;
/** Frames carol sent, and a way to await frames the server sends her (before her client reads them). */
let sent: Frame[];
let onFrame: ((frame: Frame) => void) | undefined;

beforeEach(async () => {
  // One frame per session at once, one more per ms of the manual clock; at most one watched prefix.
  h = await startHarness({ limits: { rateLimit: 1000, rateBurst: 1, maxWatchesPerSession: 1 } });
  const recording = recordingTransport((frame) => onFrame?.(frame));
  sent = recording.sent;
  carol = await h.connect({ transport: recording.transport, reconnect: false });
  bob = await h.connect({ reconnect: false });
});

afterEach(async () => {
  pauseGate.reset();
  onFrame = undefined;
  await h.close();
});

/** Resolves with the next frame the server sends carol that `match` accepts (bounded). */
function carolReceives(match: (frame: Frame) => boolean, what: string): Promise<Frame> {
  return within(
    new Promise<Frame>((resolve) => {
      onFrame = (frame) => {
        if (match(frame)) resolve(frame);
      };
    }),
    2000,
    what,
  );
}

/** Matches a reply that accepted one of carol's `unwatch` requests. */
const acceptedUnwatch = (frame: Frame) =>
  frame.type === 'reply' && frame.ok === true && sent.some((request) => request.op === 'unwatch' && request.id === frame.id);

const unwatches = () => sent.filter((frame) => frame.op === 'unwatch');

describe('an unwatch the server refuses', () => {
  it('is sent again until accepted, freeing the watch slot, and the events sent meanwhile reach no callback', async () => {
    const events: string[] = [];
    const watch = await carol.watch('doc:', (event: LockEvent) => events.push(`${event.event} ${event.key}`));
    // The watch took carol's only frame: the unwatch is refused (rate_limited), and close() still resolves.
    await within(watch.close());
    expect(watch.signal.aborted).toBe(true);

    // The server still watches doc: for carol and streams its events; no callback may see them.
    const streamed = carolReceives((frame) => frame.type === 'event', 'an event of the still-open server watch');
    await bob.acquire('doc:1');
    expect(await streamed).toMatchObject({ key: 'doc:1', event: 'acquired' });
    await settled();
    expect(events).toEqual([]);

    const accepted = carolReceives(acceptedUnwatch, 'an accepted unwatch');
    h.clock.advance(1);
    await accepted;
    expect(unwatches().length).toBeGreaterThan(1);
    // With doc: still watched, maxWatchesPerSession 1 would refuse another prefix.
    h.clock.advance(1);
    const other = await within(carol.watch('other:', () => undefined));
    expect(other.prefix).toBe('other:');
  });

  it('is not sent again once the prefix is watched again, so the new watch keeps the server watch', async () => {
    pauseGate.holding = true;
    const first = await carol.watch('doc:', () => undefined);
    await within(first.close());
    const retry = await pauseGate.next();
    // After rate_limited the wait is one frame of the announced rate (1000/s).
    expect(retry.ms).toBe(1);

    const events: string[] = [];
    h.clock.advance(1);
    const again = await within(carol.watch('doc:', (event: LockEvent) => events.push(`${event.event} ${event.key}`)));
    expect(retry.signal.aborted).toBe(true);
    // A token an unwatch sent now would get, ending the new watch on the server.
    h.clock.advance(1);
    retry.resume();
    await settled();
    expect(unwatches()).toHaveLength(1);

    const streamed = carolReceives((frame) => frame.type === 'event', 'an event of the new watch');
    await bob.acquire('doc:2');
    await streamed;
    await settled();
    expect(events).toEqual(['acquired doc:2']);
    expect(again.signal.aborted).toBe(false);
  });

  it('is not sent again once the client closed: the server watch ended with the connection', async () => {
    pauseGate.holding = true;
    const watch = await carol.watch('doc:', () => undefined);
    await within(watch.close());
    const retry = await pauseGate.next();
    await carol.close();
    expect(retry.signal.aborted).toBe(true);
    retry.resume();
    await settled();
    expect(unwatches()).toHaveLength(1);
  });
});
