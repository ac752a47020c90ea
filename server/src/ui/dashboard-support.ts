import type { LockStatus } from '@lockwire/client';
import { setText } from './format.js';

/** Seconds a rate is averaged over. */
const RATE_WINDOW = 5;

/**
 * Counts occurrences per second and reports the average over the last
 * {@link RATE_WINDOW} whole seconds. `tick()` must be called once a second.
 */
export class RateMeter {
  #current = 0;
  readonly #buckets: number[] = [];

  count(): void {
    this.#current++;
  }

  /** Closes the current second. */
  tick(): void {
    this.#buckets.push(this.#current);
    this.#current = 0;
    if (this.#buckets.length > RATE_WINDOW) this.#buckets.shift();
  }

  perSecond(): number {
    if (this.#buckets.length === 0) return 0;
    return this.#buckets.reduce((sum, n) => sum + n, 0) / this.#buckets.length;
  }
}

/** Most `status` requests the dashboard keeps in flight. */
const MAX_IN_FLIGHT = 16;

export interface StatusRefresherOptions {
  /** Asks the server for a key's status; `undefined` when not connected. */
  fetch: (key: string) => Promise<LockStatus | undefined>;
  apply: (status: LockStatus) => void;
}

/**
 * Fetches `status` for keys whose local picture is incomplete (events carry
 * no `expiresAt`) or disagrees with an event's counts. Each key is asked at
 * most once at a time, with a bounded number in flight, so a flood of events
 * cannot turn into a flood of requests. The reply replaces the key's row;
 * events after it arrive after the reply on the same socket, so they apply
 * on top of it in order.
 */
export class StatusRefresher {
  readonly #options: StatusRefresherOptions;
  readonly #wanted = new Set<string>();
  readonly #inFlight = new Set<string>();

  constructor(options: StatusRefresherOptions) {
    this.#options = options;
  }

  /**
   * Queues a refresh of `key`. While one is running, a call is a no-op
   * unless `again` (the picture went wrong after that request was sent):
   * then the key is asked once more when the running request ends.
   */
  want(key: string, again = false): void {
    if (this.#inFlight.has(key) && !again) return;
    this.#wanted.add(key);
    this.#pump();
  }

  #pump(): void {
    for (const key of this.#wanted) {
      if (this.#inFlight.size >= MAX_IN_FLIGHT) return;
      if (this.#inFlight.has(key)) continue;
      this.#wanted.delete(key);
      this.#inFlight.add(key);
      void this.#options
        .fetch(key)
        .then((status) => {
          if (status) this.#options.apply(status);
        })
        .catch(() => undefined)
        .finally(() => {
          this.#inFlight.delete(key);
          this.#pump();
        });
    }
  }
}

/** Reconnect delay after `attempt` failures: 0.5 s doubling to 10 s, with ±25 % jitter so tabs do not stampede. */
export function reconnectDelay(attempt: number): number {
  const base = Math.min(10_000, 500 * 2 ** Math.min(attempt, 10));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/**
 * Shows a count: `1,234`, or `1,234+` when it counts only part of the
 * server's locks (a lower bound), with `partialTitle` saying why as the
 * element's title. `data-value` carries the number and `data-partial` the
 * mark. `partialTitle` undefined: the count is whole.
 */
export function showCount(element: HTMLElement, value: number, partialTitle?: string): void {
  setText(element, countText(value, partialTitle !== undefined));
  element.dataset.value = String(value);
  markPartial(element, partialTitle);
}

/** `1,234`, or `1,234+` for a lower bound. */
export function countText(value: number, partial: boolean): string {
  return `${value.toLocaleString('en-US')}${partial ? '+' : ''}`;
}

/** Marks `element` as showing part of the server's locks (`data-partial`, and the title), or unmarks it (undefined). */
export function markPartial(element: HTMLElement, partialTitle: string | undefined): void {
  if (partialTitle === undefined) {
    if (element.dataset.partial === undefined) return;
    delete element.dataset.partial;
    element.removeAttribute('title');
  } else if (element.title !== partialTitle) {
    element.dataset.partial = 'true';
    element.title = partialTitle;
  }
}
