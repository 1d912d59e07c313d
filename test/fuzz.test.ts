import t from 'tap'
import fc from 'fast-check'
import Ajv2020 from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { buildTestApp } from './lib/helper.js'

/**
 * Fuzzing from the OpenAPI document: every operation the running app documents (routes
 * added later included) gets requests generated from its own schemas, then broken: wrong
 * types, missing and extra fields, huge numbers, NaN strings, deep nesting, unicode, SQL
 * metacharacters, oversized bodies, wrong content types. No answer may be a 5xx; an error
 * must be valid problem+json; a success must match its documented schema.
 *
 * FUZZ_SEED=<n> reproduces a run; FUZZ_RUNS=<n> changes the number of requests; FUZZ_DEBUG=1
 * prints every request as it is answered.
 */
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const RUNS = Number(process.env.FUZZ_RUNS ?? 5000)
const CONCURRENCY = 4
const BODY_LIMIT = 64 * 1024

type Schema = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any
interface Param { name: string, in: 'path' | 'query' | 'header', required: boolean, schema: Schema }
interface Operation { method: string, path: string, params: Param[], bodies: Record<string, Schema>, bodyRequired: boolean, responses: Record<string, Schema | undefined> }
interface FuzzRequest { op: number, kind: string, method: string, url: string, headers: Record<string, string>, payload?: string }

// --- hostile values -------------------------------------------------------------------------
const SQL_META = ["'", "''", "'; DROP TABLE feature_definitions; --", '" OR "1"="1', "' OR 1=1 --", '\\', '%', '_', '$1', '$$', ';', '--', '/*', '*/', "E'\\x00'", 'NULL', '\\N', '\t', ':name', '?', '\\\\x27']
const UNICODE = ['é', '日本語', '🚀', '👩‍👩‍👧', '\u200b', '\u202e', '\ufeff', '\ud800', '\udfff', 'ﬁ', 'Ω', '\u0301', '\u0000', '\u001f', '\u007f']
const NAUGHTY = [...SQL_META, ...UNICODE, '', ' ', 'NaN', '-NaN', 'Infinity', '-Infinity', 'null', 'undefined', 'true', '0', '-0', '1e309', '9'.repeat(400), '0x1F', '../../../etc/passwd', '%00', '%2e%2e%2f', '<script>alert(1)</script>', '${jndi:ldap://x}', '{{7*7}}', 'a'.repeat(5000)]
const HUGE_NUMBERS = [Number.MAX_SAFE_INTEGER + 2, -Number.MAX_SAFE_INTEGER - 2, 2 ** 63, -(2 ** 63), 1e308, -1e308, 5e-324, 2 ** 31, -(2 ** 31) - 1, 0, -1, 1.5, 253402300800000]

const naughtyString = fc.oneof(
  fc.constantFrom(...NAUGHTY),
  fc.array(fc.constantFrom(...SQL_META, ...UNICODE, 'a', 'Z', '9', ' '), { minLength: 1, maxLength: 12 }).map((a) => a.join('')),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
)
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  naughtyString, fc.constantFrom(...HUGE_NUMBERS), fc.double(), fc.integer(), fc.boolean(), fc.constant(null),
  fc.constant([]), fc.constant({}), fc.array(naughtyString, { maxLength: 3 }), fc.dictionary(naughtyString, naughtyString, { maxKeys: 3 }),
)

// --- values that mean something to this service (so requests get past the first check) ----
const FEATURES = ['close_price', 'volume', 'btc_dominance', 'market_correlation', 'volume_ratio', 'atr_percentage']
const ENTITIES = ['BTCUSDT', 'ETHUSDT', 'MARKET', "O'Brien; --"]
const timestamp = fc.oneof(
  fc.integer({ min: Date.UTC(2023, 0, 1), max: Date.UTC(2024, 0, 1) }).map((ms) => new Date(ms).toISOString()),
  fc.integer({ min: Date.UTC(2023, 0, 1), max: Date.UTC(2024, 0, 1) }),
)
const HINTS: Record<string, fc.Arbitrary<unknown>> = {
  feature: fc.constantFrom(...FEATURES),
  features: fc.array(fc.constantFrom(...FEATURES), { minLength: 1, maxLength: 4 }),
  entity_id: fc.constantFrom(...ENTITIES),
  entities: fc.array(fc.constantFrom(...ENTITIES), { minLength: 1, maxLength: 4 }),
  entity: fc.constant('symbol'),
  contract: fc.constant('phase5b_ensemble_features'),
  event_time: timestamp,
  as_of: timestamp,
  from: timestamp,
  to: timestamp,
  value: fc.oneof(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.constant(null)),
}

