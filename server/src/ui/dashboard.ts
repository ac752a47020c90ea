/**
 * The live dashboard served at `GET /`: watches every key (`watch('')`),
 * keeps a local picture of the lock table from the snapshot and the events
 * after it, and draws it once per animation frame. When the socket drops the
 * client reconnects with backoff (resuming its session when the server has
 * session grace, so no stale session of the page lingers on the server) and
 * the table starts again from a fresh snapshot.
 */
import { LockError, type ListResult, type LockClient, type LockEvent } from '@lockwire/client';
import { connectForever, SNAPSHOT_LIMIT, type ConnectionState } from './dashboard-connection.js';
import { EventLog } from './event-log.js';
import { byId, displayKey, errorText, formatDuration, formatMeta, setText, withPageToken } from './format.js';
import { LockRows, expiresText } from './lock-rows.js';
import { LockTable } from './lock-table.js';
import { RateMeter, StatusRefresher, countText, markPartial, showCount } from './dashboard-support.js';

const HEALTH_POLL_MS = 2000;
/** How often a row whose expiry passed without an `expired` event is asked again (an `extend` tells no event). */
const OVERDUE_RECHECK_MS = 1000;
const PARTIAL_TITLE =
  `The server has more than ${SNAPSHOT_LIMIT.toLocaleString('en-US')} locked keys: ` +
  'this counts the keys the page knows of, the rest appear as they change.';

const el = {
  state: byId('conn-state', HTMLElement),
  server: byId('server-name', HTMLElement),
  sessions: byId('count-sessions', HTMLElement),
  activeSessions: byId('count-active-sessions', HTMLElement),
  held: byId('count-held', HTMLElement),
  holders: byId('count-holders', HTMLElement),
  waiters: byId('count-waiters', HTMLElement),
  grants: byId('rate-grants', HTMLElement),
  events: byId('rate-events', HTMLElement),
  filter: byId('filter', HTMLInputElement),
  shown: byId('shown', HTMLElement),
  notice: byId('notice', HTMLElement),
  viewport: byId('viewport', HTMLElement),
  details: byId('details', HTMLElement),
  log: byId('log', HTMLElement),
  logStatus: byId('log-status', HTMLElement),
  pause: byId('pause', HTMLButtonElement),
  editorLink: byId('editor-link', HTMLAnchorElement),
};

const table = new LockTable();
const log = new EventLog(el.log, el.logStatus);
const grants = new RateMeter();
const eventRate = new RateMeter();
let client: LockClient | undefined;
/** Server clock minus browser clock, measured with a ping on connect. */
let clockOffset = 0;
let selected: string | undefined;
let prefix = new URLSearchParams(location.search).get('prefix') ?? '';
let frameRequested = false;
/**
 * The last snapshot was truncated: the server has more locked keys than the
 * snapshot's limit, so the table and the counts drawn from it show only part
 * of them (the rest appear as they change). Only a snapshot sets or clears
 * it (and a drop, which empties the table), so no one-off notice hides it.
 */
let partial = false;
/** When each overdue key was last asked for its status, so a hold past its expiry is asked once a second, not once a frame. */
const overdueAskedAt = new Map<string, number>();

const now = () => Date.now() + clockOffset;

const rows = new LockRows({
  viewport: el.viewport,
  table,
  now,
  onRevoke: (key) => void revoke(key),
  onSelect: (key) => {
    selected = selected === key ? undefined : key;
    refresher.want(key);
    scheduleRender();
  },
});

const refresher = new StatusRefresher({
  fetch: (key) => {
    if (!client || client.state !== 'open') return Promise.resolve(undefined);
    return client.status(key);
  },
  apply: (status) => {
    table.replace(status);
    scheduleRender();
  },
});

function scheduleRender(): void {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(render);
}

function render(): void {
  frameRequested = false;
  const range = table.range(prefix);
  rows.setRange(range);
  rows.select(selected);
  rows.render();
  log.flush();
  setCount(el.held, table.heldKeys);
  setCount(el.holders, table.holders);
  setCount(el.waiters, table.waiters);
  const keys = `${countText(table.size, partial)} keys${partial ? ' (partial)' : ''}`;
  setText(el.shown, prefix ? `${countText(range[1] - range[0], partial)} of ${keys}` : keys);
  markPartial(el.shown, partial ? PARTIAL_TITLE : undefined);
  renderDetails();
  refreshShownExpiries();
}

