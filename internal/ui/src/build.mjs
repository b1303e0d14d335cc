// Builds the console into ../dist (the directory the Go package embeds):
// app.js and app.css bundled and minified by esbuild, index.html and
// favicon.svg copied. The output depends only on the sources and the pinned
// toolchain, so `node build.mjs --check` can prove that the committed bundle
// is what the sources produce: it builds in memory and compares byte for byte.
import * as esbuild from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
const check = process.argv.includes('--check');

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.tsx' },
  outdir: dist,
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  charset: 'utf8',
  sourcemap: false,
  write: false,
  logLevel: 'warning',
});

const files = new Map();
for (const f of result.outputFiles) files.set(f.path.slice(dist.length + 1), Buffer.from(f.contents));
for (const name of ['index.html', 'favicon.svg']) files.set(name, readFileSync(join(here, 'static', name)));

if (check) {
  const problems = [];
  const committed = new Set(readdirSync(dist));
  for (const [name, body] of files) {
    let old;
    try { old = readFileSync(join(dist, name)); } catch { problems.push(`${name} is missing from dist/`); continue; }
    if (!old.equals(body)) problems.push(`${name} differs from a fresh build`);
    committed.delete(name);
  }
  for (const name of committed) problems.push(`${name} in dist/ is not produced by the build`);
  if (problems.length) {
    console.error(`internal/ui/dist is stale; run \`npm run build\` in internal/ui/src and commit:\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`internal/ui/dist matches a fresh build (${files.size} files)`);
} else {
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist, { recursive: true });
  for (const [name, body] of files) writeFileSync(join(dist, name), body);
  console.log(`wrote ${[...files.keys()].sort().join(', ')} to internal/ui/dist`);
}
