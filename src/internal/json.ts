/**
 * Checks that a value is plain JSON that survives the trip to PostgreSQL or EventoDB and back unchanged: no
 * undefined, functions, symbols, bigints, non-finite numbers, class instances, cycles or holes, and no text that
 * PostgreSQL cannot store. `JSON.stringify` would quietly drop or rewrite each of those, so we refuse them instead.
 */

// PostgreSQL text and jsonb hold neither NUL nor unpaired UTF-16 surrogates (the latter would be silently replaced).
export const unstorable = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const maxDepth = 512

const describe = (value: object): string => {
  const name = Object.getPrototypeOf(value)?.constructor?.name
  return typeof name === "string" && name.length > 0 ? `an instance of ${name}` : "not a plain object"
}

/** Why `value` is not plain JSON that survives a round trip unchanged, or `undefined` when it is. */
export const jsonProblem = (value: unknown, path: string, ancestors: Set<object> = new Set()): string | undefined => {
  switch (typeof value) {
    case "string":
      return unstorable.test(value) ? `${path} holds a NUL character or an unpaired surrogate` : undefined
    case "number":
      return Number.isFinite(value) ? undefined : `${path} is ${value}, which JSON cannot hold`
    case "boolean":
      return undefined
    case "object": {
      if (value === null) return undefined
      if (ancestors.has(value)) return `${path} refers back to itself (a cycle)`
      if (ancestors.size >= maxDepth) return `${path} is nested deeper than ${maxDepth} levels`
      const proto = Object.getPrototypeOf(value)
      const isArray = Array.isArray(value) && proto === Array.prototype
      if (!isArray && proto !== Object.prototype && proto !== null) return `${path} is ${describe(value)}`
      if (Object.getOwnPropertySymbols(value).length > 0) return `${path} has symbol keys`
      ancestors.add(value)
      try {
        if (isArray) {
          const array = value as ReadonlyArray<unknown>
          for (let i = 0; i < array.length; i++) {
            if (!(i in array)) return `${path}[${i}] is a hole`
            const problem = jsonProblem(array[i], `${path}[${i}]`, ancestors)
            if (problem !== undefined) return problem
          }
          return undefined
        }
        for (const [key, field] of Object.entries(value)) {
          if (unstorable.test(key)) return `${path} has a key with a NUL character or an unpaired surrogate`
          const problem = jsonProblem(field, `${path}.${key}`, ancestors)
          if (problem !== undefined) return problem
        }
        return undefined
      } finally {
        ancestors.delete(value)
      }
    }
    default:
      return `${path} is ${typeof value === "undefined" ? "undefined" : `a ${typeof value}`}`
  }
}

export const objectProblem = (value: unknown, path: string): string | undefined =>
  typeof value !== "object" || value === null || Array.isArray(value)
    ? `${path} must be a JSON object`
    : jsonProblem(value, path, new Set())
