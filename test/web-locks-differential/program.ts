/**
 * Random programs of Web Lock requests, run in a page against the
 * browser's own `navigator.locks`, against lockwire clients'
 * `client.locks` and against a model of the spec's lock manager
 * (`SpecLocks`), each run recording what every request went through. It
 * imports nothing of Node, so it bundles for the page.
 *
 * A program is fixed before it runs: requests by one of a few agents (a
 * lockwire client each; in the browser, one lock manager serves them all,
 * as it serves every tab of an origin), callbacks ended and signals
 * aborted by request number. After each step the program waits until
 * nothing changes over a few round trips to the lock manager, then records
 * every request's state, so the runs compare step by step.
 *
 * Where lockwire documents a difference from a browser (`docs/client.md`,
 * "Web Locks face"), the program keeps out of it, deciding from the state
 * the run reached, so every run decides the same while they agree:
 *
 * - Steals come from an agent that makes nothing else: a steal by a client
 *   whose own request waits in the server queue differs.
 * - While a request of an agent waits behind another of its own requests
 *   of the name (held or waiting: the later one waits in the client, not
 *   in the server queue), other agents' requests of that name are skipped
 *   (recorded as `skipped`): the server cannot place them behind a request
 *   it has not been sent.
 * - A steal of a name its agent holds while another agent's request waits
 *   is skipped: lockwire hands the hold back first (so that the steal gets
 *   a new fencing token), and the waiting request is granted and stolen
 *   from at once, where a browser leaves it waiting.
 * - An abort that would let the request behind it be granted is not made
 *   in the browser's run and lockwire's beside it: lockwire grants that
 *   request then, as the spec says, where Chromium leaves it waiting until
 *   a lock of the name is released. A second run of lockwire makes those
 *   aborts, against the model.
 */
import type { LockClient, LockManager } from '@lockwire/client';
import { random } from '../helpers/seeded-random.js';

export type Step =
  | { readonly do: 'request'; readonly agent: number; readonly name: string; readonly options: RequestOptions }
  | { readonly do: 'end'; readonly request: number; readonly fail: boolean }
  | { readonly do: 'abort'; readonly request: number };

export interface RequestOptions {
  readonly mode?: 'shared' | 'exclusive';
  readonly ifAvailable?: boolean;
  readonly steal?: boolean;
  /** The request takes an `AbortSignal` that an `abort` step may abort; `'aborted'`: one aborted already. */
  readonly signal?: boolean | 'aborted';
}

/** What a program asks of a lock manager. */
export interface Requester {
  request(
    name: string,
    options: { mode?: 'shared' | 'exclusive'; ifAvailable?: boolean; steal?: boolean; signal?: AbortSignal },
    callback: (lock: { mode: string } | null) => Promise<string>,
  ): Promise<unknown>;
}

/** The lock managers a program runs on: one per agent (the browser's one manager for all). */
export type Managers = readonly Requester[];

/** A `query()` of the lock manager: every agent's locks. */
export type Query = LockManager['query'];

/**
 * Every request of the clients, as the browser's `query()` shows every
 * request of the origin: a client's own entries are its requests (two
 * sharing its hold are two; one waiting behind its own holders is known
 * to it alone).
 */
async function everyRequest(clients: readonly LockClient[]): ReturnType<Query> {
  const snapshots = await Promise.all(clients.map((client) => client.locks.query()));
  const own = (client: LockClient, infos: Awaited<ReturnType<Query>>['held']) => (infos ?? []).filter((info) => info.clientId === client.session);
  return {
    held: snapshots.flatMap((snapshot, i) => own(clients[i]!, snapshot.held)),
    pending: snapshots.flatMap((snapshot, i) => own(clients[i]!, snapshot.pending)),
  };
}

/** How the runner learns that the managers answered everything asked before. */
export type RoundTrip = () => Promise<unknown>;

const NAMES = ['a', 'b'];
/** Agents 0..2 request; the last one only steals. */
export const AGENTS = 4;
const STEALER = AGENTS - 1;

