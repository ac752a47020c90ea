import { ErrorCode } from '@lockwire/protocol';
import { LockError } from '../errors.js';
import { encodeKey } from './key-codec.js';
import type { Instant } from '../clock.js';
import type { NodeKeySet } from './node-key-set.js';
import type { NodeLiveness } from './node-liveness.js';
import { parseStepReply, type Json, type StepReply } from './records.js';
import { scripts, type ScriptName } from './scripts.js';
import { live, type StoreContext } from './store-context.js';

/**
 * The message of a `store_unavailable` for a Redis call that failed: the
 * node's own reason while it does not serve, else the call's failure (a
 * serving node's reason would wrongly say Redis lost its state).
 */
export function failedCallReason(liveness: NodeLiveness, error: unknown): string {
  const why = liveness.serving ? 'a call to the lock store (Redis) failed; retry shortly' : liveness.reason;
  return `${why}: ${String(error)}`;
}

/** How a step runs. */
export interface StepOptions {
  /**
   * Whether the key is recorded in this node's key set before the step
   * (default true). False for a step on another node id's records (the
   * cleanup of a dead node or of an id this node gave up): nothing of this
   * node's sessions is on the key for it, and recording it would hand a
   * dead id's key set on to this node's.
   */
  readonly record?: boolean;
}

/** What a `StepRunner` works with; the hooks are the store's other parts. */
export interface StepRunnerOptions {
  ctx: StoreContext;
  keySet: NodeKeySet;
  /** True when some watch on this node covers the key (its events are worth reading). */
  watched: (key: string) => boolean;
  /** An earlier step of a key was not heard in time, or a call failed: ask Redis where everything stands. */
  reconcileSoon: () => void;
  /**
   * Sends the steps of what of this node's sessions on the key is due but
   * whose timer has not run yet (see `Timeouts#runDue`).
   */
  runDue: (key: string) => void;
}

/**
 * Runs the state-changing scripts of this node, one step on one key each,
 * and keeps their replies in Redis' order with the notes and broadcasts of
 * other steps (through the store's `BatchSequencer`).
 */
export class StepRunner {
  readonly #o: StepRunnerOptions;
  #calls = 0;
  /**
   * Steps of this node in flight per key, from their call until their reply
   * was applied (each resolves then): Redis is ahead of this node's view of
   * the key meanwhile.
   */
  readonly #steps = new Map<string, Set<Promise<void>>>();

  constructor(options: StepRunnerOptions) {
    this.#o = options;
  }

  /** True while a step of this node on `key` is in flight (Redis is ahead of this node's view). */
  busy(key: string): boolean {
    return this.#steps.has(key);
  }

