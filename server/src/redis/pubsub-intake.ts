import type { Logger } from '../logger.js';
import type { NoteSettler } from './note-settler.js';
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
      if (head.origin === this.#o.ctx.liveness?.id) {
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
