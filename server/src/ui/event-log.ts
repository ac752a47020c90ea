import type { LockEvent } from '@lockwire/client';
import { displayKey, formatClock, formatMeta, shortSession } from './format.js';

/** Lines kept in the DOM; older ones are dropped, so the log costs the same after an hour as after a minute. */
const MAX_LINES = 200;

/** A line waiting for the next flush: a lock event, or a note about the connection. */
type PendingLine = { event: LockEvent } | { note: string; at: number };

/**
 * The scrolling event log, newest first. Events and connection notes are
 * queued in one line, in the order they arrive, and drawn once per frame
 * (`flush()`), at most {@link MAX_LINES} of them. While paused nothing is
 * drawn; resuming shows the newest lines, notes in their place among the
 * events, and the counter says how many events arrived meanwhile.
 */
export class EventLog {
  readonly #list: HTMLElement;
  readonly #status: HTMLElement;
  #pending: PendingLine[] = [];
  #paused = false;
  #missed = 0;
  #total = 0;

  constructor(list: HTMLElement, status: HTMLElement) {
    this.#list = list;
    this.#status = status;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Events seen since the page loaded. */
  get total(): number {
    return this.#total;
  }

  /** Queues an event for the next `flush()`. */
  push(event: LockEvent): void {
    this.#total++;
    if (this.#paused) this.#missed++;
    this.#queue({ event });
  }

  /** Adds a line that is not a lock event (connection changes), drawn with the next flush after what came before it. */
  note(text: string, at: number): void {
    this.#queue({ note: text, at });
  }

  #queue(line: PendingLine): void {
    this.#pending.push(line);
    // Only the newest lines can ever be shown; drop the rest early under a flood.
    if (this.#pending.length > 2 * MAX_LINES) this.#pending = this.#pending.slice(-MAX_LINES);
  }

  /** Pauses or resumes drawing. */
  setPaused(paused: boolean): void {
    this.#paused = paused;
    if (!paused) this.#missed = 0;
    this.#updateStatus();
  }

  /** Draws what arrived since the last flush (nothing while paused). True when the DOM changed. */
  flush(): boolean {
    if (this.#paused) {
      this.#updateStatus();
      return false;
    }
    if (this.#pending.length === 0) return false;
    const fragment = document.createDocumentFragment();
    const lines = this.#pending.slice(-MAX_LINES);
    this.#pending = [];
    // Newest first: build the batch in reverse so the fragment reads top-down.
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i];
      if (line) fragment.append('event' in line ? eventLine(line.event) : noteLine(line.note, line.at));
    }
    this.#list.prepend(fragment);
    while (this.#list.childElementCount > MAX_LINES) this.#list.lastElementChild?.remove();
    this.#updateStatus();
    return true;
  }

  #updateStatus(): void {
    const text = this.#paused ? `paused, ${this.#missed} new` : `${this.#total} events`;
    if (this.#status.textContent !== text) this.#status.textContent = text;
  }
}

function eventLine(event: LockEvent): HTMLLIElement {
  const line = document.createElement('li');
  line.className = `log-line ev-${event.event}`;
  const meta = formatMeta(event.meta);
  const token = event.token === undefined ? '' : ` #${event.token}`;
  line.dataset.key = event.key;
  line.dataset.event = event.event;
  line.dataset.at = String(event.at);
  line.textContent =
    `${formatClock(event.at)} ${event.event.padEnd(8)} ${displayKey(event.key)} ` +
    `${shortSession(event.session)}${token}${meta ? ` ${meta}` : ''} ` +
    `(holders ${event.holders}, waiters ${event.waiters})`;
  return line;
}

function noteLine(text: string, at: number): HTMLLIElement {
  const line = document.createElement('li');
  line.className = 'log-line note';
  line.textContent = `${formatClock(at)} ${text}`;
  return line;
}
