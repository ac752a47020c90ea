/**
 * The docs' code moves with the code: every `js`, `jsx`, `ts` and `tsx`
 * block of README.md and docs/*.md is type-checked against the packages'
 * published types, and every `js` block must parse on the Node that runs
 * the tests. What the blocks take as given (a connected `client`, the
 * application's own functions) is declared here, not in the docs.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/lockwire-process.js';

/** A fenced code block of the docs in one of the languages checked. */
interface Snippet {
  /** The Markdown file, relative to the repository root (`docs/client.md`). */
  doc: string;
  /** 1-based line of the block's first code line in `doc`. */
  line: number;
  lang: SnippetLang;
  code: string;
}

/** The fence languages whose blocks are type-checked. */
const LANGS = ['js', 'jsx', 'ts', 'tsx'] as const;
type SnippetLang = (typeof LANGS)[number];

function isSnippetLang(text: string): text is SnippetLang {
  return (LANGS as readonly string[]).includes(text);
}

/** README.md and every docs/*.md, relative to the repository root. */
function docFiles(): string[] {
  const docs = readdirSync(join(repoRoot, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs];
}

/**
 * The `js`, `jsx`, `ts` and `tsx` fenced blocks of `doc` (a path relative
 * to the repository root), in order. A fence may be indented (a block in a
 * list item); its indent is taken off every line of the block.
 */
function snippetsOf(doc: string): Snippet[] {
  const lines = readFileSync(join(repoRoot, doc), 'utf8').split('\n');
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)```([a-z]+)\s*$/.exec(lines[i] ?? '');
    if (!open) continue;
    const indent = open[1] ?? '';
    const fence = open[2] ?? '';
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && (lines[j] ?? '').trimEnd() !== `${indent}\`\`\``; j++) body.push(lines[j] ?? '');
    if (isSnippetLang(fence)) {
      const code = body.map((text) => (text.startsWith(indent) ? text.slice(indent.length) : text)).join('\n');
      snippets.push({ doc, line: i + 2, lang: fence, code });
    }
    i = j;
  }
  return snippets;
}

/**
 * What the snippets take as given without showing it: a connected client,
 * the connect options a reference lists by name, the page's elements, the
 * application's own functions. Global, so that a snippet that declares or
 * imports one of these names itself shadows it.
 */
const CONTEXT = `
declare const LockClient: typeof import('@lockwire/client').LockClient;
declare const client: import('@lockwire/client').LockClient;
declare const url: string;
declare const signal: AbortSignal;
declare const reconnect: import('@lockwire/client').ConnectOptions['reconnect'];
declare const headers: Record<string, string>;
declare const token: string;
declare const transport: import('@lockwire/client').TransportFactory;
declare const editor: { readOnly: boolean };
declare const banner: HTMLElement;
declare const root: import('react-dom/client').Root;
declare const SignJWT: typeof import('jose').SignJWT;
declare const userId: string;
declare const state: unknown;
declare const matchStore: { write(record: object): Promise<void> };
declare function runMatch(options: { signal: AbortSignal; fencingToken: number }): Promise<void>;
declare function run(token: number): Promise<unknown>;
declare function save(token: number): Promise<unknown>;
declare function computeReport(): Promise<void>;
declare function readReport(): Promise<unknown>;
declare function build(): Promise<void>;
declare function read(): Promise<unknown>;
declare function recover(): Promise<unknown>;
declare function work(): Promise<unknown>;
`;

/** A type error in a snippet, placed at its line in the Markdown file. */
interface SnippetProblem {
  /** `docs/client.md:172` */
  where: string;
  message: string;
}

/** Where the snippets seem to live: beside the docs, so `@lockwire/*` resolve as for a user of the packages. */
const VIRTUAL_DIR = join(repoRoot, 'doc-snippets');
const CONTEXT_FILE = join(VIRTUAL_DIR, 'context.d.ts');