// --- schema -> arbitrary ------------------------------------------------------------------
function deref (doc: Schema, s: Schema | undefined): Schema {
  let out = s ?? {}
  for (let i = 0; i < 10 && typeof out.$ref === 'string'; i++) {
    out = out.$ref.split('/').slice(1).reduce((o: Schema, k: string) => o?.[k], doc) ?? {}
  }
  return out
}

function fromSchema (doc: Schema, raw: Schema | undefined, depth = 0, name?: string): fc.Arbitrary<unknown> {
  const s = deref(doc, raw)
  if (name !== undefined && HINTS[name] && depth > 0) return fc.oneof({ weight: 3, arbitrary: HINTS[name] }, { weight: 1, arbitrary: fc.constant(undefined).chain(() => plain(doc, s, depth)) })
  return plain(doc, s, depth)
}

function plain (doc: Schema, s: Schema, depth: number): fc.Arbitrary<unknown> {
  if (depth > 6) return fc.constant(null)
  const examples: unknown[] = [...(Array.isArray(s.examples) ? s.examples : []), ...(s.example !== undefined ? [s.example] : [])]
  const typed = byType(doc, s, depth)
  return examples.length > 0 ? fc.oneof(fc.constantFrom(...examples), typed) : typed
}

function byType (doc: Schema, s: Schema, depth: number): fc.Arbitrary<unknown> {
  if ('const' in s) return fc.constant(s.const)
  if (Array.isArray(s.enum)) return fc.constantFrom(...s.enum)
  const alts = s.anyOf ?? s.oneOf
  if (Array.isArray(alts) && alts.length > 0) return fc.oneof(...alts.map((a: Schema) => fromSchema(doc, a, depth + 1)))
  if (Array.isArray(s.allOf)) return fromSchema(doc, Object.assign({}, ...s.allOf.map((a: Schema) => deref(doc, a))), depth)
  const types: string[] = Array.isArray(s.type) ? s.type : s.type ? [s.type] : []
  if (types.length > 1) return fc.oneof(...types.map((ty) => byType(doc, { ...s, type: ty }, depth)))
  switch (types[0]) {
    case 'string': {
      if (s.format === 'date-time') return timestamp.map((v) => new Date(v as string | number).toISOString())
      if (s.format === 'uuid') return fc.uuid()
      if (typeof s.pattern === 'string') {
        try { return fc.stringMatching(new RegExp(s.pattern)).filter((x) => x.length <= (s.maxLength ?? 1e9)) } catch { /* unsupported */ }
      }
      return fc.string({ minLength: s.minLength ?? 0, maxLength: Math.min(s.maxLength ?? 30, 30) })
    }
    case 'integer': return fc.integer({ min: Math.max(s.minimum ?? -1e6, -1e9), max: Math.min(s.maximum ?? 1e6, 1e9) })
    case 'number': return fc.double({ min: s.minimum ?? -1e6, max: s.maximum ?? 1e6, noNaN: true })
    case 'boolean': return fc.boolean()
    case 'null': return fc.constant(null)
    case 'array': return fc.array(fromSchema(doc, s.items, depth + 1), { minLength: s.minItems ?? 0, maxLength: Math.min(s.maxItems ?? 4, 4) })
    case 'object': {
      const props: Record<string, Schema> = s.properties ?? {}
      const required = new Set<string>(s.required ?? [])
      const record: Record<string, fc.Arbitrary<unknown>> = {}
      for (const [k, v] of Object.entries(props)) record[k] = fromSchema(doc, v, depth + 1, k)
      return fc.record(record, { requiredKeys: Object.keys(props).filter((k) => required.has(k)) })
    }
    default: return anyJson
  }
}

