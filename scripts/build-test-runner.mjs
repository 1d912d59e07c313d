// Rebuilds tap's test runner with the plugins package.json's "tap" config names (tap's ts-node
// plugin off: the tests' TypeScript is loaded by tsx, as `npm start` loads the service). tap
// rebuilds by itself when its configuration changes, but only after the runner has loaded the
// old build: the first `npm test` after an install would still start every test file with both
// loaders (448 s for the main suite here, against 253 s). Building here, at install, spares
// that run. Skipped where tap is not installed (an install without devDependencies).
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'

const bin = path.join('node_modules', 'tap', 'dist', 'esm', 'run.mjs')
if (existsSync(bin)) {
  const res = spawnSync(process.execPath, [bin, 'build'], { stdio: ['ignore', 'ignore', 'inherit'] })
  if (res.status !== 0) {
    console.error(`tap build failed (exit ${res.status ?? res.signal}); the first test run rebuilds it`)
  } else {
    console.log('tap test runner built with the plugins of package.json')
  }
}