function fileNameOf(snippet: Snippet, index: number): string {
  return join(VIRTUAL_DIR, `${snippet.doc.replace(/[/.]/g, '-')}-${snippet.line}-${index}.${snippet.lang}`);
}

/**
 * Type-checks every snippet as an ES module of its own (top-level `await`
 * allowed) against the packages' published types (their `dist/`
 * declarations, so `tsc -b` must have run), with the tests' compiler
 * options plus JSX. `ts` and `tsx` blocks are checked as strictly as the
 * tests; `js` and `jsx` blocks as checked JavaScript without implicit-`any`
 * and null checks, which a JavaScript reader does not write or get (a
 * `lease` from an `acquire` without `acquireTimeout` is never null, though
 * its type allows it). Returns the problems, none when every snippet
 * compiles.
 */
function typeCheckSnippets(snippets: readonly Snippet[]): SnippetProblem[] {
  const configPath = join(repoRoot, 'tsconfig.tests.json');
  const config = ts.readConfigFile(configPath, (path) => ts.sys.readFile(path));
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, repoRoot, undefined, configPath);
  const { tsBuildInfoFile: _tsBuildInfoFile, ...testOptions } = parsed.options;
  const options: ts.CompilerOptions = {
    ...testOptions,
    noEmit: true,
    incremental: false,
    composite: false,
    allowJs: true,
    checkJs: true,
    jsx: ts.JsxEmit.ReactJSX,
    noUnusedLocals: false,
    noUnusedParameters: false,
  };
  const javascript = { ...options, noImplicitAny: false, strictNullChecks: false };
  const isJs = (snippet: Snippet) => snippet.lang === 'js' || snippet.lang === 'jsx';
  // Both programs read the same declaration files (the DOM's alone is large): parse each once.
  const parsedFiles = new Map<string, ts.SourceFile | undefined>();
  return [
    ...checkProgram(snippets.filter((snippet) => !isJs(snippet)), options, parsedFiles),
    ...checkProgram(snippets.filter(isJs), javascript, parsedFiles),
  ];
}

function checkProgram(
  snippets: readonly Snippet[],
  options: ts.CompilerOptions,
  parsedFiles: Map<string, ts.SourceFile | undefined>,
): SnippetProblem[] {
  if (snippets.length === 0) return [];
  const virtual = new Map<string, { text: string; snippet: Snippet | null }>();
  virtual.set(CONTEXT_FILE, { text: CONTEXT, snippet: null });
  snippets.forEach((snippet, index) => {
    // `export {}` makes the block a module even when it imports nothing, so its names stay its own.
    virtual.set(fileNameOf(snippet, index), { text: `${snippet.code}\nexport {};\n`, snippet });
  });

  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (fileName) => virtual.has(fileName) || fileExists.call(host, fileName);
  host.readFile = (fileName) => virtual.get(fileName)?.text ?? readFile.call(host, fileName);
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const entry = virtual.get(fileName);
    if (entry) return ts.createSourceFile(fileName, entry.text, languageVersion, true);
    if (!parsedFiles.has(fileName)) parsedFiles.set(fileName, getSourceFile.call(host, fileName, languageVersion, onError, shouldCreate));
    return parsedFiles.get(fileName);
  };

  const program = ts.createProgram({ rootNames: [...virtual.keys()], options, host });
  const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
  for (const fileName of virtual.keys()) {
    const file = program.getSourceFile(fileName);
    if (file) diagnostics.push(...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file));
  }
  return diagnostics.map((diagnostic) => {
    const message = `TS${diagnostic.code}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`;
    const file = diagnostic.file;
    const snippet = file ? virtual.get(file.fileName)?.snippet : undefined;
    if (!file || diagnostic.start === undefined) return { where: file?.fileName ?? '(options)', message };
    const { line } = file.getLineAndCharacterOfPosition(diagnostic.start);
    return { where: snippet ? `${snippet.doc}:${snippet.line + line}` : `${file.fileName}:${line + 1}`, message };
  });
}