// --- breaking a valid value ----------------------------------------------------------------
function deepNest (depth: number): string {
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
}

/** Replaces, drops or adds one field somewhere in a JSON value. */
function mutate (value: unknown): fc.Arbitrary<unknown> {
  const paths: Array<Array<string | number>> = []
  const walk = (v: unknown, p: Array<string | number>, d: number): void => {
    paths.push(p)
    if (d > 5 || v === null || typeof v !== 'object') return
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i], d + 1))
    else for (const [k, x] of Object.entries(v)) walk(x, [...p, k], d + 1)
  }
  walk(value, [], 0)
  return fc.tuple(fc.constantFrom(...paths), fc.constantFrom('replace', 'drop', 'add', 'nest'), anyJson, naughtyString).map(([path, how, junk, key]) => {
    const copy = structuredClone(value) as Record<string | number, unknown>
    if (path.length === 0) return how === 'nest' ? [[[[[[copy]]]]]] : junk
    let parent: Record<string | number, unknown> = copy
    for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>
    const last = path[path.length - 1]
    if (how === 'replace') parent[last] = junk
    else if (how === 'drop') { if (Array.isArray(parent)) parent.splice(last as number, 1); else delete parent[last] }
    else if (how === 'nest') parent[last] = JSON.parse(deepNest(40))
    else if (Array.isArray(parent[last])) (parent[last] as unknown[]).push(junk) // a key such as 'length' would not add a field to an array
    else if (!Array.isArray(parent) && parent[last] !== null && typeof parent[last] === 'object') (parent[last] as Record<string, unknown>)[key] = junk
    else parent[last] = junk
    return copy
  })
}

// --- operations and requests ---------------------------------------------------------------
function operations (doc: Schema): Operation[] {
  const out: Operation[] = []
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, Schema>>)) {
    for (const [m, op] of Object.entries(ops)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(m)) continue
      const content = (op.requestBody?.content ?? {}) as Record<string, { schema?: Schema }>
      const responses: Record<string, Schema | undefined> = {}
      for (const [code, r] of Object.entries((op.responses ?? {}) as Record<string, Schema>)) responses[code] = deref(doc, r).content?.['application/json']?.schema
      out.push({
        method: m.toUpperCase(),
        path,
        params: ((op.parameters ?? []) as Param[]).filter((p) => ['path', 'query', 'header'].includes(p.in)),
        bodies: Object.fromEntries(Object.entries(content).map(([ct, c]) => [ct, c.schema ?? {}])),
        bodyRequired: op.requestBody?.required === true,
        responses,
      })
    }
  }
  return out
}

function paramValue (doc: Schema, p: Param): fc.Arbitrary<string | undefined> {
  const hint = p.name === 'name' ? fc.constantFrom(...FEATURES, 'phase5b_ensemble_features') : HINTS[p.name]
  const good = hint ?? fromSchema(doc, p.schema, 1)
  const v = fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: fromSchema(doc, p.schema, 1) })
  return v.map((x) => x === undefined ? undefined : Array.isArray(x) ? x.join(',') : String(x))
}

/** Percent-encoding that survives lone surrogates; `raw:` values go into the URL as they are. */
function enc (s: string): string {
  if (s.startsWith('raw:')) return s.slice(4)
  try { return encodeURIComponent(s) } catch { return [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('') }
}

const RAW_URL_PIECES = ['raw:%', 'raw:%zz', 'raw:%C0%AF', 'raw:%E0%A4%A', 'raw:%00', 'raw:..', 'raw:.%2e', 'raw:a/b', 'raw:%2F', 'raw:%FF%FE', 'raw:?x=1', 'raw:#frag', 'raw:;x']

function buildUrl (op: Operation, values: Record<string, string | undefined>): string {
  let url = op.path.replace(/\{([^}]+)\}/g, (_m, n: string) => enc(values[`path:${n}`] ?? 'x'))
  const query = op.params.filter((p) => p.in === 'query' && values[`query:${p.name}`] !== undefined)
    .map((p) => `${encodeURIComponent(p.name)}=${enc(values[`query:${p.name}`]!)}`)
  if (query.length > 0) url += `?${query.join('&')}`
  return url
}

