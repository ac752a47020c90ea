import type { StoreContext } from './store-context.js';

/** Start of a barrier a node publishes to its own channel (`sync` then its number). */
export const BARRIER = 'sync ';

/**
 * The store's `sync`: a marker through this node's own pub/sub channel,
 * behind which every note of an earlier step has been delivered.
 */
export class SyncBarrier {
  readonly #ctx: StoreContext;
  /** ms to wait for a marker before giving up on it (the command timeout). */
  readonly #timeout: number;
  /** Barriers published to this node's own channel that have not come back, by number. */
  readonly #barriers = new Map<number, () => void>();
  #barrierCount = 0;

  constructor(ctx: StoreContext, timeout: number) {
    this.#ctx = ctx;
    this.#timeout = timeout;
  }

  /**
   * A barrier: publishes a marker to this node's own channel and waits until
   * it comes back. Redis sends a node's messages in the order it ran the
   * steps, so every note of a step Redis ran before the marker has then
   * arrived; the wait ends once those are delivered too (a batch held for a
   * missing predecessor, of a key `matters` accepts; a note held for an
   * answer in flight). Gives up after the command timeout, and at once when
   * the node's channel has no subscriber (notes published meanwhile were
   * missed; reconciling finds them).
   */
  async sync(matters: (key: string) => boolean): Promise<void> {
    const { link, liveness, sequencer } = this.#ctx;
    if (!link || !liveness || !sequencer || this.#ctx.closing) return;
    const n = ++this.#barrierCount;
    const back = new Promise<void>((resolve) => this.#barriers.set(n, resolve));
    const timer = setTimeout(() => this.pass(n), this.#timeout);
    timer.unref?.();
    try {
      const channel = this.#ctx.names.nodeChannel(liveness.id);
      if (Number(await link.command(channel, ['PUBLISH', channel, `${BARRIER}${n}`])) === 0) this.pass(n);
    } catch {
      this.pass(n);
    }
    await back;
    clearTimeout(timer);
    await sequencer.heard(matters);
    // Notes held for a request's answer go out right after it, in a `setImmediate` (see `NoteSettler#sent`).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Barriers up to `n` came back (messages keep their order), or are given up on. */
  pass(n: number): void {
    for (const [number, pass] of this.#barriers) {
      if (number > n) continue;
      this.#barriers.delete(number);
      pass();
    }
  }
}