/** The program of `seed`: `length` steps, each a request, the end of a request's callback, or an abort. */
export function program(seed: number, length = 16): Step[] {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const steps: Step[] = [];
  let requests = 0;
  for (let i = 0; i < length; i++) {
    const roll = next();
    if (requests > 0 && roll < 0.35) {
      steps.push({ do: 'end', request: Math.floor(next() * requests), fail: next() < 0.2 });
    } else if (requests > 0 && roll < 0.45) {
      steps.push({ do: 'abort', request: Math.floor(next() * requests) });
    } else {
      const name = pick(NAMES);
      const kind = next();
      let options: RequestOptions;
      let agent = Math.floor(next() * STEALER);
      if (kind < 0.1) {
        options = { steal: true };
        agent = STEALER;
      } else if (kind < 0.15) {
        // Combinations the spec refuses (NotSupportedError), and a signal aborted before the request.
        options = pick<RequestOptions>([
          { steal: true, ifAvailable: true },
          { steal: true, mode: 'shared' },
          { steal: true, signal: true },
          { ifAvailable: true, signal: true },
          { mode: pick(['shared', 'exclusive'] as const), signal: 'aborted' },
        ]);
      } else {
        const mode = pick(['shared', 'exclusive'] as const);
        options = kind < 0.3 ? { mode, ifAvailable: true } : kind < 0.5 ? { mode, signal: true } : { mode };
      }
      steps.push({ do: 'request', agent, name, options });
      requests++;
    }
  }
  return steps;
}

/** What each request went through, in order, after each step: one line per request. */
export type Trace = string[][];

/**
 * Runs `steps` on `managers`, settling after each step: repeated round
 * trips (`roundTrip`) and a timer turn until every request's record stayed
 * the same over three of them, within `settleMs` (then it records as it is).
 * Lock names get `prefix`, so programs do not meet.
 */