/**
 * Asks the server, a few at a time, about the rows on screen and the
 * selected key whose expiry the events did not tell (events carry none), and
 * about those whose known expiry passed without an `expired` event: the
 * hold was extended (no event tells of it), or the event is on its way.
 */
function refreshShownExpiries(): void {
  const at = now();
  for (const [key, askedAt] of overdueAskedAt) {
    if (at - askedAt >= OVERDUE_RECHECK_MS) overdueAskedAt.delete(key);
  }
  const shown = new Set(rows.visibleKeys());
  if (selected !== undefined) shown.add(selected);
  for (const key of shown) {
    const holders = table.get(key)?.holders ?? [];
    if (holders.some((holder) => holder.expiresAt === undefined)) {
      refresher.want(key);
      continue;
    }
    const overdue = holders.some((holder) => typeof holder.expiresAt === 'number' && holder.expiresAt <= at);
    if (overdue && !overdueAskedAt.has(key)) {
      overdueAskedAt.set(key, at);
      refresher.want(key);
    }
  }
}

/** A count drawn from the table, marked as a lower bound while the table is partial. */
function setCount(element: HTMLElement, value: number): void {
  showCount(element, value, partial ? PARTIAL_TITLE : undefined);
}

function renderDetails(): void {
  const row = selected === undefined ? undefined : table.get(selected);
  if (!row) {
    if (el.details.dataset.view !== 'none') {
      el.details.dataset.view = 'none';
      el.details.replaceChildren(paragraph('Select a key to see all its holders and its queue.', 'hint'));
    }
    return;
  }
  const at = now();
  // Redraw when the key changed, or once a second for the durations.
  const stamp = `${row.version}:${Math.floor(at / 1000)}`;
  if (el.details.dataset.view === 'key' && el.details.dataset.key === row.key && el.details.dataset.stamp === stamp) {
    return;
  }
  el.details.dataset.view = 'key';
  el.details.dataset.stamp = stamp;
  const title = document.createElement('h2');
  title.textContent = displayKey(row.key);
  const holders = document.createElement('ol');
  holders.className = 'holders';
  for (const holder of row.holders) {
    const expires = expiresText([holder], at);
    holders.append(
      item(
        `${holder.mode} · session ${holder.session} · token ${holder.token}` +
          ` · held for ${formatDuration(at - holder.since)}` +
          (expires ? ` · expires in ${expires}` : ' · no expiry') +
          (holder.meta ? ` · ${formatMeta(holder.meta)}` : ''),
      ),
    );
  }
  const queue = document.createElement('ol');
  queue.className = 'queue';
  for (const waiter of row.queue) {
    queue.append(
      item(
        `${waiter.mode} · session ${waiter.session} · waiting ${formatDuration(at - waiter.since)}` +
          (waiter.meta ? ` · ${formatMeta(waiter.meta)}` : ''),
      ),
    );
  }
  el.details.dataset.key = row.key;
  el.details.replaceChildren(
    title,
    paragraph(`Holders (${row.holders.length})`, 'label'),
    holders,
    paragraph(`Queue (${row.queue.length}), in grant order`, 'label'),
    queue,
  );
}

function paragraph(text: string, className: string): HTMLParagraphElement {
  const p = document.createElement('p');
  p.className = className;
  p.textContent = text;
  return p;
}

function item(text: string): HTMLLIElement {
  const li = document.createElement('li');
  li.textContent = text;
  return li;
}

function setState(state: ConnectionState, detail = ''): void {
  el.state.dataset.state = state;
  setText(el.state, detail ? `${state}: ${detail}` : state);
}

function showNotice(text: string): void {
  setText(el.notice, text);
  el.notice.hidden = text === '';
}

