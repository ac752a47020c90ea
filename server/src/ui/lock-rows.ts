import { displayKey, formatDuration, formatMeta, setText, shortSession } from './format.js';
import type { KeyRow, KnownHolder, LockTable } from './lock-table.js';

/** Height of one table row in CSS pixels; must match `.lock-row` in ui.css. */
export const ROW_HEIGHT = 30;
/** Rows drawn above and below the visible window, so fast scrolling shows no gaps. */
const OVERSCAN = 8;

interface PooledRow {
  element: HTMLDivElement;
  cells: {
    key: HTMLSpanElement;
    mode: HTMLSpanElement;
    holders: HTMLSpanElement;
    heldFor: HTMLSpanElement;
    expiresIn: HTMLSpanElement;
    queue: HTMLSpanElement;
  };
  /** The key this element shows now, or undefined when hidden. */
  key: string | undefined;
}

/** What the rows need from the page around them. */
export interface LockRowsOptions {
  viewport: HTMLElement;
  table: LockTable;
  /** Server time now (the browser clock corrected by the measured offset). */
  now: () => number;
  onRevoke: (key: string) => void;
  onSelect: (key: string) => void;
}

/**
 * A virtualised view of the lock table: only the rows in the viewport (plus
 * a few) exist in the DOM, taken from a pool and updated in place, so
 * 10,000 keys cost as much to draw as 40. Rows have a fixed height; the full
 * holder list and queue of one key show in the details panel.
 */
export class LockRows {
  readonly #options: LockRowsOptions;
  readonly #spacer: HTMLDivElement;
  readonly #pool: PooledRow[] = [];
  #range: [number, number] = [0, 0];
  #selected: string | undefined;

  constructor(options: LockRowsOptions) {
    this.#options = options;
    this.#spacer = document.createElement('div');
    this.#spacer.className = 'lock-spacer';
    options.viewport.append(this.#spacer);
    // One listener for every row: rows are recycled, so per-row listeners would need rebinding.
    options.viewport.addEventListener('click', (event) => {
      const target = event.target instanceof Element ? event.target : null;
      const element = target?.closest('.lock-row');
      const key = this.#pool.find((pooled) => pooled.element === element)?.key;
      if (key === undefined) return;
      if (target?.closest('button.revoke')) options.onRevoke(key);
      else options.onSelect(key);
    });
  }

  /** Shows the keys with index in `[start, end)` of the table (the filtered range). */
  setRange(range: [number, number]): void {
    this.#range = range;
  }

  /** Marks the row of `key` as selected (the one the details panel shows). */
  select(key: string | undefined): void {
    this.#selected = key;
  }

  /** Keys of the rows drawn by the last `render()`. */
  visibleKeys(): string[] {
    return this.#pool.flatMap((row) => (row.key === undefined ? [] : [row.key]));
  }

  /** Draws the visible window; cells whose text did not change are not touched. */
  render(): void {
    const { viewport, table } = this.#options;
    const [start, end] = this.#range;
    const count = Math.max(0, end - start);
    const height = `${count * ROW_HEIGHT}px`;
    if (this.#spacer.style.height !== height) this.#spacer.style.height = height;

    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const visible = Math.ceil((viewport.clientHeight || 600) / ROW_HEIGHT) + 2 * OVERSCAN;
    const last = Math.min(count, first + visible);
    const needed = last - first;
    while (this.#pool.length < needed) this.#pool.push(this.#createRow());

    const now = this.#options.now();
    for (let slot = 0; slot < this.#pool.length; slot++) {
      const pooled = this.#pool[slot];
      if (!pooled) continue;
      const row = slot < needed ? table.at(start + first + slot) : undefined;
      if (!row) {
        if (pooled.key !== undefined) {
          pooled.key = undefined;
          pooled.element.hidden = true;
          delete pooled.element.dataset.key;
        }
        continue;
      }
      this.#fill(pooled, row, first + slot, now);
    }
  }

  #fill(pooled: PooledRow, row: KeyRow, index: number, now: number): void {
    const { element, cells } = pooled;
    element.hidden = false;
    const top = `translateY(${index * ROW_HEIGHT}px)`;
    if (element.style.transform !== top) element.style.transform = top;
    if (pooled.key !== row.key) {
      pooled.key = row.key;
      element.dataset.key = row.key;
    }
    element.classList.toggle('selected', row.key === this.#selected);
    const holder = row.holders[0];
    setText(cells.key, displayKey(row.key));
    cells.key.title = displayKey(row.key);
    setText(cells.mode, holder ? holder.mode : 'queued');
    setText(cells.holders, holdersText(row.holders));
    setText(cells.heldFor, holder ? formatDuration(now - holder.since) : '');
    setText(cells.expiresIn, expiresText(row.holders, now));
    setText(cells.queue, queueText(row));
  }

  #createRow(): PooledRow {
    const element = document.createElement('div');
    element.className = 'lock-row';
    element.hidden = true;
    const cell = (name: string) => {
      const span = document.createElement('span');
      span.className = `cell ${name}`;
      element.append(span);
      return span;
    };
    const cells = {
      key: cell('key'),
      mode: cell('mode'),
      holders: cell('holders'),
      heldFor: cell('held-for'),
      expiresIn: cell('expires-in'),
      queue: cell('queue'),
    };
    const actions = cell('actions');
    const revoke = document.createElement('button');
    revoke.className = 'revoke';
    revoke.type = 'button';
    revoke.textContent = 'Revoke';
    actions.append(revoke);
    this.#options.viewport.append(element);
    return { element, cells, key: undefined };
  }
}

/** One holder as `session meta #token`. */
export function holderText(holder: Pick<KnownHolder, 'session' | 'meta' | 'token'>): string {
  const meta = formatMeta(holder.meta);
  return `${shortSession(holder.session)}${meta ? ` ${meta}` : ''} #${holder.token}`;
}

function holdersText(holders: readonly KnownHolder[]): string {
  const [first] = holders;
  if (!first) return '';
  const more = holders.length > 1 ? ` +${holders.length - 1}` : '';
  return `${holderText(first)}${more}`;
}

/** The soonest expiry among holders: `…` while unknown, empty when none expires. */
export function expiresText(holders: readonly KnownHolder[], now: number): string {
  let soonest: number | null = null;
  for (const holder of holders) {
    if (holder.expiresAt === undefined) return '…';
    if (holder.expiresAt !== null && (soonest === null || holder.expiresAt < soonest)) soonest = holder.expiresAt;
  }
  return soonest === null ? '' : formatDuration(soonest - now);
}

function queueText(row: KeyRow): string {
  if (row.queue.length === 0) return '';
  const names = row.queue.slice(0, 3).map((waiter) => {
    const meta = formatMeta(waiter.meta);
    return meta ? `${shortSession(waiter.session)} ${meta}` : shortSession(waiter.session);
  });
  return `${row.queue.length}: ${names.join(', ')}${row.queue.length > 3 ? ', …' : ''}`;
}
