// Minifies the JS loader trunk writes (wasm-bindgen's glue; trunk 0.21 leaves it as is) with
// esbuild, names it after its new content, and rewrites dist/index.html to match: the import
// and preload paths and the Subresource Integrity hash. The relay caches hashed names for a
// year, so a name must change whenever the bytes do (trunk's hash is of the code before this
// step: a new esbuild would otherwise change the file under the same name).
// Run by scripts/build-page.sh after `trunk build --release`.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { transform } from 'esbuild';

const dist = process.argv[2] ?? 'dist';
const sri = (bytes) => `sha384-${createHash('sha384').update(bytes).digest('base64')}`;
const indexPath = path.join(dist, 'index.html');
let index = readFileSync(indexPath, 'utf8');
for (const name of readdirSync(dist).filter((f) => f.endsWith('.js'))) {
  const file = path.join(dist, name);
  const original = readFileSync(file);
  const { code } = await transform(original.toString('utf8'), {
    minify: true,
    format: 'esm',
    target: 'es2022',
  });
  const before = sri(original);
  if (!index.includes(before)) throw new Error(`${indexPath} does not name ${name} by ${before}`);
  const hash = createHash('sha256').update(code).digest('hex').slice(0, 16);
  const renamed = name.replace(/-[0-9a-f]{8,16}\.js$/, `-${hash}.js`);
  if (renamed === name) throw new Error(`${name} does not end in trunk's -HASH.js`);
  writeFileSync(path.join(dist, renamed), code);
  rmSync(file);
  index = index.replaceAll(before, sri(Buffer.from(code))).replaceAll(`/${name}`, `/${renamed}`);
  console.log(`  ${name} -> ${renamed}: ${original.length} -> ${code.length} bytes minified`);
}
writeFileSync(indexPath, index);