  /** The keys starting with `prefix` that a step of this node is in flight on now. */
  busyUnder(prefix: string): string[] {
    const keys: string[] = [];
    for (const key of this.#steps.keys()) if (key.startsWith(prefix)) keys.push(key);
    return keys;
  }

  /**
   * Resolves once every step of this node on `key` in flight now has been
   * applied or has failed (steps begun later are not waited for). Each is
   * bounded by the command timeout and the wait for a late predecessor.
   */
  async idle(key: string): Promise<void> {
    await Promise.all([...(this.#steps.get(key) ?? [])]);
  }

  /**
   * Runs one state-changing script on `key`, hands its result to `apply`
   * (which updates this node's view and answers), then delivers the step's
   * batch. `apply` runs once this node has applied every earlier step of the
   * key (a note of one, e.g. the `lost` of a steal, comes before this answer),
   * or after a bounded wait for a late message, when this node then
   * reconciles. It gets the key's version before the step: notes of batches
   * at or below it come from steps Redis ran earlier; and the store's clock
   * as read when the step was sent, whose wall reading is the `now` the
   * script computed expiries from (a hold it set lasts `expiresAt - wall`
   * from `mono`). A Redis failure calls
   * `failed`, starts a reconciliation (the step may have run, its notes for
   * this node unheard) and throws `store_unavailable`. The key is recorded
   * in this node's key set first unless `options.record` is false.
   */
  async step<T>(
    name: ScriptName,
    key: string,
    extra: string[],
    apply: (result: Json, at: number, sent: Instant) => T,
    failed?: () => void,
    { record = true }: StepOptions = {},
  ): Promise<T> {
    const { ctx } = this.#o;
    // What of the key is due here runs first (a hold ends, a request times out), as on the memory store,
    // which runs what is due before each request: sent before this step on the key's connection, it runs
    // first in Redis and its notes (the holder's `lost`, the next waiter's grant) come before this step's answer.
    if (name !== 'expire') this.#o.runDue(key);
    const link = ctx.link;
    const sequencer = ctx.sequencer;
    const liveness = live(ctx);
    if (!link || !sequencer) throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
    const encoded = encodeKey(key);
    const call = String(++this.#calls);
    const node = liveness.id;
    sequencer.beginCall(call);
    let stepDone = () => {};
    const inFlight = new Promise<void>((resolve) => (stepDone = resolve));
    const onKey = this.#steps.get(key) ?? new Set<Promise<void>>();
    this.#steps.set(key, onKey.add(inFlight));
    const done = () => {
      onKey.delete(inFlight);
      if (onKey.size === 0 && this.#steps.get(key) === onKey) this.#steps.delete(key);
      stepDone();
    };
    let reply: StepReply;
    // Whether a watch here covers the key, read once in the turn the reply arrives: it decides both
    // whether the step's events are parsed and whether the sequencer may skip them.
    let withEvents = false;
    let sent: Instant;
    try {
      // Awaited only while the key's SADD is unanswered: an await costs every step a turn.
      const registering = record ? this.#o.keySet.register(link, encoded, node) : null;
      if (registering) await registering;
      sent = { wall: Math.floor(ctx.clock.now()), monotonic: ctx.clock.monotonic() };
      const text = await link.evalScript(scripts[name], this.#scriptKeys(name, encoded, node), [
        node,
        call,
        String(sent.wall),
        encoded,
        ctx.namespace,
        ...extra,
      ]);
      withEvents = this.#o.watched(key);
      reply = parseStepReply(text, key, encoded, withEvents);
    } catch (error) {
      done();
      sequencer.endCall(call, null);
      failed?.();
      ctx.logger.debug({ err: String(error), script: name }, 'Redis call failed');
      // Redis may have run the step all the same (only its reply was late), and that reply alone
      // carried this node's notes: once Redis answers again, ask it where everything stands.
      this.#o.reconcileSoon();
      throw new LockError(ErrorCode.StoreUnavailable, failedCallReason(liveness, error));
    }
    const { batch } = reply;
    // Its grants to this node's sessions (a release or expiry granting the queue) run from this step,
    // however the wall clock stepped before their notes are settled, also while one waits in `early`.
    for (const item of batch.items) if (item.y === 'granted') item.sent = sent;
    const at = batch.v > 0 ? batch.pv : reply.cv;
    const ready = sequencer.reach(encoded, at, !withEvents);
    const late = ready !== true && !(await ready);
    try {
      return apply(reply.result, at, sent);
    } finally {
      done();
      sequencer.endCall(call, batch);
      if (late) {
        ctx.logger.debug({ key, script: name }, 'an earlier step of the key was not heard in time; reconciling');
        this.#o.reconcileSoon();
      }
    }
  }

  /** A script's keys: the lock key's five, plus the caller's liveness key for an acquire on a single server. */
  #scriptKeys(name: ScriptName, encoded: string, node: string): string[] {
    const { names, link } = this.#o.ctx;
    const keys: string[] = names.lockKeys(encoded);
    if (name === 'acquire' && link?.mode === 'single') keys.push(names.node(node));
    return keys;
  }
}