/** A static import on one line: the parse check blanks it, as a function body cannot hold one. */
const IMPORT_LINE = /^import\s.*\sfrom\s+['"][^'"]+['"];?\s*$|^import\s+['"][^'"]+['"];?\s*$/;

/**
 * The `js` snippets that the running Node cannot parse (syntax TypeScript
 * accepts and compiles away, such as `await using` on Node 20). Each is
 * parsed as the body of an async function, so top-level `await` parses;
 * its one-line static imports are blanked first (lines keep their
 * numbers). `jsx` needs a compiler anyway and `ts` is compiled, so only
 * `js` is parsed.
 */
function nodeSyntaxProblems(snippets: readonly Snippet[]): SnippetProblem[] {
  const problems: SnippetProblem[] = [];
  for (const snippet of snippets) {
    if (snippet.lang !== 'js') continue;
    const body = snippet.code
      .split('\n')
      .map((text) => (IMPORT_LINE.test(text) ? '' : text))
      .join('\n');
    try {
      // Compiled, never run: the function expression is not called.
      new Script(`(async () => {\n${body}\n})`, { filename: snippet.doc });
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      problems.push({ where: `${snippet.doc}:${snippet.line}`, message: `Node ${process.version} cannot parse this js block: ${message}` });
    }
  }
  return problems;
}

/** Type-checking the docs loads the packages' declarations, Node's and the DOM's: a few seconds on a busy machine. */
const CHECK_TIMEOUT_MS = 60_000;

const allSnippets = () => docFiles().flatMap(snippetsOf);

describe('the code blocks of README.md and docs/*.md', () => {
  it('are found in the docs that have them, at the line where their code starts', () => {
    const snippets = allSnippets();
    const docs = new Set(snippets.map((snippet) => snippet.doc));
    expect([...docs]).toEqual(expect.arrayContaining(['README.md', 'docs/client.md']));
    const connect = snippetsOf('docs/client.md').find((snippet) => snippet.code.includes('LockClient.connect(url'));
    expect(connect?.code.split('\n')[0]).toBe('const client = await LockClient.connect(url, {');
  });

  it('type-check against the published types of @lockwire/client and @lockwire/server', () => {
    expect(typeCheckSnippets(allSnippets())).toEqual([]);
  }, CHECK_TIMEOUT_MS);

  it('that are JavaScript parse on the Node that runs them (no await using on Node 20)', () => {
    expect(nodeSyntaxProblems(allSnippets())).toEqual([]);
  });
});

describe('the docs check', () => {
  const snippet = (lang: Snippet['lang'], code: string): Snippet => ({ doc: 'docs/example.md', line: 10, lang, code });

  it('reports a call the client does not have and an option it does not take, at their lines in the doc', () => {
    const problems = typeCheckSnippets([
      snippet('js', "await client.acquire('k', { acquireTimeout: 5_000 });\nawait client.acquireLok('k');"),
      snippet('ts', "await client.acquire('k', { acquireTimeoutMs: 5_000 });"),
    ]);
    // ts blocks are checked first, then js.
    expect(problems).toEqual([
      { where: 'docs/example.md:10', message: expect.stringContaining("'acquireTimeoutMs' does not exist") },
      { where: 'docs/example.md:11', message: expect.stringContaining("Property 'acquireLok' does not exist") },
    ]);
  }, CHECK_TIMEOUT_MS);

  it('reports a js block Node cannot parse, and accepts the same code as ts', () => {
    const code = "import { LockClient } from '@lockwire/client';\n{\n  await using lease = await client.acquire('k');\n}";
    expect(nodeSyntaxProblems([snippet('js', code), snippet('ts', code)])).toEqual([
      { where: 'docs/example.md:10', message: expect.stringContaining('cannot parse this js block: SyntaxError') },
    ]);
  });
});
