/**
 * A small typed event emitter that works the same in Node and browsers.
 * A throwing listener does not stop the others or the caller: its error is
 * rethrown in a microtask, where the runtime reports it as uncaught.
 */
export class Emitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Adds `listener` for `type`; returns a function that removes it. */
  on<K extends keyof Events>(type: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.#listeners.get(type);
    if (!set) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener);
    return () => this.off(type, listener);
  }

  /** Removes `listener` for `type`; removing an unknown listener does nothing. */
  off<K extends keyof Events>(type: K, listener: (payload: Events[K]) => void): void {
    const set = this.#listeners.get(type);
    if (!set) return;
    set.delete(listener);
    if (set.size === 0) this.#listeners.delete(type);
  }

  /** Calls every listener of `type` with `payload`, in the order they were added. */
  emit<K extends keyof Events>(type: K, payload: Events[K]): void {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const listener of [...set] as ((payload: Events[K]) => void)[]) {
      invokeSafely(listener, payload);
    }
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear();
  }
}

/** Calls a user callback; its error must not break frame handling, so it is reported, not thrown. */
export function invokeSafely<T>(callback: (value: T) => void, value: T): void {
  try {
    callback(value);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}
