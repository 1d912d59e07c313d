import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'

/**
 * POST /v1/pipeline-runs reads inline entity_rows from the body's bytes into columns, like
 * POST /v1/training-sets (routes/entity-rows-body.ts). Each body is sent as is and with an
 * `"entity_rows":[]` member in front (the same request by JSON.parse semantics, left to the
 * ordinary parser and row objects): the runs and the errors must be the same.
 */

const H = 3_600_000
const T0 = Date.UTC(2023, 0, 1)
const iso = (ms: number): string => new Date(ms).toISOString()

function viaObjects (body: string): string {
  const at = body.indexOf('{')
  return `${body.slice(0, at)}{"entity_rows":[],${body.slice(at + 1)}`
}

t.test('a run from scanned rows is the run from parsed rows', async (t) => {
  const { app, sql } = await buildTestApp(t, { config: { BODY_LIMIT_BYTES: 64 * 1024 } })
  const price = await insertDefinition(sql, { name: 'close_price' })
  await appendValues(sql, Array.from({ length: 24 }, (_, h) => ({ featureId: price, entityId: h % 2 === 0 ? 'BTCUSDT' : 'ÉTH', eventTimeMs: T0 + h * H, num: 100 + h / 3 })))
  const post = async (payload: string) => app.inject({ method: 'POST', url: '/v1/pipeline-runs', headers: { 'content-type': 'application/json' }, payload })
  const problem = (body: string): unknown => {
    const p = JSON.parse(body)
    delete p.request_id
    return p
  }

  const rows = Array.from({ length: 3000 }, (_, i) => `{"entity_id":"${i % 3 === 0 ? 'ÉTH' : 'BTCUSDT'}","event_time":"${iso(T0 + (i % 30) * H + 1)}","label":${i % 2},"note":"r\\"${i}"}`)
  const body = `{"name":"scan","features":["close_price"],"entity_rows":[${rows.join(',')}],"model":"m"}`
  t.ok(body.length > 64 * 1024, 'larger than BODY_LIMIT_BYTES: runs take TRAINING_BODY_LIMIT_BYTES')
  const a = await post(body)
  const b = await post(viaObjects(body))
  t.equal(a.statusCode, 201, a.body.slice(0, 300))
  t.equal(b.statusCode, 201, b.body.slice(0, 300))
  const ra = a.json()
  const rb = b.json()
  t.equal(ra.fingerprint, rb.fingerprint, 'the same dataset')
  t.same(ra.entity_spec, rb.entity_spec)
  t.match(ra.entity_spec, { type: 'rows', row_count: 3000, extra_columns: ['label', 'note'], min_event_time: iso(T0 + 1), max_event_time: iso(T0 + 29 * H + 1) })
  const dataset = await app.inject({ method: 'GET', url: `/v1/pipeline-runs/${ra.id}/dataset`, headers: { accept: 'text/csv' } })
  const again = await app.inject({ method: 'GET', url: `/v1/pipeline-runs/${rb.id}/dataset`, headers: { accept: 'text/csv' } })
  t.equal(dataset.body, again.body)
  t.equal(dataset.body.split('\n').length, 3002)
  t.match(dataset.body, /^entity_id,event_time,label,note,close_price@1\n/)
  const repro = await app.inject({ method: 'POST', url: `/v1/pipeline-runs/${ra.id}/reproduce` })
  t.match(repro.json(), { reproduction: { verdict: 'reproducible' } })

  // errors: the same answers, whichever parser read the rows
  for (const [name, text, status] of [
    ['row and body schema errors', '{"name":"","features":"close_price","entity_rows":[{"entity_id":""},{"event_time":1}],"model":5,"bogus":1}', 400],
    ['bad timestamps', `{"name":"x","features":["close_price"],"entity_rows":[{"entity_id":"A","event_time":"2023-01-01T00:00:00"},{"entity_id":"A","event_time":"${iso(T0)}"}]}`, 422],
    ['NUL in a pass-through column', `{"name":"x","features":["close_price"],"entity_rows":[{"entity_id":"A","event_time":"${iso(T0)}","n":"a\\u0000"}]}`, 400],
    ['malformed rows', `{"name":"x","features":["close_price"],"entity_rows":[{"entity_id":"A","event_time":"${iso(T0)}"},]}`, 400],
  ] as const) {
    const x = await post(text)
    const y = await post(viaObjects(text))
    t.equal(x.statusCode, status, `${name}: ${x.body.slice(0, 300)}`)
    t.same(problem(x.body), problem(y.body), name)
  }
  const errors = problem((await post('{"validation":"maybe","entity_rows":[{"entity_id":"","event_time":"x"}],"features":{},"name":""}')).body) as { errors: Array<{ path: string }> }
  t.same(errors.errors.map((e) => e.path), ['/body/name', '/body/features', '/body/entity_rows/0/entity_id', '/body/validation'], 'errors in the order of the body schema')
  const [{ n }] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM pipeline_runs WHERE kind = 'run'`
  t.equal(n, 2, 'no run from a refused request')

  // the other routes of the plugin keep their own body limit
  const patch = await app.inject({ method: 'PATCH', url: `/v1/pipeline-runs/${ra.id}`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ metrics: { big: 'x'.repeat(70 * 1024) } }) })
  t.equal(patch.statusCode, 413)
  const small = await app.inject({ method: 'PATCH', url: `/v1/pipeline-runs/${ra.id}`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ metrics: { auc: 0.61 } }) })
  t.equal(small.statusCode, 200)
  t.match(small.json(), { metrics: { auc: 0.61 } })
})
