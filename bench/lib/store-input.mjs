// What the session layer hands a store for a plain `acquire` frame, for the
// figures that call a store's API directly.

/** The store input of an exclusive acquire of `key` with no timeouts, steal or meta. */
export function exclusiveAcquire(ticket, key) {
  return { ticket, key, mode: 'exclusive', acquireTimeout: null, holdTimeout: null, steal: false, meta: null };
}
