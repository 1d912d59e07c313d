import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { REPO_ROOT, SERVICE_ENV, SERVICE_NODE_ARGS } from '../lib/server-process.js'

// `npm start`, the container's CMD and the processes the tests and benches spawn all start the
// service with the same node arguments (the V8 heap setting among them) and environment (glibc's
// malloc on huge pages)
t.test('npm start and the Dockerfile start the service as the tests and benches do', async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  const env = Object.entries(SERVICE_ENV).map(([k, v]) => `${k}=${v}`)
  t.equal(pkg.scripts.start, [...env, 'node', ...SERVICE_NODE_ARGS].join(' '))
  const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8').split('\n')
  const cmd = dockerfile.find((l) => l.startsWith('CMD '))
  t.ok(cmd !== undefined, 'the Dockerfile has a CMD')
  t.same(JSON.parse(cmd!.slice(4)), ['node', ...SERVICE_NODE_ARGS])
  // the runtime stage's ENV: `ENV A=1 \` then `    B=2 \` ... lines
  const start = dockerfile.findIndex((l) => l.startsWith('ENV '))
  const envLines: string[] = []
  for (let i = start; i >= 0 && i < dockerfile.length; i++) {
    envLines.push(dockerfile[i].replace(/^ENV /, '').replace(/\\$/, '').trim())
    if (!dockerfile[i].endsWith('\\')) break
  }
  for (const kv of env) t.ok(envLines.includes(kv), `the Dockerfile sets ${kv}`)
})
