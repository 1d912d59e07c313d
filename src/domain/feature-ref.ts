import { BadRequestError, fieldOfPath } from './errors.js'
import { NAME_RE, NAME_PATTERN } from './names.js'

/** `name` (latest active version) or `name@version`. The only parser of references. */
export interface FeatureRef {
  name: string
  version?: number
}

export function refProblem (ref: unknown): string | undefined {
  if (typeof ref !== 'string') return 'must be a string of the form name or name@version'
  const at = ref.indexOf('@')
  const name = at < 0 ? ref : ref.slice(0, at)
  if (!NAME_RE.test(name)) return `name must match ${NAME_PATTERN}`
  if (at >= 0) {
    const v = ref.slice(at + 1)
    if (!/^[1-9][0-9]{0,8}$/.test(v)) return 'version after @ must be a positive integer'
  }
  return undefined
}

export function parseRef (ref: string, path = 'feature'): FeatureRef {
  const problem = refProblem(ref)
  if (problem) throw new BadRequestError(`Invalid reference '${ref}': ${problem}`, [{ path, field: fieldOfPath(path), rule: 'ref', message: problem }])
  const at = ref.indexOf('@')
  return at < 0 ? { name: ref } : { name: ref.slice(0, at), version: Number(ref.slice(at + 1)) }
}

export function formatRef (ref: FeatureRef): string {
  return ref.version === undefined ? ref.name : `${ref.name}@${ref.version}`
}