export async function run(
  steps: readonly Step[],
  managers: Managers,
  roundTrip: RoundTrip,
  query: Query,
  prefix: string,
  { unblockingAborts = false, settleMs = 2000 }: { unblockingAborts?: boolean; settleMs?: number } = {},
): Promise<Trace> {
  const records: string[][] = [];
  const made: Array<{ agent: number; name: string; mode: string }> = [];
  const open = (events: string[]) => !events.some((event) => event.startsWith('resolved') || event.startsWith('rejected'));
  // A request's state, from its record: waiting (nothing happened yet), or holding (called back with a lock, not settled).
  const waiting = (i: number) => records[i]!.length === 0;
  const holding = (i: number) => open(records[i]!) && records[i]![0]?.startsWith('held') === true;
  const requestsOf = (name: string) => made.flatMap((request, i) => (request.name === name ? [i] : []));
  /** Whether a request of `agent` for `name` waits behind another of its own (held or waiting). */
  const waitsBehindItself = (agent: number, name: string) => {
    const own = requestsOf(name).filter((i) => made[i]!.agent === agent && (waiting(i) || holding(i)));
    return own.length >= 2 && own.some(waiting);
  };
  /**
   * Whether aborting request `r` would let the request behind it be granted:
   * `r` waits first in its name's queue (the requests waiting, in request
   * order) and the next one fits the holders. The spec then grants it at
   * once; Chromium leaves it waiting until a lock of the name is released.
   */
  const unblocks = (r: number) => {
    const queue = requestsOf(made[r]!.name).filter(waiting);
    if (queue[0] !== r || queue[1] === undefined) return false;
    const holders = requestsOf(made[r]!.name).filter(holding);
    return holders.length === 0 || (made[queue[1]]!.mode === 'shared' && holders.every((i) => made[i]!.mode === 'shared'));
  };
  /** Whether a steal by `agent` of `name` would hand a hold back while another agent's request waits (see above). */
  const stealsFromItself = (agent: number, name: string) =>
    requestsOf(name).some((i) => made[i]!.agent === agent && holding(i)) &&
    requestsOf(name).some((i) => made[i]!.agent !== agent && waiting(i));
  const ends: Array<((fail: boolean) => void) | undefined> = [];
  const controllers: Array<AbortController | undefined> = [];
  const trace: Trace = [];
  const now = () => records.map((events) => events.join(' '));
  for (const step of steps) {
    if (step.do === 'request') {
      const index = records.length;
      const events: string[] = [];
      records.push(events);
      const skip =
        [...Array(AGENTS).keys()].some((agent) => agent !== step.agent && waitsBehindItself(agent, step.name)) ||
        (step.options.steal === true && stealsFromItself(step.agent, step.name));
      made.push({ agent: step.agent, name: step.name, mode: step.options.mode ?? 'exclusive' });
      const { signal, ...rest } = step.options;
      const controller = !skip && signal !== undefined && signal !== false ? new AbortController() : undefined;
      if (signal === 'aborted') controller?.abort();
      controllers.push(controller);
      if (skip) {
        events.push('skipped', 'resolved:skipped');
        trace.push([...now(), await shown()]);
        continue;
      }
      const options = controller ? { ...rest, signal: controller.signal } : rest;
      const manager = managers[step.agent % managers.length]!;
      let asked: Promise<unknown>;
      try {
        asked = manager.request(prefix + step.name, options, (lock) => {
          events.push(lock === null ? 'null' : `held:${lock.mode}`);
          return new Promise<string>((resolve, reject) => {
            ends[index] = (fail) => (fail ? reject(new Error('callback failed')) : resolve('done'));
          });
        });
      } catch (error) {
        // The spec's request() never throws: every refusal is a rejected promise.
        asked = Promise.reject(error);
        events.push('threw');
      }
      asked.then(
        (value) => events.push(`resolved:${String(value)}`),
        (error: unknown) => events.push(`rejected:${error instanceof Error ? error.name : String(error)}`),
      );
    } else if (step.do === 'end') {
      const end = ends[step.request];
      ends[step.request] = undefined;
      end?.(step.fail);
    } else if (unblockingAborts || !unblocks(step.request)) {
      controllers[step.request]?.abort();
    }
    await settle();
    trace.push([...now(), await shown()]);
  }
  // Every request ends: what is held lets go, what waits is aborted or, once granted, lets go.
  for (const controller of controllers) controller?.abort();
  const deadline = performance.now() + settleMs;
  while (records.some(open)) {
    if (performance.now() > deadline) throw new Error(`requests still open after the program: ${JSON.stringify(now())}`);
    for (const [i, end] of ends.entries()) {
      ends[i] = undefined;
      end?.(false);
    }
    await roundTrip();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return trace;

  /** What `query()` shows of this program's names, held and pending, each as a sorted list. */
  async function shown(): Promise<string> {
    const { held = [], pending = [] } = await query();
    const mine = (infos: typeof held) =>
      infos
        .filter((info) => info.name?.startsWith(prefix))
        .map((info) => `${info.name!.slice(prefix.length)}:${info.mode}`)
        .sort();
    return `query held ${mine(held).join(',')} pending ${mine(pending).join(',')}`;
  }

  async function settle(): Promise<void> {
    const deadline = performance.now() + settleMs;
    let seen = JSON.stringify(now());
    for (let same = 0; same < 3 && performance.now() < deadline; ) {
      await roundTrip();
      await new Promise((resolve) => setTimeout(resolve, 0));
      const current = JSON.stringify(now());
      same = current === seen ? same + 1 : 0;
      seen = current;
    }
  }
}

/**
 * Runs `steps` on the browser's lock manager and on lockwire clients; on
 * the spec's model (`SpecLocks`) as they ran; then once more on lockwire
 * and on the model with the aborts that let a request behind them be
 * granted, which Chromium does not follow the spec in (see {@link run}).
 */
export async function runAll(
  steps: readonly Step[],
  browserLocks: Pick<LockManager, 'request' | 'query'>,
  clients: readonly LockClient[],
  prefix: string,
): Promise<Record<'browser' | 'lockwire' | 'specAsRun' | 'spec' | 'lockwireAborts', Trace>> {
  const onClients = (options: { unblockingAborts?: boolean }, names: string) =>
    run(
      steps,
      clients.map((client) => client.locks),
      () => Promise.all(clients.map((client) => client.ping())),
      () => everyRequest(clients),
      names,
      options,
    );
  const browser = await run(steps, [browserLocks], () => browserLocks.query(), () => browserLocks.query(), prefix);
  const lockwire = await onClients({}, prefix);
  const onModel = (options: { unblockingAborts?: boolean }) => {
    const model = new SpecLocks();
    return run(steps, [model], () => Promise.resolve(), () => model.query(), prefix, options);
  };
  // The model as the browser ran: it must agree with Chromium, so it can stand in for it below.
  const specAsRun = await onModel({});
  const spec = await onModel({ unblockingAborts: true });
  const lockwireAborts = await onClients({ unblockingAborts: true }, `${prefix}aborts:`);
  return { browser, lockwire, specAsRun, spec, lockwireAborts };
}

interface ModelRequest {
  readonly name: string;
  readonly mode: LockMode;
  readonly callback: (lock: { name: string; mode: LockMode } | null) => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

type LockMode = 'shared' | 'exclusive';

/**
 * The lock manager of the W3C Web Locks spec (one origin), as its
 * algorithms read: a queue per name, requests granted from the head while
 * they are grantable, `ifAvailable` answered `null` when not grantable at
 * once, a steal releasing every holder (their requests reject with an
 * `AbortError`) and going to the head, and an aborted request taken out
 * of the queue with the queue processed again.
 */
export class SpecLocks {
  readonly #queues = new Map<string, ModelRequest[]>();
  readonly #held = new Map<string, ModelRequest[]>();

  query(): Promise<{ held: Array<{ name: string; mode: LockMode; clientId: string }>; pending: Array<{ name: string; mode: LockMode; clientId: string }> }> {
    const list = (table: Map<string, ModelRequest[]>) => [...table.values()].flat().map(({ name, mode }) => ({ name, mode, clientId: 'model' }));
    return Promise.resolve({ held: list(this.#held), pending: list(this.#queues) });
  }

  request(
    name: string,
    options: { mode?: LockMode; ifAvailable?: boolean; steal?: boolean; signal?: AbortSignal },
    callback: ModelRequest['callback'],
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const mode = options.mode ?? 'exclusive';
      const refuse = (message: string) => reject(new DOMException(message, 'NotSupportedError'));
      if (name.startsWith('-')) return refuse('reserved name');
      if (options.steal === true && options.ifAvailable === true) return refuse('steal and ifAvailable');
      if (options.steal === true && mode !== 'exclusive') return refuse('steal of a shared lock');
      if (options.signal !== undefined && (options.steal === true || options.ifAvailable === true)) return refuse('signal with steal or ifAvailable');
      if (options.signal?.aborted === true) return reject(options.signal.reason);
      const request: ModelRequest = { name, mode, callback, resolve, reject };
      const queue = this.#queue(name);
      if (options.steal === true) {
        for (const holder of this.#holders(name).splice(0)) holder.reject(new DOMException('stolen', 'AbortError'));
        queue.unshift(request);
      } else if (options.ifAvailable === true && !this.#grantable(request)) {
        this.#settle(request, null);
        return;
      } else {
        queue.push(request);
      }
      options.signal?.addEventListener('abort', () => {
        const at = queue.indexOf(request);
        if (at === -1) return;
        queue.splice(at, 1);
        reject(options.signal!.reason);
        this.#process(name);
      });
      this.#process(name);
    });
  }

  #queue(name: string): ModelRequest[] {
    let queue = this.#queues.get(name);
    if (!queue) this.#queues.set(name, (queue = []));
    return queue;
  }

  #holders(name: string): ModelRequest[] {
    let held = this.#held.get(name);
    if (!held) this.#held.set(name, (held = []));
    return held;
  }

  /** The spec's "grantable": first in its queue (or the queue empty), and no holder, or shared with shared holders. */
  #grantable(request: ModelRequest): boolean {
    const queue = this.#queue(request.name);
    if (queue.length > 0 && queue[0] !== request) return false;
    const held = this.#holders(request.name);
    return held.length === 0 || (request.mode === 'shared' && held.every((holder) => holder.mode === 'shared'));
  }

  #process(name: string): void {
    const queue = this.#queue(name);
    while (queue.length > 0 && this.#grantable(queue[0]!)) {
      const request = queue.shift()!;
      this.#holders(name).push(request);
      this.#settle(request, { name, mode: request.mode });
    }
  }

  /** Calls back (later, as a task would), then releases the lock and settles the request with the callback's outcome. */
  #settle(request: ModelRequest, lock: { name: string; mode: LockMode } | null): void {
    void Promise.resolve()
      .then(() => request.callback(lock))
      .then(
        (value) => this.#done(request, lock, () => request.resolve(value)),
        (error: unknown) => this.#done(request, lock, () => request.reject(error)),
      );
  }

  #done(request: ModelRequest, lock: unknown, settle: () => void): void {
    if (lock !== null) {
      const held = this.#holders(request.name);
      const at = held.indexOf(request);
      if (at !== -1) {
        held.splice(at, 1);
        this.#process(request.name);
      }
    }
    settle();
  }
}