function onEvent(event: LockEvent): void {
  eventRate.count();
  if (event.event === 'acquired') grants.count();
  const applied = table.apply(event);
  if (applied.resync) refresher.want(event.key, true);
  log.push(event);
  scheduleRender();
}

async function revoke(key: string): Promise<void> {
  if (!client) return;
  try {
    const revoked = await client.revoke(key);
    showNotice(`Revoked ${revoked} hold(s) of ${displayKey(key)}.`);
  } catch (error) {
    const code = error instanceof LockError ? error.code : 'error';
    if (code === 'forbidden' || code === 'unauthorized') document.body.classList.add('no-revoke');
    showNotice(`Revoke of ${displayKey(key)} failed: ${errorText(error)}`);
  }
}

/** Measures the server's clock against the browser's with a ping (half the round trip either way). */
async function measureClock(connected: LockClient): Promise<void> {
  const sent = Date.now();
  const serverAt = await connected.ping();
  clockOffset = serverAt - (sent + Date.now()) / 2;
}

/** The watch's snapshot, the first or a reconnect's: the table starts again from it. */
function showSnapshot(connected: LockClient, snapshot: ListResult): void {
  table.reset(snapshot.locks);
  partial = snapshot.truncated;
  showNotice(
    snapshot.truncated
      ? `More than ${SNAPSHOT_LIMIT.toLocaleString('en-US')} keys are locked: the rest appear as they change.`
      : '',
  );
  setText(el.server, `${connected.server} · session ${connected.session}`);
  setState('live');
  log.note(`connected as ${connected.session}`, now());
  scheduleRender();
}

/** The connection dropped and the client reconnects: what the page knew of the server is cleared until it is back. */
function showDrop(): void {
  forgetServerState();
  setState('disconnected', 'reconnecting');
  log.note('disconnected', now());
  scheduleRender();
}

/**
 * While disconnected the dashboard knows nothing of the server's locks: the
 * table and the figures are cleared (the sessions count shows `–`) rather
 * than left showing holders the server may no longer have. The next
 * connection rebuilds them from its snapshot.
 */
function forgetServerState(): void {
  table.reset([]);
  partial = false;
  overdueAskedAt.clear();
  setCount(el.activeSessions, 0);
  clearSessions();
}

function clearSessions(): void {
  setText(el.sessions, '–');
  delete el.sessions.dataset.value;
}

async function pollHealth(): Promise<void> {
  try {
    const response = await fetch('/healthz', { cache: 'no-store' });
    const body: unknown = await response.json();
    if (typeof body === 'object' && body !== null && 'sessions' in body && typeof body.sessions === 'number') {
      setCount(el.sessions, body.sessions);
    } else {
      // A draining server answers 503 without a count: the last one is no longer current.
      clearSessions();
    }
  } catch {
    // The connection state already says the server is unreachable; the count is unknown.
    clearSessions();
  }
}

el.editorLink.href = withPageToken('/demo/editor', location);
el.filter.value = prefix;
el.filter.addEventListener('input', () => {
  prefix = el.filter.value;
  el.viewport.scrollTop = 0;
  scheduleRender();
});
el.viewport.addEventListener('scroll', scheduleRender, { passive: true });
window.addEventListener('resize', scheduleRender);
el.pause.addEventListener('click', () => {
  log.setPaused(!log.paused);
  el.pause.textContent = log.paused ? 'Resume' : 'Pause';
  el.pause.setAttribute('aria-pressed', String(log.paused));
  scheduleRender();
});
setInterval(() => {
  grants.tick();
  eventRate.tick();
  setText(el.grants, grants.perSecond().toFixed(1));
  setText(el.events, eventRate.perSecond().toFixed(1));
  setCount(el.activeSessions, table.distinctSessions());
  // Held-for and expires-in move with the clock.
  scheduleRender();
}, 1000);
setInterval(() => void pollHealth(), HEALTH_POLL_MS);
void pollHealth();
void connectForever({
  log,
  now,
  setClient: (connected) => {
    client = connected;
  },
  measureClock,
  showSnapshot,
  showDrop,
  onEvent,
  setState,
  showNotice,
  forgetServerState,
  scheduleRender,
});
