/**
 * JSON as the EventoDB server reads and writes it. The server decodes into Go's `interface{}` (every number a float64)
 * and encodes with Go's `encoding/json` (object keys sorted, `<`, `>` and `&` escaped), with Postgres JSONB in
 * between, which has no negative zero and no NUL characters.
 */

/** A JSON object as decoded from a request. */
export type JsonObject = { readonly [key: string]: unknown }

/** True for a JSON object (Go's `map[string]interface{}`): not null, not an array. */
export const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Own keys only: a body may carry `__proto__` or `constructor` as ordinary keys. */
export const has = (object: JsonObject, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key)

const htmlUnsafe = /[<>&\u2028\u2029]/
const htmlUnsafeAll = /[<>&\u2028\u2029]/g
const htmlEscapes: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029"
}

/** A JSON string literal escaped the way Go's encoder escapes it. */
export const encodeString = (value: string): string => {
  const literal = JSON.stringify(value)
  return htmlUnsafe.test(literal) ? literal.replace(htmlUnsafeAll, (c) => htmlEscapes[c] ?? c) : literal
}

// Go sorts map keys by their UTF-8 bytes, which is code point order; JavaScript's default sort compares UTF-16 units,
// which disagrees for characters above U+FFFF.
const byCodePoint = (a: string, b: string): number => {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.codePointAt(i)!
    const y = b.codePointAt(i)!
    if (x !== y) return x - y
    if (x > 0xffff) i++
  }
  return a.length - b.length
}

/** Encodes a decoded JSON value as the server would answer it: keys sorted, `-0` as `0`. */
export const encode = (value: unknown): string => {
  if (value === null || value === undefined) return "null"
  switch (typeof value) {
    case "string":
      return encodeString(value)
    case "number":
      return Object.is(value, -0) ? "0" : JSON.stringify(value)
    case "boolean":
      return value ? "true" : "false"
    case "object": {
      if (Array.isArray(value)) return `[${value.map(encode).join(",")}]`
      const object = value as JsonObject
      const keys = Object.keys(object).sort(byCodePoint)
      return `{${keys.map((key) => `${encodeString(key)}:${encode(object[key])}`).join(",")}}`
    }
    default:
      return "null"
  }
}

/** True when a string anywhere in the value (keys included) holds U+0000, which JSONB refuses. */
export const containsNul = (value: unknown): boolean => {
  if (typeof value === "string") return value.includes("\u0000")
  if (Array.isArray(value)) return value.some(containsNul)
  if (isObject(value)) return Object.keys(value).some((key) => key.includes("\u0000") || containsNul(value[key]))
  return false
}

// A number too large for a float64 (1e400) parses as Infinity here; Go refuses the whole request instead.
const hasInfinity = (value: unknown): boolean => {
  if (typeof value === "number") return !Number.isFinite(value)
  if (Array.isArray(value)) return value.some(hasInfinity)
  if (isObject(value)) return Object.keys(value).some((key) => hasInfinity(value[key]))
  return false
}

const kind = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "array" : typeof value === "boolean" ? "bool" : typeof value

/**
 * Decodes an RPC body the way the server does (`json.Unmarshal` into `[]interface{}`): the array, or the text of
 * the error Go would report. `null` decodes to an empty array, as a nil slice does in Go.
 */
export const decodeArray = (
  text: string
): { readonly _tag: "Right"; readonly value: ReadonlyArray<unknown> } | {
  readonly _tag: "Left"
  readonly error: string
} => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return { _tag: "Left", error: goSyntaxError(text, error) }
  }
  if (value === null) return { _tag: "Right", value: [] }
  if (!Array.isArray(value)) {
    return { _tag: "Left", error: `json: cannot unmarshal ${kind(value)} into Go value of type []interface {}` }
  }
  if (hasInfinity(value)) {
    return { _tag: "Left", error: "json: cannot unmarshal number into Go value of type float64" }
  }
  return { _tag: "Right", value }
}

// Go's scanner names the offending character; V8 gives its position, from which Go's two common texts follow.
const goSyntaxError = (text: string, error: unknown): string => {
  const message = error instanceof Error ? error.message : ""
  const at = /position (\d+)/.exec(message)?.[1]
  const position = at === undefined ? undefined : Number(at)
  if (
    text.trim() === "" || /end of JSON input|Unterminated/.test(message) ||
    (position !== undefined && position >= text.trimEnd().length)
  ) return "unexpected end of JSON input"
  const character = position === undefined ? /Unexpected token '?(.)/.exec(message)?.[1] : text[position]
  if (character === undefined) return message
  const context = /after array element/.test(message) ?
    "after array element" :
    /after property value/.test(message) ?
    "after object key:value pair" :
    /after property name/.test(message) ?
    "after object key" :
    /property name/.test(message) ?
    "looking for beginning of object key string" :
    /after JSON/.test(message) ?
    "after top-level value" :
    "looking for beginning of value"
  return `invalid character '${character}' ${context}`
}
