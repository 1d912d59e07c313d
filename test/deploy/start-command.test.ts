import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { REPO_ROOT, SERVICE_NODE_ARGS } from '../lib/server-process.js'

// `npm start`, the container's CMD and the processes the tests and benches spawn all start the
// service with the same node arguments (the V8 heap setting among them)
t.test('npm start and the Dockerfile start the service as the tests and benches do', async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  t.equal(pkg.scripts.start, ['node', ...SERVICE_NODE_ARGS].join(' '))
  const cmd = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('CMD '))
  t.ok(cmd !== undefined, 'the Dockerfile has a CMD')
  t.same(JSON.parse(cmd!.slice(4)), ['node', ...SERVICE_NODE_ARGS])
})