function requestFor (doc: Schema, ops: Operation[], index: number): fc.Arbitrary<FuzzRequest> {
  const op = ops[index]
  const paramArbs: Record<string, fc.Arbitrary<string | undefined>> = {}
  for (const p of op.params) paramArbs[`${p.in}:${p.name}`] = p.required ? paramValue(doc, p) : fc.option(paramValue(doc, p), { nil: undefined, freq: 2 })
  const params = fc.record(paramArbs)
  const jsonSchema = op.bodies['application/json']
  const body = jsonSchema ? fromSchema(doc, jsonSchema) : fc.constant(undefined)
  const base = fc.record({ values: params, body, accept: fc.constantFrom(undefined, undefined, 'application/json', 'application/x-ndjson', 'text/csv', 'text/html', '*/*', 'application/xml;q=0.9') })

  const finish = (kind: string, values: Record<string, string | undefined>, payload: string | undefined, headers: Record<string, string>): FuzzRequest => {
    const h: Record<string, string> = { ...headers }
    for (const p of op.params) if (p.in === 'header' && values[`header:${p.name}`] !== undefined) h[p.name] = values[`header:${p.name}`]!.replace(/^raw:/, '').replace(/[^\x20-\x7e]/g, '?')
    return { op: index, kind, method: op.method, url: buildUrl(op, values), headers: h, ...(payload !== undefined ? { payload } : {}) }
  }
  const json = (v: unknown): string | undefined => v === undefined ? undefined : JSON.stringify(v)
  const jsonHeaders = (accept?: string): Record<string, string> => ({ 'content-type': 'application/json', ...(accept ? { accept } : {}) })
  const hasBody = Object.keys(op.bodies).length > 0

  const kinds: Array<{ weight: number, arbitrary: fc.Arbitrary<FuzzRequest> }> = [
    { weight: 6, arbitrary: base.map((b) => finish('valid', b.values, hasBody ? json(b.body) : undefined, hasBody ? jsonHeaders(b.accept) : b.accept ? { accept: b.accept } : {})) },
    { weight: 2, arbitrary: fc.tuple(base, fc.constantFrom(...op.params.map((p) => `${p.in}:${p.name}`), 'none'), fc.oneof(naughtyString, fc.constantFrom(...HUGE_NUMBERS).map(String), fc.constantFrom(...RAW_URL_PIECES)))
      .map(([b, key, bad]) => finish('bad-param', { ...b.values, ...(key !== 'none' ? { [key]: bad } : {}) }, hasBody ? json(b.body) : undefined, hasBody ? jsonHeaders() : {})) },
  ]
  if (hasBody) {
    kinds.push(
      { weight: 6, arbitrary: base.chain((b) => mutate(b.body ?? {}).map((m) => finish('mutated-body', b.values, json(m), jsonHeaders(b.accept)))) },
      { weight: 1, arbitrary: fc.tuple(base, anyJson).map(([b, junk]) => finish('junk-body', b.values, json(junk) ?? 'null', jsonHeaders())) },
      { weight: 1, arbitrary: fc.tuple(base, fc.constantFrom('text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'image/png', 'application/x-ndjson', 'text/csv', ''), fc.constantFrom('{"rows":[]}', 'a,b\n1,2\n', '<x/>', '\u0000\u0001', '{', '[]', 'feature,entity_id,event_time,value\nclose_price,BTCUSDT,2023-01-01T00:00:00Z,NaN\n'))
        .map(([b, ct, raw]) => finish('content-type', b.values, raw, ct ? { 'content-type': ct } : {})) },
      { weight: 1, arbitrary: base.map((b) => finish('syntax', b.values, (json(b.body) ?? '{}').slice(0, -1) + ',,', jsonHeaders())) },
      { weight: 1, arbitrary: fc.tuple(base, fc.integer({ min: 500, max: 20_000 })).map(([b, depth]) => finish('deep-nesting', b.values, deepNest(depth), jsonHeaders())) },
      { weight: 1, arbitrary: base.map((b) => finish('oversized', b.values, JSON.stringify({ ...(b.body as object ?? {}), padding: 'x'.repeat(BODY_LIMIT * 5) }), jsonHeaders())) },
    )
  } else {
    kinds.push({ weight: 1, arbitrary: base.map((b) => finish('unexpected-body', b.values, '{"x":1}', { 'content-type': 'application/json' })) })
  }
  if (op.bodies['application/x-ndjson']) {
    const goodRow = fc.record({ feature: HINTS.feature, entity_id: HINTS.entity_id, event_time: timestamp, value: HINTS.value })
    const line = fc.oneof(goodRow.map((r) => JSON.stringify(r)), goodRow.chain((r) => mutate(r)).map((r) => JSON.stringify(r)), naughtyString, fc.constant(''), fc.constant('{"feature":'))
    kinds.push({ weight: 2, arbitrary: fc.tuple(base, fc.array(line, { minLength: 1, maxLength: 6 }), fc.constantFrom('\n', '\r\n'))
      .map(([b, lines, eol]) => finish('ndjson', b.values, lines.join(eol), { 'content-type': 'application/x-ndjson' })) })
  }
  if (op.bodies['text/csv']) {
    const cell = fc.oneof(fc.constantFrom(...FEATURES, ...ENTITIES, '2023-06-01T00:00:00Z', '1.5', '', 'NaN', '"quoted, with comma"', '"unterminated', 'a\nb'), naughtyString.map((x) => x.replace(/[\r\n]/g, ' ')))
    const header = fc.oneof(fc.constant('feature,entity_id,event_time,value'), fc.constant('entity_id,event_time,close_price,volume'), fc.array(cell, { minLength: 1, maxLength: 5 }).map((c) => c.join(',')))
    kinds.push({ weight: 2, arbitrary: fc.tuple(base, header, fc.array(fc.array(cell, { minLength: 1, maxLength: 5 }), { maxLength: 5 }))
      .map(([b, h, rows]) => finish('csv', b.values, [h, ...rows.map((r) => r.join(','))].join('\n') + '\n', { 'content-type': 'text/csv' })) })
  }
  return fc.oneof(...kinds)
}

function isProblem (body: unknown, status: number): boolean {
  const p = body as Record<string, unknown>
  return p !== null && typeof p === 'object' && typeof p.type === 'string' && typeof p.title === 'string' && typeof p.detail === 'string' && p.status === status
}

t.test(`fuzzing every documented operation (${RUNS} requests, seed ${SEED})`, async (t) => {
  t.comment(`FUZZ_SEED=${SEED} reproduces this run`)
  const t0 = Date.now()
  const { app } = await buildTestApp(t, {
    defaults: true,
    config: { BODY_LIMIT_BYTES: BODY_LIMIT, TRAINING_BODY_LIMIT_BYTES: BODY_LIMIT * 4, MAX_JSON_ROWS: 500, MAX_TRAINING_ROWS: 20_000, PIPELINE_SYNC_MAX_ROWS: 20_000 } as never,
  })
  const doc = app.swagger() as Schema
  const ops = operations(doc)
  t.ok(ops.length > 0)

  const ajv = new Ajv2020.default({ strict: false, allErrors: false, validateFormats: true })
  addFormats.default(ajv)
  ajv.addSchema({ $id: 'doc', components: doc.components }, 'doc')
  const validators = new Map<string, (v: unknown) => boolean>()
  const validatorFor = (opIndex: number, status: number): ((v: unknown) => boolean) | undefined => {
    const key = `${opIndex}:${status}`
    if (!validators.has(key)) {
      const schema = ops[opIndex].responses[String(status)]
      if (!schema) return undefined
      const fixed = JSON.parse(JSON.stringify(schema).replace(/"#\/components\//g, '"doc#/components/'))
      validators.set(key, ajv.compile(fixed))
    }
    return validators.get(key)
  }

  t.comment(`app ready in ${Date.now() - t0} ms`)
  const t1 = Date.now()
  const perOperation = ops.map((_op, i) => requestFor(doc, ops, i))
  const requests = fc.sample(fc.integer({ min: 0, max: ops.length - 1 }).chain((i) => perOperation[i]), { seed: SEED, numRuns: RUNS })
  t.comment(`${requests.length} requests generated in ${Date.now() - t1} ms`)
  const failures = new Map<string, string>()
  const tally = new Map<string, number>()
  const started = Date.now()

  const slow: string[] = []
  const check = async (r: FuzzRequest, i: number): Promise<void> => {
    const sent = Date.now()
    const res = await app.inject({ method: r.method as 'GET', url: r.url, headers: r.headers, ...(r.payload !== undefined ? { payload: r.payload } : {}) })
    const took = Date.now() - sent
    if (took > 2000) slow.push(`${took} ms: #${i} ${r.kind} ${r.method} ${r.url.slice(0, 200)} ${(r.payload ?? '').slice(0, 300)}`)
    if (process.env.FUZZ_DEBUG) process.stderr.write(`${i} ${took}ms ${res.statusCode} ${r.method} ${r.url.slice(0, 120)}\n`)
    const op = ops[r.op]
    tally.set(`${res.statusCode}`, (tally.get(`${res.statusCode}`) ?? 0) + 1)
    const repro = `#${i} ${r.kind}: ${r.method} ${r.url.slice(0, 300)} headers=${JSON.stringify(r.headers)} body=${(r.payload ?? '').slice(0, 400)}`
    const fail = (why: string): void => {
      const key = `${op.method} ${op.path} ${why.split(':')[0]}`
      if (!failures.has(key)) failures.set(key, `${why}\n    repro (FUZZ_SEED=${SEED}): ${repro}\n    answer: ${res.statusCode} ${res.body.slice(0, 500)}`)
    }
    if (res.statusCode >= 500) return fail(`${res.statusCode}: server error`)
    const type = String(res.headers['content-type'] ?? '')
    if (res.statusCode >= 400) {
      if (!type.startsWith('application/problem+json')) return fail(`${res.statusCode} not problem+json: content-type ${type}`)
      let body: unknown
      try { body = res.json() } catch { return fail(`${res.statusCode} problem is not JSON`) }
      if (!isProblem(body, res.statusCode)) return fail(`${res.statusCode} malformed problem: ${res.body.slice(0, 200)}`)
      return
    }
    if (type.startsWith('application/json') && res.body.length > 0) {
      let body: unknown
      try { body = res.json() } catch { return fail(`${res.statusCode} success is not JSON`) }
      const validate = validatorFor(r.op, res.statusCode)
      if (validate && !validate(body)) return fail(`${res.statusCode} success does not match its schema: ${JSON.stringify((validate as unknown as { errors: unknown }).errors).slice(0, 300)}`)
    }
  }

  for (let i = 0; i < requests.length; i += CONCURRENCY) {
    await Promise.all(requests.slice(i, i + CONCURRENCY).map((r, j) => check(r, i + j)))
  }

  if (slow.length > 0) t.comment(`slowest requests (> 2 s):\n${slow.slice(0, 5).join('\n')}`)
  const health = await app.inject({ method: 'GET', url: '/health' })
  t.equal(health.statusCode, 200, 'the process is still up')
  t.comment(`${requests.length} requests over ${ops.length} operations in ${Date.now() - started} ms; statuses ${JSON.stringify(Object.fromEntries([...tally].sort()))}`)
  t.ok(requests.length >= 5000 || process.env.FUZZ_RUNS !== undefined, `${requests.length} requests`)
  t.same([...failures.values()], [], `no 5xx, every error problem+json, every success as documented (seed ${SEED})`)
})
