import type { Logger } from '../logger.js';
import type { NoteSettler } from './note-settler.js';
import type { RedisLink } from './redis-link.js';
import { parseBatch, parseBroadcast, parseJson, readBroadcastHead, type Batch } from './records.js';
import { HEARTBEAT, type Reconciler } from './reconciler.js';
import type { StoreContext } from './store-context.js';
import { BARRIER, type SyncBarrier } from './sync-barrier.js';
import type { WatchHub } from './watch-hub.js';

/** The parts an intake hands messages to. */
export interface PubSubIntakeOptions {
  ctx: StoreContext;
  hub: WatchHub;
  notes: NoteSettler;
  barrier: SyncBarrier;
  reconciler: Reconciler;
}

/**
 * What reaches this node over pub/sub: its own channel (heartbeats, barrier
 * markers, the batches of steps that settled its sessions) and the broadcast
 * channel (every step's events). Batches go through the store's sequencer,
 * which hands them back in Redis' order to `deliver`.
 */
export class PubSubIntake {
  readonly #o: PubSubIntakeOptions;

  constructor(options: PubSubIntakeOptions) {
    this.#o = options;
  }

  get #logger(): Logger {
    return this.#o.ctx.logger;
  }

  /** A message on this node's own channel. */
  onMessage(message: string): void {
    if (message === HEARTBEAT) {
      this.#o.reconciler.heard();
      return;
    }
    if (message.startsWith(BARRIER)) {
      this.#o.barrier.pass(Number(message.slice(BARRIER.length)));
      return;
    }
    let batch: Batch;
    try {
      batch = parseBatch(parseJson(message));
    } catch (error) {
      this.#logger.error({ err: String(error) }, 'unreadable message from Redis');
      return;
    }
    this.#o.ctx.sequencer?.accept(batch);
  }

  /**
   * A step's events, sent to every node. Only the head is read unless this
   * node has a watcher: the batch then just moves the key's version on. The
   * broadcast of this node's own step is dropped unread once its reply came.
   */
  onBroadcast(message: string): void {
    const sequencer = this.#o.ctx.sequencer;
    const head = readBroadcastHead(message);
    if (!sequencer || !head) {
      this.#logger.error({}, 'unreadable broadcast from Redis');
      return;
    }
    try {
      if (head.origin === this.#o.ctx.liveness?.currentId) {
        sequencer.acceptOwn(head.call, () => parseBroadcast(message, head, true));
      } else {
        sequencer.accept(parseBroadcast(message, head, this.#o.hub.active));
      }
    } catch (error) {
      this.#logger.error({ err: String(error) }, 'unreadable broadcast from Redis');
    }
  }

  /** A batch in its key's order (the sequencer's `deliver`): notes always, events when `withEvents`. */
  deliver(batch: Batch, withEvents: boolean): void {
    for (const item of batch.items) {
      if (item.y === 'ev') {
        if (withEvents) this.#o.hub.dispatch(item.event, batch.v, item.seq);
      } else {
        this.#o.notes.applyNote(batch.key, item, batch.v);
      }
    }
  }
}

/**
 * Redis' clock in microseconds, to be read before the broadcast channel is
 * subscribed (`BatchSequencerOptions#heardSince`): the least of every
 * primary's `TIME`, so a step below it ran, on whichever primary owns its
 * key, before the subscription existed. A step's version is at least its
 * primary's clock when it ran. 0 when a primary does not answer: every
 * batch with an unheard predecessor is then held for it, as it always may.
 */
export async function clockBeforeSubscribe(link: RedisLink, logger: Logger): Promise<number> {
  try {
    const clocks = await Promise.all((await link.shards()).map(async (shard) => micros(await shard.command(['TIME']))));
    const least = Math.min(...clocks);
    return Number.isFinite(least) && least > 0 ? least : 0;
  } catch (error) {
    logger.debug({ err: String(error) }, 'could not read the Redis clock; holding every key\'s first batch for its predecessor');
    return 0;
  }
}

/** A `TIME` reply (seconds, microseconds) in microseconds; NaN for anything else. */
function micros(reply: unknown): number {
  if (!Array.isArray(reply) || reply.length !== 2) return Number.NaN;
  const [seconds, us] = reply.map(Number);
  return seconds === undefined || us === undefined ? Number.NaN : seconds * 1_000_000 + us;
}
