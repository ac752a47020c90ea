import type { SessionId, StoreLimits } from '../store.js';
import type { LocalPending, LocalSession, SessionGate } from './local-state.js';
import type { StepRunner } from './step-runner.js';

const nothing = () => {};

/** An acquire held back by `LimitGate#holdBack`. */
export interface HeldBack {
  /** Resolves (never rejects) once every request of the session in flight when the acquire arrived has settled. */
  readonly settled: Promise<void>;
  /**
   * True when the session holds or waits for `maxLocksPerSession` keys,
   * not counting this acquire nor `ending` of its holds (past their
   * deadline, their expiry sent ahead of the acquire): after its earlier
   * requests as they turned out, before any of its later ones. Read once
   * `settled` resolved.
   */
  full(ending: number): boolean;
  /**
   * Call in the turn the acquire's step begins, or when it ends without
   * one: it is held back no longer. Idempotent.
   */
  begin(): void;
}

/** A release or cancel that arrived after a held-back acquire of its session. */
export interface LaterRequest {
  readonly gate: SessionGate;
  readonly arrival: number;
}

/**
 * Decides an acquire's `maxLocksPerSession` check as the memory store does:
 * against the session's holds and queued acquires once every earlier
 * request of the session was applied.
 *
 * The count this node has when an acquire arrives is an upper bound: an
 * acquire in flight may yet be refused, answered `acquired: false`, or be a
 * re-acquire that changes nothing, and a hold whose release is in flight is
 * dropped only at its reply. Below the limit even so, the acquire goes at
 * once, as it always did: a session far from its limit never waits, and
 * pays one comparison. Only at the limit, with requests of the session in
 * flight, is the acquire held back until they settle and counted exactly
 * then. Redis cannot count for it: it keeps no index of a session's keys,
 * and counting them there would cost every acquire a read per key.
 *
 * A held-back acquire keeps its place among the session's requests: a later
 * acquire of the session waits for it (as for any request in flight), a
 * later release, extend, wait or cancel of the same key waits until its
 * step has begun, as after any acquire that waits before its step (see
 * `LocalSession#starting`), and a later release or cancel of another key
 * that lands first is counted back, as the memory store would not have
 * applied it yet.
 */
export class LimitGate {
  readonly #steps: Pick<StepRunner, 'busy' | 'idle'>;
  readonly #limits: StoreLimits;
  readonly #cancels: (session: SessionId) => Array<Promise<unknown>>;

  /** `cancels` gives the session's cancels in flight. */
  constructor(
    steps: Pick<StepRunner, 'busy' | 'idle'>,
    limits: StoreLimits,
    cancels: (session: SessionId) => Array<Promise<unknown>>,
  ) {
    this.#steps = steps;
    this.#limits = limits;
    this.#cancels = cancels;
  }

  /** True when an acquire of the session made now would be held back; read before the acquire is recorded. */
  wouldHoldBack(session: SessionId, local: LocalSession): boolean {
    if (local.gate !== null) return true;
    if (local.holds.size + local.acquiring < this.#limits.maxLocksPerSession) return false;
    return this.#inFlight(session, local, null).length > 0;
  }

  /**
   * Holds `pending`, an acquire just recorded, back when the session's count
   * may be at the limit only because of requests still in flight, or when
   * an earlier acquire is held back already. Null (the common case): it
   * goes at once, and its count is the node's count now.
   */
  holdBack(session: SessionId, local: LocalSession, pending: LocalPending): HeldBack | null {
    // Counted without this request itself.
    if (local.gate === null && local.holds.size + local.acquiring - 1 < this.#limits.maxLocksPerSession) return null;
    const earlier = this.#inFlight(session, local, pending);
    if (local.gate === null && earlier.length === 0) return null;
    const gate = (local.gate ??= { held: 0, arrivals: 0, later: new Set(), freed: [] });
    earlier.push(...gate.later);
    const arrival = ++gate.arrivals;
    gate.held++;
    let began = false;
    return {
      settled: Promise.all(earlier.map((p) => p.then(nothing, nothing))).then(nothing),
      full: (ending) => {
        let count = local.holds.size - ending;
        for (const other of local.pending.values()) if (other.kind === 'acquire' && !other.sending) count++;
        for (const freed of gate.freed) if (freed > arrival) count++;
        return count >= this.#limits.maxLocksPerSession;
      },
      begin: () => {
        if (began) return;
        began = true;
        if (--gate.held === 0 && local.gate === gate) local.gate = null;
      },
    };
  }

  /** A release or cancel of the session arriving now, when an acquire of the session is held back; else null. */
  later(local: LocalSession | undefined): LaterRequest | null {
    const gate = local?.gate;
    if (!gate) return null;
    return { gate, arrival: ++gate.arrivals };
  }

  /** Counts `call`, the later request's store call, as in flight for acquires held back after it. Returns `call`. */
  track<T>(request: LaterRequest, call: Promise<T>): Promise<T> {
    const settled = call.then(nothing, nothing);
    request.gate.later.add(settled);
    void settled.then(() => request.gate.later.delete(settled));
    return call;
  }

  /** The later request took a hold or a queued acquire of the session out (call when it is applied). */
  freed(request: LaterRequest): void {
    request.gate.freed.push(request.arrival);
  }

  /**
   * What of the session is in flight: acquires whose step has not answered,
   * with the steps in flight on their key once they have (a release sent
   * right after one drops the hold it gets only at the release's reply),
   * steps on the keys it holds (likewise), and cancels.
   */
  #inFlight(session: SessionId, local: LocalSession, own: LocalPending | null): Array<Promise<unknown>> {
    const waits: Array<Promise<unknown>> = [];
    for (const pending of local.pending.values()) {
      if (pending === own || pending.kind !== 'acquire' || !pending.sending) continue;
      // Read at its answer, not now: a release of the key that waits for the acquire's step to begin
      // (see `LocalSession#starting`) is in flight by then, and only then.
      waits.push(pending.sent.then(() => this.#steps.idle(pending.key)));
    }
    for (const key of local.holds.keys()) if (this.#steps.busy(key)) waits.push(this.#steps.idle(key));
    waits.push(...this.#cancels(session));
    return waits;
  }
}
