import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderOpenApi } from '../src/openapi.js'

t.test('openapi/openapi.json is current (run `npm run openapi` after changing routes)', async (t) => {
  const committed = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'openapi', 'openapi.json'), 'utf8')
  const current = await renderOpenApi()
  t.ok(committed === current, 'the committed OpenAPI document matches the routes; run `npm run openapi`')
  const doc = JSON.parse(current)
  t.equal(doc.openapi, '3.1.0')
  for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, { tags?: string[], summary?: string }>>)) {
    for (const [method, op] of Object.entries(ops)) {
      t.ok(op.tags && op.tags.length > 0, `${method.toUpperCase()} ${p} has tags`)
      t.ok(op.summary, `${method.toUpperCase()} ${p} has a summary`)
    }
  }
})

/**
 * Swagger UI's "Try it out" fills every parameter with its example: a required path parameter
 * needs one (or Execute is blocked), a range's bounds must make a range, and the optional
 * filters of a list have none (they would filter the list down to nothing).
 */
t.test('parameter examples work in Swagger UI', async (t) => {
  const doc = JSON.parse(await renderOpenApi())
  type Param = { name: string, in: string, required?: boolean, schema?: { examples?: unknown[], example?: unknown, default?: unknown }, examples?: Record<string, { value: unknown }>, example?: unknown }
  const exampleOf = (p: Param): unknown => p.example ?? Object.values(p.examples ?? {})[0]?.value ?? p.schema?.example ?? p.schema?.examples?.[0] ?? p.schema?.default
  for (const [route, ops] of Object.entries(doc.paths as Record<string, Record<string, { parameters?: Param[] }>>)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = op.parameters ?? []
      const name = `${method.toUpperCase()} ${route}`
      for (const p of params.filter((x) => x.in === 'path')) t.not(exampleOf(p), undefined, `${name}: path parameter ${p.name} has an example`)
      const from = params.find((x) => x.in === 'query' && x.name === 'from')
      const to = params.find((x) => x.in === 'query' && x.name === 'to')
      const [f, e] = [from && exampleOf(from), to && exampleOf(to)]
      if (f !== undefined && e !== undefined) t.ok(Date.parse(String(f)) < Date.parse(String(e)), `${name}: from ${String(f)} is before to ${String(e)}`)
      if (method === 'get' && route.match(/\/(pipeline-runs|drift\/logs|audit)$/)) {
        for (const p of params.filter((x) => x.in === 'query' && !['limit', 'cursor'].includes(x.name))) {
          t.equal(exampleOf(p), undefined, `${name}: the filter ${p.name} has no example`)
        }
      }
    }
  }
  t.equal(exampleOf(doc.paths['/v1/contracts/{name}/versions'].get.parameters.find((p: Param) => p.name === 'name')), 'phase5b_ensemble_features', 'contract routes give a contract name')
})
