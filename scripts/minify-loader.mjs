// Minifies the JS loader trunk writes (wasm-bindgen's glue; trunk 0.21 leaves it as is) with
// esbuild, in place, and rewrites its Subresource Integrity hash in dist/index.html to match.
// The file keeps its name: trunk's hash in it names the build, and the minified text is a
// function of the original. Run by scripts/build-page.sh after `trunk build --release`.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
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
  writeFileSync(file, code);
  index = index.replaceAll(before, sri(Buffer.from(code)));
  console.log(`  ${name}: ${original.length} -> ${code.length} bytes minified`);
}
writeFileSync(indexPath, index);
