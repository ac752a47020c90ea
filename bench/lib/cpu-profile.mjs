// Reading a V8 .cpuprofile (as `node --cpu-prof` and `npm run bench --
// --profile` write it): each sample's time, frame labels, the stacks folded
// into one line each (the format flamegraph.pl, inferno and speedscope
// read), and a flame graph drawn from them as a standalone SVG.

/** The frames V8 reports when no JavaScript of the program runs. */
export const IDLE = '(idle)';

/**
 * Where a script is, short: from its last `node_modules/` on for a
 * dependency (`node_modules/@redis/client/dist/lib/client/index.js`), else
 * from its last `dist/` or `src/` on (`dist/session.js`).
 * @param {string} url
 */
function shortPath(url) {
  const dependency = url.lastIndexOf('/node_modules/');
  if (dependency >= 0) return url.slice(dependency + 1);
  return url.replace(/^.*\/(dist|src)\//, '$1/');
}

/**
 * A frame's label: its function and where it is (`name dist/file.js:12`).
 * @param {{ functionName: string, url: string, lineNumber: number }} callFrame
 */
export function frameLabel({ functionName, url, lineNumber }) {
  const where = url ? `${shortPath(url)}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'} ${where}`.trim();
}

/**
 * Microseconds of samples per node id. Each sample lasts until the next
 * (`timeDeltas[i + 1]`); the last one lasts the profile's mean interval.
 * @param {{ nodes: { id: number }[], samples: number[], timeDeltas?: number[], startTime: number, endTime: number }} profile
 * @returns {Map<number, number>}
 */
export function selfMicros(profile) {
  const { samples, timeDeltas } = profile;
  const mean = samples.length > 0 ? (profile.endTime - profile.startTime) / samples.length : 0;
  const self = new Map();
  for (let i = 0; i < samples.length; i++) {
    const next = timeDeltas?.[i + 1];
    const micros = next !== undefined && next >= 0 ? next : mean;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + micros);
  }
  return self;
}

/**
 * The profile's stacks, root first, one line per distinct stack with its
 * microseconds of samples: `a dist/x.js:1;b dist/y.js:2 1234`. The root
 * frame is left out; so are idle samples unless `idle` is set. Labels keep
 * no `;` (it separates frames).
 * @param {Parameters<typeof selfMicros>[0] & { nodes: { id: number, callFrame: any, children?: number[] }[] }} profile
 * @param {{ idle?: boolean }} [options]
 * @returns {Map<string, number>} stack -> microseconds, in the profile's node order
 */
export function foldStacks(profile, { idle = false } = {}) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const folded = new Map();
  for (const [id, micros] of selfMicros(profile)) {
    const frames = [];
    for (let at = id; parentOf.has(at); at = parentOf.get(at)) frames.push(frameLabel(byId.get(at).callFrame).replaceAll(';', ','));
    if (frames.length === 0 || (!idle && frames[0] === IDLE)) continue;
    const stack = frames.reverse().join(';');
    folded.set(stack, (folded.get(stack) ?? 0) + micros);
  }
  return folded;
}

/** Folded stacks as text, one `stack micros` line each, the largest first. */
export function foldedText(folded) {
  return [...folded]
    .sort((a, b) => b[1] - a[1])
    .map(([stack, micros]) => `${stack} ${Math.round(micros)}\n`)
    .join('');
}

const escapeXml = (text) => text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A frame's colour by where its code lives: lockwire's own, a dependency, Node's, or V8's. */
function colourOf(label) {
  let hash = 0;
  for (let i = 0; i < label.length; i++) hash = (hash * 31 + label.charCodeAt(i)) >>> 0;
  const shade = hash % 30;
  if (/ (dist|src)\//.test(label)) return `hsl(${200 + shade}, 65%, ${60 + (shade % 10)}%)`;
  if (/ node_modules\//.test(label)) return `hsl(${100 + shade}, 50%, ${55 + (shade % 10)}%)`;
  if (/ node:/.test(label)) return `hsl(${25 + shade}, 80%, ${60 + (shade % 10)}%)`;
  return `hsl(0, 0%, ${70 + (shade % 15)}%)`;
}

/**
 * A flame graph of folded stacks as a standalone SVG: each frame a box as
 * wide as the time spent in it and what it called, its callers below it.
 * Hovering a box shows its label, time and share (the SVG `title`).
 * Frames narrower than half a pixel are left out.
 * @param {Map<string, number>} folded stack -> microseconds (`foldStacks`)
 * @param {{ title?: string, width?: number }} [options]
 */
export function flameGraphSvg(folded, { title = 'CPU profile', width = 1200 } = {}) {
  /** @typedef {{ label: string, micros: number, children: Map<string, Frame> }} Frame */
  /** @type {Frame} */
  const root = { label: 'all', micros: 0, children: new Map() };
  for (const [stack, micros] of folded) {
    root.micros += micros;
    let frame = root;
    for (const label of stack.split(';')) {
      let child = frame.children.get(label);
      if (!child) {
        child = { label, micros: 0, children: new Map() };
        frame.children.set(label, child);
      }
      child.micros += micros;
      frame = child;
    }
  }
  const rowHeight = 16;
  const top = 36;
  const boxes = [];
  let depthMax = 0;
  const scale = root.micros > 0 ? width / root.micros : 0;
  const place = (frame, x, depth) => {
    const w = frame.micros * scale;
    if (w < 0.5) return;
    depthMax = Math.max(depthMax, depth);
    boxes.push({ frame, x, w, depth });
    let childX = x;
    for (const child of [...frame.children.values()].sort((a, b) => (a.label < b.label ? -1 : 1))) {
      place(child, childX, depth + 1);
      childX += child.micros * scale;
    }
  };
  place(root, 0, 0);
  const height = top + (depthMax + 1) * rowHeight + 8;
  const total = root.micros;
  const parts = boxes.map(({ frame, x, w, depth }) => {
    const y = height - 8 - (depth + 1) * rowHeight;
    const ms = (frame.micros / 1000).toFixed(1);
    const share = total > 0 ? ((frame.micros / total) * 100).toFixed(1) : '0';
    const fits = Math.floor((w - 6) / 7);
    const text = fits >= 3 ? (frame.label.length <= fits ? frame.label : `${frame.label.slice(0, fits - 2)}..`) : '';
    return (
      `<g><title>${escapeXml(frame.label)} (${ms} ms, ${share}%)</title>` +
      `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${rowHeight - 1}" fill="${frame === root ? '#ddd' : colourOf(frame.label)}"/>` +
      (text ? `<text x="${(x + 3).toFixed(1)}" y="${y + 12}">${escapeXml(text)}</text>` : '') +
      '</g>'
    );
  });
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="12">\n` +
    `<text x="4" y="20" font-size="14">${escapeXml(title)}: ${(total / 1000).toFixed(0)} ms sampled</text>\n` +
    `${parts.join('\n')}\n</svg>\n`
  );
}
