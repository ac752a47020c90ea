/**
 * The dashboard's connection: connects, watches every key, follows the
 * client through drops and reconnects with backoff until the server
 * refuses the page's credentials or its origin. What it shows, and the
 * page's picture of the lock table, stay with the page (`DashboardPage`).
 */
import type { CloseInfo, ListResult, LockClient, LockEvent } from '@lockwire/client';
import { connectionEnd, connectPage, onFailedAttempt, policyCloseOf, policyReconnectDelay, refusalOf } from './access.js';
import { reconnectDelay } from './dashboard-support.js';
import type { EventLog } from './event-log.js';
import { endpointUrl, errorText, formatDuration, redactSecrets } from './format.js';

/** The most keys a watch snapshot may hold (the protocol's `limit` maximum). */
export const SNAPSHOT_LIMIT = 10_000;

/** The connection state the page's header shows. */
export type ConnectionState = 'connecting' | 'live' | 'disconnected' | 'refused';

/** What the connection does to the page: each member is the page's own, called as the connection goes. */
export interface DashboardPage {
  /** The page's event log: connects, drops and refusals are noted in it. */
  readonly log: EventLog;
  /** The server's time now, as the page estimates it (ms since the epoch). */
  now(): number;
  /** The client the page acts through (revoke, status), or undefined between connections. */
  setClient(client: LockClient | undefined): void;
  /** Measures the server's clock against the browser's; rejects when the ping fails. */
  measureClock(connected: LockClient): Promise<void>;
  /** The watch's snapshot, the first or a reconnect's: the table starts again from it. */
  showSnapshot(connected: LockClient, snapshot: ListResult): void;
  /** The connection dropped and the client reconnects. */
  showDrop(): void;
  /** A watched key changed. */
  onEvent(event: LockEvent): void;
  setState(state: ConnectionState, detail?: string): void;
  /** Shows `text` above the table; an empty text hides the notice. */
  showNotice(text: string): void;
  /** Clears what the page knew of the server, until the next snapshot. */
  forgetServerState(): void;
  scheduleRender(): void;
}

/**
 * One client's life: connect, measure the clock, watch everything, and
 * follow the client through drops (the watch's resync after each reconnect
 * brings a fresh snapshot) until it closes for good; tell how it ended.
 * Whatever ends it, the client is closed, so a failed attempt (a refused
 * watch, a failed ping) leaves no session on the server.
 */
async function session(url: string, page: DashboardPage): Promise<CloseInfo> {
  const connected = await connectPage(url, location);
  try {
    page.setClient(connected);
    const closed = new Promise<CloseInfo>((resolve) => connected.on('close', resolve));
    await page.measureClock(connected);
    // Events that arrive while the snapshot is applied wait their turn.
    let buffered: LockEvent[] | undefined = [];
    const watch = await connected.watch(
      '',
      (event) => (buffered ? buffered.push(event) : page.onEvent(event)),
      // Runs before any event that follows the new snapshot.
      { limit: SNAPSHOT_LIMIT, onResync: (snapshot) => page.showSnapshot(connected, snapshot) },
    );
    page.showSnapshot(connected, watch.snapshot);
    const early = buffered;
    buffered = undefined;
    for (const event of early) page.onEvent(event);
    connected.on('disconnect', ({ reconnecting }) => {
      if (reconnecting) page.showDrop();
    });
    connected.on('reconnect', () => {
      page.measureClock(connected).catch(() => undefined);
    });
    onFailedAttempt(connected, () => page.showNotice(`Cannot reach ${redactSecrets(url)}: no connection, trying again.`));
    return await connectionEnd(connected, watch, closed, location);
  } finally {
    await connected.close().catch(() => undefined);
  }
}

/**
 * Connects, and again after every drop with backoff, until the server
 * refuses the page's credentials (a close with 1008 saying they expired or
 * are not valid, or a 401 for the page's own URL after a failed connect) or
 * its origin (a 403 for the page's own URL): the same token or origin would
 * be refused on every attempt, so the page stops and says so. After a close
 * with 1008 for its conduct (sending too fast) it says so and reconnects
 * after a longer backoff, 5 s doubling to 60 s.
 */
export async function connectForever(page: DashboardPage): Promise<void> {
  const url = endpointUrl(location);
  let policyCloses = 0;
  for (let attempt = 0; ; attempt++) {
    page.setState('connecting');
    let wasLive = false;
    let ending: unknown;
    try {
      ending = await session(url, page);
      wasLive = true;
    } catch (error) {
      ending = error;
    }
    const refusal = refusalOf(ending, location);
    const policyClose = policyCloseOf(ending);
    if (!wasLive && refusal === undefined && policyClose === undefined) {
      page.showNotice(`Cannot reach ${redactSecrets(url)}: ${errorText(ending)}`);
    }
    page.setClient(undefined);
    page.forgetServerState();
    if (refusal !== undefined) {
      page.setState('refused');
      page.showNotice(refusal);
      page.log.note('access refused: not reconnecting', page.now());
      page.scheduleRender();
      return;
    }
    if (wasLive) attempt = 0;
    policyCloses = policyClose === undefined ? 0 : policyCloses + 1;
    const delay = policyClose === undefined ? reconnectDelay(attempt) : policyReconnectDelay(policyCloses - 1);
    page.setState('disconnected', `reconnecting in ${formatDuration(delay)}`);
    if (policyClose !== undefined) page.showNotice(`${policyClose} Reconnecting in ${formatDuration(delay)}.`);
    page.log.note(policyClose === undefined ? 'disconnected' : policyClose, page.now());
    page.scheduleRender();
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
