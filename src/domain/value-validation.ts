import type { FeatureDefinition, StoredValue, Scalar } from './feature.js'
import { MAX_SAFE_INT64 } from './feature.js'

export type ValueCheck = { ok: true, value: StoredValue } | { ok: false, rule: string, message: string }

const NON_FINITE = new Map<string, number>([['NaN', Number.NaN], ['Infinity', Number.POSITIVE_INFINITY], ['+Infinity', Number.POSITIVE_INFINITY], ['-Infinity', Number.NEGATIVE_INFINITY]])

/**
 * The number a non-finite spelling stands for (NaN, Infinity, +Infinity, -Infinity), else
 * undefined. The first characters are looked at before the Map: every number of a CSV body
 * passes here, and a lookup hashes the whole string (an object's `in` would even intern it,
 * and would take inherited names such as "constructor" for spellings).
 */
function nonFinite (raw: string): number | undefined {
  const c = raw.charCodeAt(0)
  if (c === 78 || c === 73 || ((c === 43 || c === 45) && raw.charCodeAt(1) === 73)) return NON_FINITE.get(raw) // N, I, +I, -I
  return undefined
}

/**
 * Checks one raw value (from JSON, NDJSON or CSV text) against a definition and
 * converts it to its stored form. `fromText` marks CSV cells, where everything is a string
 * and an empty cell is null.
 */
export function checkValue (def: Pick<FeatureDefinition, 'dtype' | 'validation'>, raw: unknown, fromText = false): ValueCheck {
  const rules = def.validation
  if (raw === undefined) return { ok: false, rule: 'required', message: 'value is missing' }
  if (raw === null || (fromText && raw === '')) {
    return rules.nullable ? { ok: true, value: { num: null, text: null } } : { ok: false, rule: 'nullable', message: 'null is not allowed for this feature' }
  }
  let num: number | null = null
  let text: string | null = null
  switch (def.dtype) {
    case 'float64': {
      const special = typeof raw === 'string' ? nonFinite(raw) : undefined
      if (typeof raw === 'number') num = raw
      else if (special !== undefined) num = special
      else if (typeof raw === 'string' && fromText && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw.trim())) num = Number(raw)
      else return { ok: false, rule: 'dtype', message: `expected a float64 number, got ${describe(raw)}` }
      if (!Number.isFinite(num)) {
        if (!rules.allow_non_finite) return { ok: false, rule: 'allow_non_finite', message: `non-finite value ${String(num)} is not allowed for this feature` }
        return { ok: true, value: { num, text: null } }
      }
      break
    }
    case 'int64': {
      if (typeof raw === 'number') num = raw
      else if (typeof raw === 'string' && fromText && /^[+-]?\d+$/.test(raw.trim())) num = Number(raw)
      else return { ok: false, rule: 'dtype', message: `expected an int64 integer, got ${describe(raw)}` }
      if (!Number.isInteger(num)) return { ok: false, rule: 'dtype', message: `expected an int64 integer, got ${num}` }
      if (Math.abs(num) > MAX_SAFE_INT64) return { ok: false, rule: 'dtype', message: `int64 values must be within ±${MAX_SAFE_INT64} (2^53-1)` }
      break
    }
    case 'bool': {
      if (typeof raw === 'boolean') num = raw ? 1 : 0
      else if (fromText && typeof raw === 'string' && /^(true|false|1|0)$/i.test(raw.trim())) num = /^(true|1)$/i.test(raw.trim()) ? 1 : 0
      else return { ok: false, rule: 'dtype', message: `expected a boolean, got ${describe(raw)}` }
      break
    }
    case 'string': {
      if (typeof raw !== 'string') return { ok: false, rule: 'dtype', message: `expected a string, got ${describe(raw)}` }
      if (raw.includes('\u0000')) return { ok: false, rule: 'dtype', message: 'strings must not contain NUL characters' }
      text = raw
      break
    }
  }
  if (num !== null && def.dtype !== 'bool') {
    if (rules.min !== undefined && rules.min !== null && num < rules.min) return { ok: false, rule: 'min', message: `${num} is below the minimum ${rules.min}` }
    if (rules.max !== undefined && rules.max !== null && num > rules.max) return { ok: false, rule: 'max', message: `${num} is above the maximum ${rules.max}` }
  }
  if (rules.allowed_values && rules.allowed_values.length > 0) {
    const v: Scalar = text ?? (def.dtype === 'bool' ? num === 1 : num as number)
    if (!rules.allowed_values.some((a) => a === v)) return { ok: false, rule: 'allowed_values', message: `${JSON.stringify(v)} is not one of the allowed values ${JSON.stringify(rules.allowed_values)}` }
  }
  return { ok: true, value: { num, text } }
}

function describe (raw: unknown): string {
  if (typeof raw === 'string') return `the string ${JSON.stringify(raw.length > 40 ? raw.slice(0, 37) + '...' : raw)}`
  if (Array.isArray(raw)) return 'an array'
  return typeof raw === 'object' ? 'an object' : `${typeof raw} ${String(raw)}`
}

/** The API form of a stored value: NaN and infinities as strings, since JSON has no such numbers. */
export function decodeValue (dtype: FeatureDefinition['dtype'], num: number | null, text: string | null): Scalar | null {
  if (dtype === 'string') return text
  if (num === null) return null
  if (dtype === 'bool') return num === 1
  if (!Number.isFinite(num)) return Number.isNaN(num) ? 'NaN' : (num > 0 ? 'Infinity' : '-Infinity')
  return num
}
