/**
 * The first `limit` of a stream of keys in UTF-16 code-unit order (the
 * order of `list` and of watch snapshots), without sorting the whole
 * stream: a max-heap keeps the smallest keys offered so far, so a call over
 * n keys costs O(n) comparisons plus O(limit log limit), where sorting every
 * locked key would stall the server for about a second at 10^6 keys.
 */
export class FirstKeys {
  readonly #limit: number;
  /** The smallest keys offered so far, as a max-heap: the largest at 0. */
  readonly #heap: string[] = [];
  #total = 0;

  /** Keeps the first `limit` keys (an integer >= 0). */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** How many keys were offered in all. */
  get total(): number {
    return this.#total;
  }

  /** Offers one key; keys are compared by UTF-16 code units, as `<` does. */
  offer(key: string): void {
    this.#total++;
    const heap = this.#heap;
    if (heap.length < this.#limit) {
      heap.push(key);
      this.#up(heap.length - 1);
    } else if (heap.length > 0 && key < (heap[0] as string)) {
      heap[0] = key;
      this.#down(0);
    }
  }

  /** The kept keys, ascending. Ends the selection: offer nothing after it. */
  sorted(): string[] {
    return this.#heap.sort();
  }

  #up(at: number): void {
    const heap = this.#heap;
    const key = heap[at] as string;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      const above = heap[parent] as string;
      if (above >= key) break;
      heap[at] = above;
      at = parent;
    }
    heap[at] = key;
  }

  #down(at: number): void {
    const heap = this.#heap;
    const key = heap[at] as string;
    const half = heap.length >> 1;
    while (at < half) {
      let child = 2 * at + 1;
      const right = child + 1;
      if (right < heap.length && (heap[right] as string) > (heap[child] as string)) child = right;
      const below = heap[child] as string;
      if (below <= key) break;
      heap[at] = below;
      at = child;
    }
    heap[at] = key;
  }
}
