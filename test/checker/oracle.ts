/**
 * The fenced resource: the downstream store a lock holder writes to, which
 * checks fencing tokens. It is what turns "a paused holder may still act
 * after its lock expired" into "its late writes are refused".
 */
import type { HistoryRecorder } from './history.js';

export interface FencedResourceOptions {
  /** Where each write and its verdict is recorded (as a `write` event); absent: not recorded. */
  recorder?: HistoryRecorder;
}

/**
 * A per-key register that refuses any write whose token is lower than the
 * highest token it has accepted for that key. A write with the highest token
 * itself is accepted again, so one holder may write many times.
 *
 * Keys are compared exactly (a `Map`), so any key string is an ordinary key.
 */
export class FencedResource {
  readonly #highest = new Map<string, number>();
  readonly #values = new Map<string, unknown>();
  readonly #recorder: HistoryRecorder | undefined;

  constructor(options: FencedResourceOptions = {}) {
    this.#recorder = options.recorder;
  }

  /**
   * Writes `value` under `key` on behalf of `client`, fenced by `token`.
   * Returns whether the write was accepted; a refused write changes nothing.
   */
  write(client: string, key: string, token: number, value?: unknown): boolean {
    const highest = this.#highest.get(key);
    const accepted = highest === undefined || token >= highest;
    if (accepted) {
      this.#highest.set(key, token);
      this.#values.set(key, value);
    }
    this.#recorder?.record({ type: 'write', client, key, token, accepted });
    return accepted;
  }

  /** The highest token accepted for `key`, or `undefined` if none was. */
  highestToken(key: string): number | undefined {
    return this.#highest.get(key);
  }

  /** The value of the last accepted write to `key`. */
  read(key: string): unknown {
    return this.#values.get(key);
  }
}
