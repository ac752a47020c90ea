/**
 * One slot in the heap. The owner keeps it to cancel the deadline later;
 * cancelling only marks it dead (lazy deletion), and dead slots are dropped
 * when they reach the top or when a compaction rebuilds the heap.
 */
export interface DeadlineSlot<T> {
  readonly at: number;
  readonly seq: number;
  readonly item: T;
  live: boolean;
}

/** Below this many slots a compaction is not worth its cost. */
const MIN_COMPACT_SIZE = 64;

/**
 * A binary min-heap of deadlines, ordered by time and then by insertion
 * order, so entries due at the same instant are processed in the order they
 * were scheduled. Push, cancel and pop are O(log n) (cancel O(1) plus its
 * share of the compactions that keep dead slots from outnumbering live ones).
 */
export class DeadlineHeap<T> {
  #slots: DeadlineSlot<T>[] = [];
  #dead = 0;
  #seq = 0;

  /** Number of live (not cancelled, not yet popped) deadlines. */
  get size(): number {
    return this.#slots.length - this.#dead;
  }

  /** The sequence number the next pushed deadline will get. */
  get nextSeq(): number {
    return this.#seq;
  }

  /** Schedules `item` at `at`; keep the slot to cancel it. */
  push(at: number, item: T): DeadlineSlot<T> {
    const slot: DeadlineSlot<T> = { at, seq: this.#seq++, item, live: true };
    this.#slots.push(slot);
    this.#up(this.#slots.length - 1);
    return slot;
  }

  /** Cancels a deadline; a no-op for a slot already popped or cancelled. */
  cancel(slot: DeadlineSlot<T>): void {
    if (!slot.live) return;
    slot.live = false;
    this.#dead++;
    if (this.#slots.length >= MIN_COMPACT_SIZE && this.#dead * 2 > this.#slots.length) this.#compact();
  }

  /** The earliest live slot, or undefined; drops dead slots from the top. */
  peek(): DeadlineSlot<T> | undefined {
    for (;;) {
      const top = this.#slots[0];
      if (top === undefined || top.live) return top;
      this.#dead--;
      this.#removeTop();
    }
  }

  /** Removes and returns the earliest live slot's item, or undefined. */
  pop(): T | undefined {
    const top = this.peek();
    if (top === undefined) return undefined;
    top.live = false;
    this.#removeTop();
    return top.item;
  }

  #removeTop(): void {
    const last = this.#slots.pop();
    if (last === undefined || this.#slots.length === 0) return;
    this.#slots[0] = last;
    this.#down(0);
  }

  #compact(): void {
    this.#slots = this.#slots.filter((slot) => slot.live);
    this.#dead = 0;
    for (let i = (this.#slots.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  #less(a: DeadlineSlot<T>, b: DeadlineSlot<T>): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #up(index: number): void {
    const slots = this.#slots;
    const slot = slots[index];
    if (slot === undefined) return;
    let i = index;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = slots[parentIndex];
      if (parent === undefined || !this.#less(slot, parent)) break;
      slots[i] = parent;
      i = parentIndex;
    }
    slots[i] = slot;
  }

  #down(index: number): void {
    const slots = this.#slots;
    const slot = slots[index];
    if (slot === undefined) return;
    const n = slots.length;
    let i = index;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const leftSlot = slots[left];
      const rightSlot = slots[left + 1];
      if (leftSlot === undefined) break;
      let child = left;
      let childSlot = leftSlot;
      if (rightSlot !== undefined && this.#less(rightSlot, leftSlot)) {
        child = left + 1;
        childSlot = rightSlot;
      }
      if (!this.#less(childSlot, slot)) break;
      slots[i] = childSlot;
      i = child;
    }
    slots[i] = slot;
  }
}
