#!/usr/bin/env node
// Builds what the server serves to browsers into server/dist/ui/:
//   lockwire-client.js  the browser entry of @lockwire/client as one ES module
//                       (exports LockClient and the rest of the entry);
//   dashboard.js        the live dashboard at GET /;
//   editor.js           the exclusive-editing demo at GET /demo/editor;
//   *.html, *.css       the pages, copied from server/src/ui/.
// The pages import `@lockwire/client` from /ui/lockwire-client.js, so a
// browser loads the client once. Everything is minified, with no CDN.
// Each output is written to a temporary file and renamed into place, so a
// server serving the folder never sends a half-written file.
// Fails when the client bundle pulls in anything Node-only (ws, node:*).
import { copyFile, mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const uiSrc = join(root, 'server/src/ui');
const outDir = join(root, 'server/dist/ui');
const CLIENT_BUNDLE = 'lockwire-client.js';

/** Inputs that must never reach a browser bundle. */
const NODE_ONLY = /(^|\/)node_modules\/ws\/|^node:|(^|\/)client\/src\/node\.ts$/;

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome111', 'firefox111', 'safari16.4'],
  minify: true,
  legalComments: 'none',
  write: false,
  metafile: true,
  logLevel: 'warning',
  // Bundle the sources, not whatever an earlier `tsc -b` left in dist/.
  alias: { '@lockwire/protocol': join(root, 'shared/src/index.ts') },
};

/** Pages take the client from the shared bundle instead of inlining a copy. */
const clientAsSharedBundle = {
  name: 'lockwire-client-external',
  setup(builder) {
    builder.onResolve({ filter: /^@lockwire\/client$/ }, () => ({ path: `./${CLIENT_BUNDLE}`, external: true }));
  },
};

async function writeAtomically(path, contents) {
  const temp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(temp, contents);
  await rename(temp, path);
}

function nodeOnlyInputs(metafile) {
  return Object.keys(metafile.inputs).filter((input) => NODE_ONLY.test(input));
}

async function bundle(name, entry, extra = {}) {
  const result = await build({ ...common, ...extra, entryPoints: [entry], outfile: join(outDir, name) });
  const [output] = result.outputFiles;
  if (!output) throw new Error(`esbuild produced no output for ${name}`);
  await writeAtomically(join(outDir, name), output.contents);
  return { name, bytes: output.contents.byteLength, gzip: gzipSync(output.contents).byteLength, metafile: result.metafile };
}

/**
 * Builds every UI asset. Resolves with each bundle's size (minified and
 * gzipped bytes); rejects when esbuild fails or the client bundle has a
 * Node-only input.
 */
export async function buildUi() {
  await mkdir(outDir, { recursive: true });
  const client = await bundle(CLIENT_BUNDLE, join(root, 'client/src/index.ts'));
  const leaked = nodeOnlyInputs(client.metafile);
  if (leaked.length > 0) throw new Error(`${CLIENT_BUNDLE} imports Node-only modules: ${leaked.join(', ')}`);
  await writeAtomically(join(outDir, 'lockwire-client.meta.json'), JSON.stringify(client.metafile));
  const pages = await Promise.all(
    ['dashboard', 'editor'].map((page) =>
      bundle(`${page}.js`, join(uiSrc, `${page}.ts`), { plugins: [clientAsSharedBundle] }),
    ),
  );
  const assets = (await readdir(uiSrc)).filter((file) => /\.(html|css)$/.test(file));
  await Promise.all(
    assets.map(async (file) => {
      const temp = join(outDir, `${file}.${process.pid}.tmp`);
      await copyFile(join(uiSrc, file), temp);
      await rename(temp, join(outDir, file));
    }),
  );
  return [client, ...pages].map(({ name, bytes, gzip }) => ({ name, bytes, gzip }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const sizes = await buildUi();
    const where = relative(process.cwd(), outDir) || '.';
    for (const { name, bytes, gzip } of sizes) {
      process.stdout.write(`[build-ui] ${where}/${name}: ${bytes} B minified, ${gzip} B gzipped\n`);
    }
  } catch (error) {
    process.stderr.write(`[build-ui] ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
